"""Classical MPC in receding horizon on a live simulator.

Every call plans `horizon` agent steps from the live state (`interface.get_state()`), warm-started
from the previous plan shifted by one step with its last action held; the caller applies the
first action. `reset()` forgets the warm start (a new episode).
"""
from __future__ import annotations

import numpy as np

from tdmpc2.classical.ilqg import ClassicalMPC, ClassicalResult
from tdmpc2.classical.interface import EnvironmentInterface


def shifted(actions: np.ndarray) -> np.ndarray:
    """U[1:] followed by U[-1]: the warm start of the next plan."""
    return np.concatenate([actions[1:], actions[-1:]])


class RecedingHorizon:
    def __init__(self, solver: ClassicalMPC, interface: EnvironmentInterface, horizon: int):
        self.solver, self.interface, self.horizon = solver, interface, int(horizon)
        self._warm: np.ndarray | None = None

    def reset(self) -> None:
        self._warm = None

    def plan(self) -> ClassicalResult:
        """The solver's plan from the live state; its first action is the one to apply."""
        result = self.solver.plan(self.interface.get_state(), self.horizon, self._warm)
        self._warm = shifted(np.asarray(result.actions, dtype=np.float64))
        return result
