"""Smooth planning costs for Meta-World tasks (docs/metaworld-costs.md).

Each cost is a `ResidualCost` over three kinematic features of a state, read by Meta-World's
own code on the episode copy of the env: `tcp` (gripper centre between the finger tips), `obj`
(the first position of the task's `_get_pos_objects()`) and `goal` (`_get_pos_goal()`). Residual
signature as in `tdmpc2.classical.costs`: states `(N, state_dim)`, actions `(N, 4)` -> `(N, d)`.
"""
from __future__ import annotations

import numpy as np

from tdmpc2.classical.costs import Quadratic, ResidualCost, Term

GRIP_RADIUS = 0.03  # m: the gripper target switches from open to closed within about this distance


class FeatureCache:
    """`interface.features(states)`, remembered for the last batch (the terms share it)."""

    def __init__(self, interface):
        self.interface = interface
        self._states = None
        self._features = None

    def __call__(self, states) -> dict:
        states = np.asarray(states, dtype=np.float64)
        if self._states is None or self._states.shape != states.shape or not np.array_equal(self._states, states):
            self._features = self.interface.features(states)
            self._states = states.copy()
        return self._features


def grip_target(distance):
    """+1 (closed) with the tcp on the object, -1 (open) far from it; smooth in between."""
    return 2.0 * np.exp(-(distance / GRIP_RADIUS) ** 2) - 1.0


def make_task_cost(interface, task: str) -> ResidualCost:
    """The cost of Meta-World task `task` ('mw-reach', 'mw-push', 'mw-pick-place', else generic)."""
    f = FeatureCache(interface)
    q = Quadratic()

    def hand_to_goal(x, u):
        feats = f(x)
        return feats["tcp"] - feats["goal"]

    def hand_to_object(x, u):
        feats = f(x)
        return feats["tcp"] - feats["obj"]

    def object_to_goal(x, u):
        feats = f(x)
        return feats["obj"] - feats["goal"]

    def gripper(x, u):
        feats = f(x)
        distance = np.linalg.norm(feats["tcp"] - feats["obj"], axis=1)
        return (np.asarray(u)[:, 3] - grip_target(distance))[:, None]

    def effort(x, u):
        return np.asarray(u)[:, :3]

    def grip_effort(x, u):
        return np.asarray(u)[:, 3:4]

    common = [Term("effort", effort, q, 0.01, 0.0)]
    family = task_family(task)
    if family == "reach":
        terms = [Term("hand_to_goal", hand_to_goal, q, 10.0, 20.0),
                 Term("grip_effort", grip_effort, q, 0.001, 0.0)]
    elif family == "push":
        terms = [Term("hand_to_object", hand_to_object, q, 5.0),
                 Term("object_to_goal", object_to_goal, q, 20.0, 40.0),  # 3-D: success is 3-D
                 Term("gripper", gripper, q, 1.0, 0.0)]
    else:  # pick-place and the generic cost: object to goal in 3-D
        weight = 20.0 if family == "pick-place" else 10.0
        terms = [Term("hand_to_object", hand_to_object, q, 5.0),
                 Term("object_to_goal", object_to_goal, q, weight, 2.0 * weight),
                 Term("gripper", gripper, q, 1.0, 0.0)]
    return ResidualCost(terms + common)


def task_family(task: str) -> str:
    name = task[len("mw-"):] if task.startswith("mw-") else task
    return name if name in ("reach", "push", "pick-place") else "generic"
