"""Train a TD-MPC2 agent online on one task (hydra entry point).

    python tdmpc2/train.py task=cartpole-balance steps=100000 seed=1
    python -m tdmpc2.train task=walker-walk model_size=1
    tdmpc2-train task=cheetah-run checkpoint=logs/.../models/final.pt

Any key of tdmpc2/config.yaml can be overridden as key=value. Bad input (unknown task or key,
invalid value, unusable checkpoint) prints one line `error: ...` to stderr and exits with code 2.

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

import random  # noqa: E402
from typing import Callable  # noqa: E402

import hydra  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from tdmpc2.common.buffer import Buffer  # noqa: E402
from tdmpc2.common.device import available_cores, resolve_device  # noqa: E402
from tdmpc2.common.logger import Logger  # noqa: E402
from tdmpc2.config import ConfigError, finalize, known_keys, load_config  # noqa: E402
from tdmpc2.envs import UnknownTaskError, make_env  # noqa: E402
from tdmpc2.tdmpc2 import TDMPC2, CheckpointError  # noqa: E402
from tdmpc2.trainer import OnlineTrainer  # noqa: E402

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
    env = make_env(cfg)
    agent = make_agent(cfg, env)
    if cfg.checkpoint:
        agent.load(str(cfg.checkpoint))
    buffer = Buffer.from_config(cfg, agent.device)
    logger = Logger(cfg)
    OmegaConf.save(cfg, os.path.join(str(cfg.work_dir), "config.yaml"))
    logger.progress(f"{cfg.task}: {cfg.steps:,} steps on {agent.device} ({cfg.threads} thread(s)), "
                    f"work dir {cfg.work_dir}")
    path = trainer_cls(cfg, env, agent, buffer, logger).train()
    logger.finish(path)
    return path


def prepare(cfg: DictConfig) -> DictConfig:
    """Validate the config, resolve device/threads into it, seed every RNG."""
    cfg = finalize(cfg)
    device = resolve_device(cfg.device)
    cfg.device = str(device)
    cfg.threads = choose_threads(cfg.threads)
    torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
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
        if key.split(".", 1)[0] != "hydra" and key not in known:
            load_config(**{key: None})  # raises the ConfigError naming the closest key


def launch(cfg: DictConfig, make_agent: MakeAgent = make_tdmpc2,
           trainer_cls: type[OnlineTrainer] = OnlineTrainer) -> None:
    """`run`, turning a user error into one line on stderr and exit code 2."""
    try:
        run(cfg, make_agent, trainer_cls)
    except USER_ERRORS as e:
        exit_with_error(e)


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
    main()
