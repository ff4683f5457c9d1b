"""Static facts about every supported task, so a config can be completed without building an env.

Sizes follow the shared spec (sec. 8.5); `make_env` checks them against the real env.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskInfo:
    name: str
    domain: str          # "dmcontrol" or "metaworld"
    obs_dim: int
    action_dim: int
    episode_length: int  # agent steps
    action_repeat: int


_DMC_SIZES = {  # domain prefix of the task name -> (obs, action)
    "acrobot": (6, 1), "cartpole": (5, 1), "pendulum": (3, 1), "cheetah": (17, 6),
    "cup": (8, 2), "dog": (223, 38), "finger-spin": (9, 2), "finger-turn": (12, 2),
    "fish": (24, 5), "hopper": (15, 4), "humanoid": (67, 21), "quadruped": (78, 12),
    "reacher-three": (8, 3), "reacher": (6, 2), "walker": (24, 6),
}

DMCONTROL_TASKS = (
    "acrobot-swingup", "cartpole-balance", "cartpole-balance-sparse", "cartpole-swingup",
    "cartpole-swingup-sparse", "cheetah-run", "cheetah-run-backwards", "cheetah-run-front",
    "cheetah-run-back", "cheetah-jump", "cup-catch", "cup-spin", "dog-stand", "dog-walk",
    "dog-trot", "dog-run", "finger-spin", "finger-turn-easy", "finger-turn-hard", "fish-swim",
    "hopper-stand", "hopper-hop", "hopper-hop-backwards", "humanoid-stand", "humanoid-walk",
    "humanoid-run", "pendulum-swingup", "pendulum-spin", "quadruped-walk", "quadruped-run",
    "reacher-easy", "reacher-hard", "reacher-three-easy", "reacher-three-hard", "walker-stand",
    "walker-walk", "walker-run", "walker-walk-backwards", "walker-run-backwards",
)

METAWORLD_TASKS = tuple("mw-" + n for n in (
    "assembly", "basketball", "bin-picking", "box-close", "button-press", "button-press-topdown",
    "button-press-topdown-wall", "button-press-wall", "coffee-button", "coffee-pull",
    "coffee-push", "dial-turn", "disassemble", "door-close", "door-lock", "door-open",
    "door-unlock", "drawer-close", "drawer-open", "faucet-close", "faucet-open", "hammer",
    "hand-insert", "handle-press", "handle-press-side", "handle-pull", "handle-pull-side",
    "lever-pull", "peg-insert-side", "peg-unplug-side", "pick-out-of-hole", "pick-place",
    "pick-place-wall", "plate-slide", "plate-slide-back", "plate-slide-back-side",
    "plate-slide-side", "push", "push-back", "push-wall", "reach", "reach-wall", "shelf-place",
    "soccer", "stick-pull", "stick-push", "sweep", "sweep-into", "window-close", "window-open",
))

ALL_TASKS = DMCONTROL_TASKS + METAWORLD_TASKS


class UnknownTaskError(ValueError):
    """Raised for a task name that no env supports."""


def close_matches(name: str, choices=ALL_TASKS, n: int = 4) -> list[str]:
    return difflib.get_close_matches(str(name), choices, n=n, cutoff=0.5)


def unknown_task_message(name: str, choices=ALL_TASKS) -> str:
    near = close_matches(name, choices)
    hint = f" Did you mean {', '.join(near)}?" if near else ""
    return f"Unknown task '{name}'.{hint}"


def task_info(name: str) -> TaskInfo:
    """Sizes, episode length and action repeat of a task; UnknownTaskError if unsupported."""
    if name in DMCONTROL_TASKS:
        for prefix, (obs, act) in _DMC_SIZES.items():  # longest prefixes are listed first
            if name.startswith(prefix):
                return TaskInfo(name, "dmcontrol", obs, act, 500, 2)
    if name in METAWORLD_TASKS:
        return TaskInfo(name, "metaworld", 39, 4, 100, 2)
    raise UnknownTaskError(unknown_task_message(name))
