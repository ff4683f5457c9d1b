"""The learned agent's gate between its planner and its policy prior (`learned_gate=prior`).

Why. Taught by the simulator, the policy prior can be far ahead of the planner that uses it
(issue 10, stage 4: cartpole-swingup at 5k agent steps, prior alone 850 / 752 / 156, the
learned-only planner over the same weights 197 / 196 / 586): the learned reward and values
overrate candidates off the prior's actions. Neither half is better everywhere, so the agent
measures both and acts with the stronger.

The rule. Every evaluation plays the learned-only planner (H_c = 0) and the prior alone (the mean
action, no planning) on the same seeded episodes. After evaluation k, with mean returns R_plan
and R_prior,

    use the prior  <=>  R_prior > R_plan + margin        (NaN returns: keep planning)

and the decision holds until evaluation k + 1. The return reported for the gated agent at
evaluation k + 1 is therefore the return of the half chosen at evaluation k, on episodes that did
not choose it: no selection bias, and an evaluation where both halves are scored costs nothing
extra. Before the first evaluation the agent plans (TD-MPC2's behaviour).

Scope. The gate changes eval-mode actions of the learned-only agent (H_c = 0) only: training
episodes, the hybrid planner and the learning updates are untouched, so a run with the gate on
trains exactly as one with it off, and `gated_returns` recomputes the gated agent's curve from
any run's logged planner and prior returns. The decisions use evaluation episodes, as the trust
of `tdmpc2.hand_over` does: one bit per evaluation.

All functions are pure; `PlannerGate` is the state saved in checkpoints.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

MODES = ("none", "prior")  # the values of `learned_gate`


def prefers_prior(planner_return: float, prior_return: float, margin: float = 0.0) -> bool:
    """Whether the prior's return beats the planner's by more than `margin` (NaN: False)."""
    planner_return, prior_return = float(planner_return), float(prior_return)
    if math.isnan(planner_return) or math.isnan(prior_return):
        return False
    return prior_return > planner_return + margin


def gated_returns(planner, prior, margin: float = 0.0) -> np.ndarray:
    """The gated agent's return at each evaluation of a run, from its planner's and prior's
    returns in evaluation order: the planner's at the first, then the half that the previous
    evaluation preferred."""
    planner, prior = np.asarray(planner, dtype=float), np.asarray(prior, dtype=float)
    if planner.shape != prior.shape or planner.ndim != 1:
        raise ValueError(f"gated_returns needs two equal 1-D series, got shapes {planner.shape} and {prior.shape}")
    out = planner.copy()
    for k in range(1, len(out)):
        if prefers_prior(planner[k - 1], prior[k - 1], margin):
            out[k] = prior[k]
    return out


@dataclass
class PlannerGate:
    """Which half the learned agent acts with in eval mode, and the evaluation that decided it."""
    use_prior: bool = False
    planner_return: float = float("nan")
    prior_return: float = float("nan")
    evaluations: int = 0

    def observe(self, planner_return: float, prior_return: float, margin: float = 0.0) -> "PlannerGate":
        """The gate after one evaluation (a new object; this one is unchanged)."""
        return PlannerGate(prefers_prior(planner_return, prior_return, margin), float(planner_return),
                           float(prior_return), self.evaluations + 1)

    @property
    def source(self) -> str:
        return "prior" if self.use_prior else "planner"

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> "PlannerGate":
        return cls(bool(state["use_prior"]), float(state["planner_return"]), float(state["prior_return"]),
                   int(state["evaluations"]))
