"""Custom DMControl tasks of the TD-MPC2 benchmark (spec 8.4).

`CUSTOM_TASKS` maps (domain, task) -> a loader `fn(seed) -> control.Environment`.
"""
from __future__ import annotations

CUSTOM_TASKS: dict = {}


def register():
    """Idempotent hook for registering custom tasks (filled in by the custom-task module)."""


def load(domain: str, task: str, seed: int):
    if (domain, task) in CUSTOM_TASKS:
        return CUSTOM_TASKS[(domain, task)](seed)
    from dm_control import suite

    return suite.load(domain, task, task_kwargs={"random": seed}, visualize_reward=False)
