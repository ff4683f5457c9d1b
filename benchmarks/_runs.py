"""Launch training runs through the CLI in parallel subprocesses and read their eval.csv."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def work_dir(log_dir: str, task: str, seed, name: str) -> str:
    return os.path.join(log_dir, task, str(seed), name)


def cli_args(overrides: dict) -> list[str]:
    """`key=value` command-line overrides (booleans as true/false, as hydra reads them)."""
    return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in overrides.items()]


def launch(runs: list[dict], log_dir: str, jobs: int, checkpoint_freq: int = 0) -> list[str]:
    """Run `python -m tdmpc2.train_hybrid key=value ...` for each dict of overrides (plus a
    `name`), at most `jobs` at once; returns the work dirs. Output goes to <work dir>.log.
    With `checkpoint_freq` > 0 the runs write resume.pt, so launching the same runs again
    continues them (a finished run is reported, not repeated) and the log is appended to."""
    pending, active, dirs = list(runs), {}, []
    env = dict(os.environ, OMP_NUM_THREADS="1", MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    while pending or active:
        while pending and len(active) < jobs:
            run = dict(pending.pop(0))
            name = run.pop("name")
            run.update(log_dir=log_dir, exp_name=name, threads=1, save_agent=False, checkpoint_freq=checkpoint_freq)
            args = cli_args(run)
            path = work_dir(log_dir, run["task"], run["seed"], name)
            os.makedirs(path, exist_ok=True)
            log = open(path + ".log", "a" if checkpoint_freq > 0 else "w")
            proc = subprocess.Popen([sys.executable, "-m", "tdmpc2.train_hybrid", *args], cwd=ROOT,
                                    stdout=log, stderr=subprocess.STDOUT, env=env)
            active[path] = (proc, log, time.time())
            dirs.append(path)
            print(f"started {path}: {' '.join(args)}", flush=True)
        for path, (proc, log, start) in list(active.items()):
            if proc.poll() is not None:
                log.close()
                status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {path}.log)"
                print(f"{path}: {status} in {time.time() - start:.0f}s", flush=True)
                del active[path]
        time.sleep(2)
    return dirs


def read_eval(work_dir: str) -> pd.DataFrame | None:
    path = os.path.join(work_dir, "eval.csv")
    return pd.read_csv(path) if os.path.exists(path) else None


def aligned(frames: list[pd.DataFrame], column: str, max_step: int | None = None) -> tuple[list[int], np.ndarray] | None:
    """(steps, values (runs, steps)): `column` of each run's eval.csv at the evaluation steps every
    run reached (<= max_step), the last row of a step kept; None when no step is shared."""
    frames = [f.drop_duplicates("step", keep="last").set_index("step") for f in frames]
    common = sorted(set.intersection(*(set(f.index) for f in frames)))
    common = [s for s in common if max_step is None or s <= max_step]
    if not common:
        return None
    return common, np.stack([f.loc[common, column].to_numpy(float) for f in frames])
