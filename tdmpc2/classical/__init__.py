"""Classical trajectory optimisation on a simulator: the interface, the solvers and their math.

`tdmpc2.hybrid_mpc` re-exports the public names; import from there.
"""
from tdmpc2.classical.costs import Quadratic, ResidualCost, SmoothAbs, Term
from tdmpc2.classical.ddp import DDP
from tdmpc2.classical.ilqg import ClassicalMPC, ClassicalResult, SolverStatus, iLQG
from tdmpc2.classical.interface import EnvironmentInterface
from tdmpc2.classical.lqr import LQR
from tdmpc2.classical.riccati import BackwardPass, box_qp, riccati_backward

SOLVERS = {"ilqg": iLQG, "ddp": DDP, "lqr": LQR}


def make_classical_solver(name: str, interface: EnvironmentInterface, **kwargs) -> ClassicalMPC:
    """The solver called `name` (ilqg | ddp | lqr) over `interface`; kwargs go to its constructor."""
    if name not in SOLVERS:
        raise ValueError(f"Unknown classical_algorithm '{name}'; choose one of {', '.join(SOLVERS)}.")
    return SOLVERS[name](interface, **kwargs)


def solver_from_config(cfg, interface: EnvironmentInterface) -> ClassicalMPC:
    """The solver of `cfg.classical_algorithm` with the `ilqg_*` settings of the config."""
    return make_classical_solver(cfg.classical_algorithm, interface, iterations=cfg.ilqg_iterations,
                                 line_search_steps=cfg.ilqg_line_search_steps,
                                 regularization=cfg.ilqg_regularization, tolerance=cfg.ilqg_tolerance)


__all__ = ["EnvironmentInterface", "ClassicalMPC", "ClassicalResult", "SolverStatus", "iLQG", "LQR", "DDP",
           "BackwardPass", "riccati_backward", "box_qp", "ResidualCost", "Term", "Quadratic", "SmoothAbs",
           "SOLVERS", "make_classical_solver", "solver_from_config"]
