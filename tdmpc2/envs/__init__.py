"""Environments: `make_env(cfg)` builds a task's env, `make_interface(cfg, env)` its simulator
interface for classical planning (or None where there is none)."""
from __future__ import annotations

import os
import sys

if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering on headless machines

from tdmpc2.envs.tasks import (ALL_TASKS, DMCONTROL_TASKS, METAWORLD_TASKS, TaskInfo,  # noqa: E402
                               UnknownTaskError, task_info)

__all__ = ["make_env", "make_interface", "task_info", "TaskInfo", "UnknownTaskError",
           "ALL_TASKS", "DMCONTROL_TASKS", "METAWORLD_TASKS"]


def make_env(cfg):
    """The env of `cfg.task`, seeded with `cfg.seed`; UnknownTaskError lists close matches."""
    info = task_info(cfg.task)
    if info.domain == "dmcontrol":
        from tdmpc2.envs.dmcontrol import DMControlEnv

        env = DMControlEnv(cfg.task, seed=cfg.seed, action_repeat=cfg.action_repeat,
                           episode_length=cfg.episode_length)
    else:
        from tdmpc2.envs.metaworld import MetaWorldEnv

        env = MetaWorldEnv(cfg.task, seed=cfg.seed, action_repeat=cfg.action_repeat,
                           episode_length=cfg.episode_length)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    if (obs_dim, act_dim) != (cfg.obs_shape["state"][0], cfg.action_dim):
        raise ValueError(f"Task '{cfg.task}' has obs {obs_dim} / action {act_dim}, but the config "
                         f"says {cfg.obs_shape['state'][0]} / {cfg.action_dim}.")
    return env


def make_interface(cfg, env, planning_model: str | None = None):
    """The `EnvironmentInterface` for an env made by `make_env`, or None if it has none;
    `planning_model` overrides the config's (e.g. "exact" for an interface on the env's own physics)."""
    from tdmpc2.envs.dmcontrol import DMControlEnv

    if planning_model is not None:
        from omegaconf import OmegaConf

        cfg = OmegaConf.merge(cfg, {"planning_model": planning_model})
    if isinstance(env, DMControlEnv):
        from tdmpc2.envs.dmcontrol_interface import DMControlInterface, UnsupportedTaskError

        try:
            return DMControlInterface.from_config(cfg, env)
        except UnsupportedTaskError:  # no planning cost for this task: no classical planning
            return None
    try:
        from tdmpc2.envs.metaworld import MetaWorldEnv
    except ImportError:
        return None
    if isinstance(env, MetaWorldEnv):
        from tdmpc2.envs.metaworld_interface import MetaWorldInterface

        return MetaWorldInterface.from_config(cfg, env)
    return None
