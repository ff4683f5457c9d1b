"""Per-task defaults of the classical planner: the one table that `auto` config values read.

`classical_defaults(task)` gives the solver, its horizon T_c (agent steps, the classical
lookahead, hybrid-design.md sec. 6), its iterations per agent step (receding horizon,
warm-started), the planning model and, for the sampling solver, its settings, as measured best
for `task` in `benchmarks/classical.py` (docs/classical-costs.md has the measurements). Tasks
without a row get their domain's row, else `FALLBACK`.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SamplingDefaults:
    samples: int = 64               # trajectories per iteration (the nominal included)
    noise: float = 0.3              # std of the knot perturbations (normalised actions)
    knots: int = 6                  # spline knots over the horizon
    interpolation: str = "linear"   # zero | linear
    objective: str = "cost"         # cost (smooth planning cost) | reward (the task's reward)


@dataclass(frozen=True)
class ClassicalDefaults:
    algorithm: str          # a name of tdmpc2.classical.SOLVERS
    plan_horizon: int       # T_c, agent steps
    iterations: int         # solver iterations per agent step
    planning_model: str = "default"  # default (the domain's planning model, PLANNING_MODELS) | exact
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)


FALLBACK = ClassicalDefaults("ilqg", 10, 3)

# domain -> defaults for all of its tasks (a task-level row below overrides its domain's)
_S = SamplingDefaults
_DOMAINS = {
    "cartpole": ClassicalDefaults("ilqg", 25, 3),
    "pendulum": ClassicalDefaults("ilqg", 30, 3),
    "acrobot": ClassicalDefaults("sampling", 60, 1, sampling=_S(32, 0.5, 8, objective="reward")),
    "cheetah": ClassicalDefaults("sampling", 15, 1, sampling=_S(128, 0.5, 6, objective="reward")),
    "walker": ClassicalDefaults("ilqg", 15, 2),
    "hopper": ClassicalDefaults("sampling", 20, 2, sampling=_S(32, 0.5, 4)),
    "reacher": ClassicalDefaults("ilqg", 15, 3),
    "finger": ClassicalDefaults("ilqg", 15, 2),
    "cup": ClassicalDefaults("sampling", 25, 1, sampling=_S(32, 0.5, 5)),
    "fish": ClassicalDefaults("sampling", 15, 1, sampling=_S(16, 0.5, 4, objective="reward")),
    "quadruped": ClassicalDefaults("sampling", 10, 1, sampling=_S(16, 0.3, 3)),
    "humanoid": ClassicalDefaults("sampling", 6, 1, sampling=_S(16, 0.3, 2)),
    "mw": ClassicalDefaults("ilqg", 5, 2),
}
_TASKS = {
    "cartpole-swingup": ClassicalDefaults("sampling", 50, 1, sampling=_S(32, 0.5, 6, objective="reward")),
    "cartpole-swingup-sparse": ClassicalDefaults("sampling", 50, 1, sampling=_S(32, 0.5, 6)),  # reward is flat
    "walker-walk": ClassicalDefaults("sampling", 15, 1, sampling=_S(32, 0.3, 4, objective="reward")),
    "walker-run": ClassicalDefaults("sampling", 15, 1, sampling=_S(32, 0.3, 4, objective="reward")),
    "finger-spin": ClassicalDefaults("sampling", 20, 1, sampling=_S(32, 0.8, 5)),
}


def classical_defaults(task: str) -> ClassicalDefaults:
    """The tabled defaults of `task` (its own row, else its domain's, else `FALLBACK`)."""
    if task in _TASKS:
        return _TASKS[task]
    return _DOMAINS.get(task.split("-")[0], FALLBACK)
