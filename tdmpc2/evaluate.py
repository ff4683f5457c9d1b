"""Evaluate a checkpoint without training: ours (`models/*.pt`) or a released upstream TD-MPC2 one.

    python -m tdmpc2.evaluate task=walker-walk checkpoint=walker-walk-1.pt               # TD-MPC2's planner
    python -m tdmpc2.evaluate task=walker-walk checkpoint=walker-walk-1.pt hybrid_mpc=true \\
        max_classical_horizon=10 eval_episodes=10 save_video=true

Any key of tdmpc2/config.yaml can be overridden (hydra); the architecture keys (`model_size`,
`task`) must match the checkpoint. Each planner plays `eval_episodes` episodes in eval mode.
With `hybrid_mpc=true` two planners play the same episodes (same env seeds): the hybrid planner
at H_c = `max_classical_horizon` (the schedule's start, whatever step a checkpoint was saved at)
and the learned-only planner (H_c = 0), so one command compares planning with and without the
simulator on top of one world model. Without it, TD-MPC2's own planner plays. With
`learned_gate=prior` a `gated` agent plays too: the learned-only agent as the checkpoint's gate
left it (the prior alone where its last evaluation beat the planner, else the planner;
tdmpc2/gate.py), and the learned-only planner is scored with the gate suspended.

Output, in `<work_dir>/evaluate/` (work_dir = `<log_dir>/<task>/<seed>/<exp_name>`):
`<planner>.csv` (one row per episode: episode, seed, episode_reward, episode_success,
episode_length) and, with `save_video=true`, `<planner>.mp4` (the first episode; offscreen
rendering with MUJOCO_GL=egl). One summary line per planner goes to stdout. Bad input (unknown
key or task, no or unusable checkpoint) prints one line `error: ...` to stderr and exits with 2.
"""
from __future__ import annotations

import os
import sys

if not __package__:  # run by path: tdmpc2/tdmpc2.py would shadow the package `tdmpc2`
    _HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    sys.path.insert(0, os.path.dirname(_HERE))

import contextlib  # noqa: E402
import csv  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from tdmpc2.common.logger import VideoRecorder  # noqa: E402
from tdmpc2.config import ConfigError  # noqa: E402
from tdmpc2.envs import make_env  # noqa: E402
from tdmpc2.hybrid_tdmpc2 import HybridTDMPC2  # noqa: E402
from tdmpc2.tdmpc2 import TDMPC2  # noqa: E402
from tdmpc2.train import USER_ERRORS, exit_with_error, hydra_argv, prepare  # noqa: E402

FIELDS = ["episode", "seed", "episode_reward", "episode_success", "episode_length"]


def episode_seed(run_seed: int, episode: int) -> int:
    """The env seed of evaluation episode `episode`; every planner plays the same ones."""
    return (run_seed * 1_000_003 + 7919 * episode) % 2**31


def load_agent(cfg: DictConfig, env):
    """The agent of `cfg` with the checkpoint's weights; a hybrid agent starts at H_c = max."""
    if not cfg.checkpoint:
        raise ConfigError("evaluate needs checkpoint=PATH (a models/*.pt of ours or a released upstream "
                          "TD-MPC2 checkpoint).")
    agent = HybridTDMPC2(cfg, env) if cfg.hybrid_mpc or cfg.learned_gate != "none" else TDMPC2(cfg)
    agent.load(str(cfg.checkpoint))
    if isinstance(agent, HybridTDMPC2):
        agent.update_training_step(0)
    return agent


def planners(agent) -> dict[str, contextlib.AbstractContextManager]:
    """Planner name -> the context in which the agent plans that way."""
    gate = getattr(agent, "gate", None)
    if getattr(agent, "hybrid", None) is None:
        out = {"tdmpc2": agent.gate_suspended() if gate is not None else contextlib.nullcontext()}
    else:
        out = {"hybrid": contextlib.nullcontext(), "learned_only": _learned_planner(agent)}
    if gate is not None:
        out["gated"] = agent.learned_only()
    return out


@contextlib.contextmanager
def _learned_planner(agent):
    """The learned-only planner itself (H_c = 0, the gate suspended)."""
    with agent.learned_only(), agent.gate_suspended():
        yield agent


def play_episode(agent, env, seed: int, video: VideoRecorder | None = None) -> dict:
    """One eval-mode episode from the env seeded with `seed`: return, final success, length."""
    try:
        obs = env.reset(seed=seed)
    except TypeError:  # an env without seeded resets
        obs = env.reset()
    if video is not None:
        video.init(env)
    done, total, length, info = False, 0.0, 0, {}
    while not done:
        action = agent.act(obs, t0=length == 0, eval_mode=True)
        obs, reward, done, info = env.step(action)
        total, length = total + float(reward), length + 1
        if video is not None:
            video.record(env)
    return dict(episode_reward=total, episode_success=float(info.get("success", 0.0)), episode_length=length)


def evaluate(cfg: DictConfig) -> dict[str, str]:
    """Play every planner's episodes, write `<work_dir>/evaluate/*`; returns planner -> csv path."""
    cfg = prepare(cfg)
    env = make_env(cfg)
    agent = load_agent(cfg, env)
    out_dir = os.path.join(str(cfg.work_dir), "evaluate")
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for name, context in planners(agent).items():
        video = VideoRecorder(out_dir) if cfg.save_video else None
        rows = []
        with context:
            horizon = getattr(agent, "classical_horizon", 0)
            for episode in range(int(cfg.eval_episodes)):
                seed = episode_seed(int(cfg.seed), episode)
                result = play_episode(agent, env, seed, video if episode == 0 else None)
                rows.append(dict(episode=episode, seed=seed, **result))
        written[name] = write_rows(os.path.join(out_dir, f"{name}.csv"), rows)
        if video is not None and (path := video.save(0)) is not None:
            os.replace(path, os.path.join(out_dir, f"{name}.mp4"))
        print(summary_line(name, horizon, rows), flush=True)
    return written


def write_rows(path: str, rows: list[dict]) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def summary_line(name: str, horizon: int, rows: list[dict]) -> str:
    rewards = [r["episode_reward"] for r in rows]
    successes = [r["episode_success"] for r in rows]
    mean = sum(rewards) / max(len(rewards), 1)
    success = sum(successes) / max(len(successes), 1)
    return (f"{name} planner (H_c={horizon}): mean return {mean:.1f}, success {success:.2f} "
            f"over {len(rows)} episode(s)")


@hydra.main(config_path=".", config_name="config", version_base=None)
def _hydra_main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except USER_ERRORS as e:
        exit_with_error(e)


def main() -> None:
    sys.argv = hydra_argv(sys.argv)
    _hydra_main()


if __name__ == "__main__":
    main()
