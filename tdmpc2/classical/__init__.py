"""Classical trajectory optimisation on a simulator: the interface, the solvers and their math.

`tdmpc2.hybrid_mpc` re-exports the public names; import from there.
"""
from tdmpc2.classical.costs import Quadratic, ResidualCost, SmoothAbs, Term
from tdmpc2.classical.ddp import DDP
from tdmpc2.classical.ilqg import ClassicalMPC, ClassicalResult, SolverStatus, iLQG
from tdmpc2.classical.interface import EnvironmentInterface
from tdmpc2.classical.lqr import LQR
from tdmpc2.classical.receding import RecedingHorizon, shifted
from tdmpc2.classical.riccati import BackwardPass, box_qp, riccati_backward
from tdmpc2.classical.sampling import PredictiveSampling

SOLVERS = {"ilqg": iLQG, "ddp": DDP, "lqr": LQR, "sampling": PredictiveSampling}


def make_classical_solver(name: str, interface: EnvironmentInterface, **kwargs) -> ClassicalMPC:
    """The solver called `name` (ilqg | ddp | lqr | sampling) over `interface`; kwargs go to its constructor."""
    if name not in SOLVERS:
        raise ValueError(f"Unknown classical_algorithm '{name}'; supported: {', '.join(SOLVERS)}.")
    return SOLVERS[name](interface, **kwargs)


def solver_from_config(cfg, interface: EnvironmentInterface) -> ClassicalMPC:
    """The solver of `cfg.classical_algorithm` with the `ilqg_*` (iterations: of either solver) and
    `sampling_*` settings of the (finalized, `auto`-resolved) config."""
    if cfg.classical_algorithm == "sampling":
        settings = dict(samples=cfg.sampling_samples, noise=cfg.sampling_noise, knots=cfg.sampling_knots,
                        interpolation=cfg.sampling_interpolation, objective=cfg.sampling_objective, seed=cfg.seed)
    else:
        settings = dict(line_search_steps=cfg.ilqg_line_search_steps, regularization=cfg.ilqg_regularization,
                        tolerance=cfg.ilqg_tolerance)
    return make_classical_solver(cfg.classical_algorithm, interface, iterations=cfg.ilqg_iterations, **settings)


__all__ = ["EnvironmentInterface", "ClassicalMPC", "ClassicalResult", "SolverStatus", "iLQG", "LQR", "DDP",
           "BackwardPass", "riccati_backward", "box_qp", "ResidualCost", "Term", "Quadratic", "SmoothAbs",
           "PredictiveSampling", "RecedingHorizon", "shifted", "SOLVERS", "make_classical_solver", "solver_from_config"]
