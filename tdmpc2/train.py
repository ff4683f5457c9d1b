"""Train a TD-MPC2 agent online on one task (hydra entry point).

    python tdmpc2/train.py task=cartpole-balance steps=100000 seed=1
    python -m tdmpc2.train task=walker-walk model_size=1
    tdmpc2-train task=cheetah-run checkpoint=logs/.../models/final.pt

Any key of tdmpc2/config.yaml can be overridden as key=value. Bad input (unknown task or key,
invalid value, unusable checkpoint) prints one line `error: ...` to stderr and exits with code 2.

Resuming: a run started again with the same command and work dir continues from
<work_dir>/resume.pt (see tdmpc2/trainer.py) when `resume=true` (the default); `resume=false`
starts over in the work dir. `checkpoint=PATH` only loads agent weights into a fresh run.

Sweeps: `-m` / `--multirun` with comma lists (`seed=1,2,3 transition_schedule=linear,step`), any
hydra launcher (`hydra/launcher=joblib`, `hydra/launcher=submitit_slurm`). In a multirun each
job's exp_name gets its overrides appended (`sweep_exp_name`), so jobs never share a work dir.

Threads (`threads=auto`): torch intra-op threads for the agent. Measured on the 2-core
development machine (torch 2.13 CPU, cartpole-balance, default planner 512 samples x 6
iterations, B=256; median of 25 calls; the machine is shared with other jobs, load 3-10):
    model_size=5, 1 thread:  act 511-554 ms, update 549-576 ms   (stable across runs)
    model_size=5, 2 threads: act 305-2519 ms, update 342-5108 ms (1.7x faster when the other
                             core is idle, 5-9x slower when it is busy: threads wait on a core)
    model_size=1, 1 thread:  act 228-326 ms, update 187-273 ms
    model_size=1, 2 threads: act 492-1774 ms, update 110-134 ms (a third run was killed after
                             5 minutes under load)
Two threads win only on an otherwise idle machine and collapse under any contention, so `auto`
uses 1 thread on machines with at most 2 cores (pass threads=2 on an idle one), and
min(8, cores // 2) on larger ones, leaving cores for MuJoCo and parallel runs (not measured).
"""
from __future__ import annotations

import os
import sys

if not __package__:  # run by path: tdmpc2/tdmpc2.py would shadow the package `tdmpc2`
    _HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    sys.path.insert(0, os.path.dirname(_HERE))

import hashlib  # noqa: E402
import random  # noqa: E402
from typing import Callable  # noqa: E402

import hydra  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from tdmpc2.common.buffer import Buffer  # noqa: E402
from tdmpc2.common.device import available_cores, resolve_device  # noqa: E402
from tdmpc2.common.logger import Logger  # noqa: E402
from tdmpc2.config import ConfigError, config_to_dict, default_config, finalize, known_keys, load_config  # noqa: E402
from tdmpc2.envs import UnknownTaskError, make_env  # noqa: E402
from tdmpc2.tdmpc2 import TDMPC2, CheckpointError  # noqa: E402
from tdmpc2.trainer import (RESUME_FILE, RESUME_FORMAT, OnlineTrainer,  # noqa: E402
                            remove_stale_temp_files)

MakeAgent = Callable[[DictConfig, object], object]  # (cfg, env) -> agent
USER_ERRORS = (ConfigError, UnknownTaskError, CheckpointError)


def make_tdmpc2(cfg: DictConfig, env) -> TDMPC2:
    return TDMPC2(cfg)


def run(cfg: DictConfig, make_agent: MakeAgent = make_tdmpc2,
        trainer_cls: type[OnlineTrainer] = OnlineTrainer) -> str | None:
    """Finalize `cfg`, build env/agent/buffer/logger and train; returns the final checkpoint path.

    Shared by every entry point: `train_hybrid` passes a factory building `HybridTDMPC2` and
    its trainer class (same constructor as `OnlineTrainer`).
    """
    cfg = prepare(cfg)
    work_dir = str(cfg.work_dir)
    resume = load_resume_state(cfg)
    if resume is not None and resume["complete"]:
        final = os.path.join(work_dir, "models", "final.pt")
        print(f"{work_dir} holds a finished run ({int(resume['config']['steps']):,} steps); nothing to do "
              "(pass resume=false to train it again).", flush=True)
        return final if os.path.isfile(final) else None
    if os.path.isdir(work_dir):
        remove_stale_temp_files(work_dir)
    env = make_env(cfg)
    agent = make_agent(cfg, env)
    if cfg.checkpoint and resume is None:  # a resumed run continues from its own weights
        agent.load(str(cfg.checkpoint))
    buffer = Buffer.from_config(cfg, agent.device)
    logger = Logger(cfg, resume_rows=resume["logs"] if resume is not None else None)
    OmegaConf.save(cfg, os.path.join(work_dir, "config.yaml"))
    trainer = trainer_cls(cfg, env, agent, buffer, logger)
    if resume is not None:
        trainer.restore(resume)
        logger.progress(f"resuming from {os.path.join(work_dir, RESUME_FILE)} at step {trainer.step:,} "
                        f"({len(buffer):,} buffer entries, {sum(resume['logs'].values())} log rows kept)")
        if cfg.checkpoint:
            logger.progress(f"checkpoint={cfg.checkpoint} not loaded: the run continues from its own state")
        if resume.get("rng", {}).get("env") is None:
            logger.progress("note: the env has no get_rng_state(); its episodes after the resume point "
                            "differ from those of an uninterrupted run")
    precision = ", bfloat16 matmul inputs" if cfg.matmul_precision == "medium" else ""
    logger.progress(f"{cfg.task}: {cfg.steps:,} steps on {agent.device} ({cfg.threads} thread(s){precision}), "
                    f"work dir {work_dir}")
    path = trainer.train()
    logger.finish(path)
    return path


# Keys that may differ between a run and the run it resumes: where and how it runs, not what.
RESUME_FREE_KEYS = frozenset({
    "resume", "checkpoint", "checkpoint_freq", "device", "threads", "mujoco_threads", "compile",
    "enable_wandb", "wandb_project", "wandb_entity", "wandb_silent", "save_video", "log_dir",
    "work_dir", "data_dir"})


def load_resume_state(cfg: DictConfig) -> dict | None:
    """The resume checkpoint of `cfg.work_dir`, or None (none there, or `resume=false`).

    Raises CheckpointError (one sentence) for a corrupt file or one written by a run with another
    configuration. Loaded with `weights_only=True`.
    """
    path = os.path.join(str(cfg.work_dir), RESUME_FILE)
    if not cfg.resume or not os.path.exists(path):
        return None
    hint = "delete it or pass resume=false to start this run over"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, unreadable or foreign file
        raise CheckpointError(f"Resume checkpoint '{path}' could not be read ({type(e).__name__}); "
                              f"it is corrupt: {hint}.") from None
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        raise CheckpointError(f"'{path}' is not a resume checkpoint of this version ({RESUME_FORMAT}): {hint}.")
    if not state.get("complete") and not all(k in state for k in ("agent", "buffer", "rng", "logs")):
        raise CheckpointError(f"Resume checkpoint '{path}' is incomplete: {hint}.")
    theirs, ours = state.get("config") or {}, config_to_dict(cfg)
    defaults = default_config()
    for key in sorted(set(theirs) | set(ours)):
        if key not in theirs and key in defaults and ours.get(key) == defaults[key]:
            continue  # a key added after that run was started, at its default (off) value
        if key not in RESUME_FREE_KEYS and theirs.get(key) != ours.get(key):
            raise CheckpointError(
                f"Resume checkpoint '{path}' belongs to another run ({key}={theirs.get(key)!r} there, "
                f"{ours.get(key)!r} here): pass resume=false to start over in this work dir, or set "
                "another exp_name.")
    return state


def prepare(cfg: DictConfig) -> DictConfig:
    """Validate the config, resolve device/threads into it, seed every RNG."""
    cfg = finalize(cfg)
    device = resolve_device(cfg.device)
    cfg.device = str(device)
    cfg.threads = choose_threads(cfg.threads)
    torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    set_seed(cfg.seed)
    return cfg


def choose_threads(threads) -> int:
    """torch intra-op threads: an explicit number, or for `auto` 1 on <= 2 cores (measured, see
    the module docstring), else min(8, cores // 2)."""
    if threads != "auto":
        return int(threads)
    cores = available_cores()
    return 1 if cores <= 2 else min(8, cores // 2)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CPU and every CUDA device


def reject_unknown_overrides(argv: list[str]) -> None:
    """Fail early, in one line, on `key=value` arguments naming no config key (hydra would print
    a multi-line message); hydra's own flags and `hydra.*` keys pass through."""
    known = set(known_keys())
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key = arg.split("=", 1)[0].lstrip("+~")
        if key.split(".", 1)[0].split("/", 1)[0] != "hydra" and key not in known:
            load_config(**{key: None})  # raises the ConfigError naming the closest key


def launch(cfg: DictConfig, make_agent: MakeAgent = make_tdmpc2,
           trainer_cls: type[OnlineTrainer] = OnlineTrainer) -> None:
    """`run`, turning a user error into one line on stderr and exit code 2."""
    try:
        run(sweep_exp_name(cfg), make_agent, trainer_cls)
    except USER_ERRORS as e:
        exit_with_error(e)


# Overrides left out of a multirun job's exp_name: seed and task are already in the work-dir
# path, the others say where or how a job runs, not what it computes.
NOT_IN_EXP_NAME = frozenset({"seed", "task", "exp_name"}) | RESUME_FREE_KEYS
MAX_EXP_NAME = 200


def exp_name_from_overrides(overrides: list[str], exp_name: str = "default") -> str:
    """A multirun job's exp_name: `exp_name` (left out when "default") followed by the job's
    `key=value` overrides, sorted by key, minus NOT_IN_EXP_NAME and hydra's own; e.g.
    ['seed=2', 'transition_schedule=step', 'steps=1000'] -> 'steps=1000,transition_schedule=step'.
    Path separators become '_'; a name longer than 200 characters is cut and given a hash of the
    whole, so distinct override sets always give distinct names."""
    parts = {}
    for item in overrides:
        if "=" not in item:
            continue
        key, value = item.split("=", 1)
        key = key.lstrip("+~")
        if key.split(".", 1)[0].split("/", 1)[0] == "hydra" or key in NOT_IN_EXP_NAME:
            continue
        value = {"True": "true", "False": "false"}.get(value, value)  # hydra's sweep expansion capitalises
        parts[key] = value.replace(os.sep, "_")
    names = ([] if exp_name == "default" else [str(exp_name)]) + [f"{k}={parts[k]}" for k in sorted(parts)]
    name = ",".join(names) or "default"
    if len(name) > MAX_EXP_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[:MAX_EXP_NAME - 11]}-{digest}"
    return name


def sweep_exp_name(cfg: DictConfig) -> DictConfig:
    """In a hydra multirun, give the job its own exp_name (exp_name_from_overrides); unchanged
    otherwise (single runs, or called outside hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):  # not inside a hydra job
        return cfg
    if hydra_cfg.mode != RunMode.MULTIRUN or cfg.get("work_dir") is not None:
        return cfg
    cfg.exp_name = exp_name_from_overrides(list(hydra_cfg.overrides.task), str(cfg.exp_name))
    return cfg


def exit_with_error(error: Exception) -> None:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)


@hydra.main(config_path=".", config_name="config", version_base=None)
def _hydra_main(cfg: DictConfig) -> None:
    launch(cfg)


def hydra_argv(argv: list[str]) -> list[str]:
    """Validated CLI arguments plus `hydra/job_logging=disabled`, so that hydra writes no
    `<script>.log` into the working directory (the run logs live in the work dir)."""
    try:
        reject_unknown_overrides(argv[1:])
    except ConfigError as e:
        exit_with_error(e)
    if any(a.startswith("hydra/job_logging=") for a in argv):
        return argv
    return [*argv, "hydra/job_logging=disabled"]


def main() -> None:
    sys.argv = hydra_argv(sys.argv)
    _hydra_main()


if __name__ == "__main__":
    # Run the importable module `tdmpc2.train`, not this `__main__` copy of it: multirun
    # launchers (joblib, submitit) pickle the job function, which works by reference only.
    from tdmpc2.train import main as _main

    _main()
