"""Pure classical MPC on the true simulator (iLQG or predictive sampling), no learning.

    python benchmarks/classical.py --all                     # every task with a cost, 2 seeds, 500 steps
    python benchmarks/classical.py --tasks cup-catch --steps 200 --algorithm sampling --horizon 20
    python benchmarks/classical.py --table                   # markdown table of results/classical.csv

Each agent step: snapshot the live env, plan `horizon` agent steps warm-started from the previous
plan shifted by one step (last action held), apply the first action. Settings left out come from
the per-task table (`tdmpc2/envs/classical_defaults.py`, resolved by the config's `auto`). MuJoCo
runs on one thread; ms per agent step is the median planning time per step.

`--all` (and `--csv PATH`) appends one row per finished (task, seed) episode to the CSV as soon
as it finishes, with the machine's load average, and skips (task, seed, settings) rows already
there, so a killed run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tdmpc2.classical.receding import RecedingHorizon  # noqa: E402
from tdmpc2.config import load_config  # noqa: E402
from tdmpc2.envs import make_env, make_interface  # noqa: E402
from tdmpc2.envs.dmc_costs import COSTS  # noqa: E402
from tdmpc2.hybrid_mpc import SOLVERS, solver_from_config  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSV_PATH = os.path.join(ROOT, "results", "classical.csv")
REFERENCE = os.path.join(ROOT, "tdmpc2", "reference_results", "tdmpc2")
FIELDS = ["task", "seed", "solver", "horizon", "iterations", "settings", "steps", "return", "ms_per_step",
          "load_avg", "statuses", "finished"]
OVERRIDES = dict(algorithm="classical_algorithm", horizon="classical_plan_horizon", iterations="ilqg_iterations",
                 samples="sampling_samples", noise="sampling_noise", knots="sampling_knots",
                 interpolation="sampling_interpolation", objective="sampling_objective",
                 planning_model="planning_model")


def settings_of(cfg) -> str:
    """The settings that identify a run beyond solver, horizon and iterations."""
    if cfg.classical_algorithm == "sampling":
        return (f"N={cfg.sampling_samples} sigma={cfg.sampling_noise} P={cfg.sampling_knots} "
                f"{cfg.sampling_interpolation} {cfg.sampling_objective} model={cfg.planning_model}")
    return f"model={cfg.planning_model}"


def make_cfg(task, seed, overrides):
    """The task's config at one MuJoCo thread; no hybrid, so the classical horizon is the table's
    own (not raised to max_classical_horizon)."""
    return load_config(task=task, seed=seed, mujoco_threads=1, max_classical_horizon=0,
                       **{OVERRIDES[k]: v for k, v in overrides.items() if v is not None})


def run_episode(cfg, steps, progress=None):
    """One episode of receding-horizon classical control: (return, median ms per step, statuses)."""
    env = make_env(cfg)
    iface = make_interface(cfg, env)
    if iface is None:
        raise SystemExit(f"Task '{cfg.task}' has no classical planning cost; supported: {', '.join(COSTS)}.")
    controller = RecedingHorizon(solver_from_config(cfg, iface), iface, cfg.classical_plan_horizon)
    env.reset()
    total, times, statuses = 0.0, [], {}
    for step in range(steps):
        tic = time.perf_counter()
        result = controller.plan()
        times.append(time.perf_counter() - tic)
        statuses[result.status.value] = statuses.get(result.status.value, 0) + 1
        _, reward, done, _ = env.step(torch.as_tensor(result.actions[0], dtype=torch.float32))
        total += float(reward)
        if progress and (step + 1) % 100 == 0:
            progress(step + 1, total, 1e3 * float(np.median(times)))
        if done:
            break
    iface.close()
    return total, 1e3 * float(np.median(times)), statuses


def read_rows(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_row(path, row):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def reference_mean(task, env_step=100_000):
    """TD-MPC2's released mean episode return at `env_step` environment steps (None if absent)."""
    path = os.path.join(REFERENCE, f"{task}.csv")
    rows = [r for r in read_rows(path) if int(float(r["step"])) == env_step]
    return float(np.mean([float(r["reward"]) for r in rows])) if rows else None


def run_key(cfg):
    """(solver, horizon, iterations, settings) of a resolved config: what identifies a row's run."""
    return cfg.classical_algorithm, str(cfg.classical_plan_horizon), str(cfg.ilqg_iterations), settings_of(cfg)


def table(path):
    """Markdown table of each task's rows run with its per-task defaults, beside the TD-MPC2 reference."""
    rows, latest = read_rows(path), {}
    for task in dict.fromkeys(r["task"] for r in rows):
        latest[task] = run_key(make_cfg(task, 1, {}))
    lines = ["| task | solver | H | it. | settings | return (seeds) | ms/step | load | TD-MPC2 100k | met |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    met = 0
    for task, key in latest.items():
        mine = sorted((r for r in rows if r["task"] == task and r["steps"] == "500"
                       and (r["solver"], r["horizon"], r["iterations"], r["settings"]) == key),
                      key=lambda r: int(r["seed"]))
        if not mine:
            lines.append(f"| {task} | {key[0]} | {key[1]} | {key[2]} | {key[3]} | not run | - | - | - | - |")
            continue
        returns = [float(r["return"]) for r in mine]
        ref = reference_mean(task)
        ok = ref is not None and float(np.mean(returns)) >= ref
        met += ok
        lines.append(f"| {task} | {key[0]} | {key[1]} | {key[2]} | {key[3]} | "
                     f"{', '.join(f'{x:.1f}' for x in returns)} | "
                     f"{np.median([float(r['ms_per_step']) for r in mine]):.0f} | "
                     f"{np.mean([float(r['load_avg']) for r in mine]):.1f} | "
                     f"{'-' if ref is None else f'{ref:.1f}'} | {'yes' if ok else 'no'} |")
    lines.append(f"\nAt or above TD-MPC2's 100k mean (mean over seeds): {met} of {len(latest)} tasks.")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="every task with a cost, seeds 1 2, 500 steps, CSV")
    parser.add_argument("--tasks", nargs="+", default=None, help="tasks with a cost (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="episode seeds (default: 1; --all: 1 2)")
    parser.add_argument("--steps", type=int, default=500, help="agent steps per episode")
    parser.add_argument("--csv", default=None, help=f"append rows here (--all: {os.path.relpath(CSV_PATH, ROOT)})")
    parser.add_argument("--table", action="store_true", help="print the markdown table of the CSV and exit")
    parser.add_argument("--algorithm", default=None, choices=tuple(SOLVERS))
    parser.add_argument("--horizon", type=int, default=None, help="classical horizon (agent steps)")
    parser.add_argument("--iterations", type=int, default=None, help="solver iterations per agent step")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--noise", type=float, default=None)
    parser.add_argument("--knots", type=int, default=None)
    parser.add_argument("--interpolation", default=None, choices=("zero", "linear"))
    parser.add_argument("--objective", default=None, choices=("cost", "reward"))
    parser.add_argument("--planning-model", dest="planning_model", default=None, choices=("default", "exact"))
    parser.add_argument("--quiet", action="store_true", help="no progress lines within an episode")
    args = parser.parse_args(argv)
    path = args.csv or (CSV_PATH if args.all else None)
    if args.table:
        print(table(path or CSV_PATH))
        return
    torch.set_num_threads(1)
    tasks = args.tasks or list(COSTS)
    unknown = [t for t in tasks if t not in COSTS]
    if unknown:
        raise SystemExit(f"No classical planning cost for {', '.join(unknown)}; supported: {', '.join(COSTS)}.")
    seeds = args.seeds or ([1, 2] if args.all else [1])
    overrides = {k: getattr(args, k) for k in OVERRIDES}
    done = {(r["task"], r["seed"], r["solver"], r["horizon"], r["iterations"], r["settings"], r["steps"])
            for r in read_rows(path)} if path else set()
    print(f"{'task':26s} {'seed':>4s} {'solver':>8s} {'H':>3s} {'it':>3s} {'return':>8s} {'ms/step':>8s}  settings",
          flush=True)
    for task in tasks:
        for seed in seeds:
            cfg = make_cfg(task, seed, overrides)
            key = (task, str(seed), *run_key(cfg), str(args.steps))
            if key in done:
                print(f"{task:26s} {seed:4d} already in {path}", flush=True)
                continue

            def progress(step, total, ms, task=task, seed=seed):
                if not args.quiet:
                    print(f"  {task} seed {seed}: step {step}, return so far {total:.1f}, {ms:.1f} ms/step", flush=True)
            ret, ms, statuses = run_episode(cfg, args.steps, progress)
            print(f"{task:26s} {seed:4d} {key[2]:>8s} {key[3]:>3s} {key[4]:>3s} {ret:8.1f} {ms:8.1f}  {key[5]}  "
                  f"{statuses}", flush=True)
            if path:
                append_row(path, dict(task=task, seed=seed, solver=key[2], horizon=key[3], iterations=key[4],
                                      settings=key[5], steps=args.steps, **{"return": f"{ret:.2f}"},
                                      ms_per_step=f"{ms:.2f}", load_avg=f"{os.getloadavg()[0]:.2f}",
                                      statuses=" ".join(f"{k}:{v}" for k, v in statuses.items()),
                                      finished=datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")))


if __name__ == "__main__":
    main()
