"""Hybrid MPC (hybrid-design.md): classical planning on the simulator + TD-MPC2's learned model.

The classical half lives in `tdmpc2.classical` and is re-exported here under the names of the
public contract (sec. 4): `EnvironmentInterface`, `ClassicalMPC`, `iLQG`, `LQR`, `DDP`, the
result type `ClassicalResult` with its `SolverStatus`, and `make_classical_solver`.
"""
from __future__ import annotations

from tdmpc2.classical import (DDP, LQR, SOLVERS, ClassicalMPC, ClassicalResult, EnvironmentInterface,
                              SolverStatus, iLQG, make_classical_solver, riccati_backward,
                              solver_from_config)

__all__ = ["EnvironmentInterface", "ClassicalMPC", "ClassicalResult", "SolverStatus", "iLQG", "LQR", "DDP",
           "SOLVERS", "make_classical_solver", "solver_from_config", "riccati_backward"]


# ---------------------------------------------------------------------------------------------
# HybridMPC (sec. 2-3): the coordinator of the classical solver and the seeded MPPI goes here.
# Reserved for the lead; nothing below this line yet.
# ---------------------------------------------------------------------------------------------
from tdmpc2.hybrid_planner import HybridMPC, HybridPlanInfo  # noqa: E402

__all__ += ["HybridMPC", "HybridPlanInfo"]
