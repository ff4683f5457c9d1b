"""Trust in the learned planner and the hand-over it drives (hybrid-design.md sec. 6).

The signal. Every evaluation runs the learned-only planner (H_c = 0) on the same seeded episodes
as the hybrid planner. The *expert* is the hybrid planner at full hand-over distance with the
bridge fully trusted (H_c = max_classical_horizon, w = 1): it plans on the simulator alone, so
its return does not change as the learner trains, and the trust keeps a running mean of it from
the evaluations at which the hybrid planner was the expert. The ratio

    rho = (R_learned + eps) / (R_reference + eps),   R_reference = expert mean (else this eval's hybrid return)

says how much of the expert's return the learner achieves on its own (eps = 1 reward unit keeps
tasks where both score 0 from dividing by zero). The trust follows rho through a ramp and an
exponential smoothing:

    target = clip((rho - low) / (high - low), 0, 1),   tau <- tau + alpha (target - tau)

starting at tau = 0. Because the expert needs no learning, the trust can fall again when the
learner degrades, and the hand-over goes back towards the simulator (H_c and w rise).

The hand-over. With trust tau:  H_c = min_h + round((max_h - min_h)(1 - tau))  (schedule
`adaptive`) and w = 1 - tau (`bridge_weight=adaptive`). `bridge_weight=schedule` follows the
clock instead: w = H_c / max_h. A number fixes w.

All functions are pure; `Trust` is the state saved in checkpoints.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from tdmpc2.schedules import _round

REWARD_EPS = 1.0


@dataclass
class Trust:
    """Trust in the learned planner: tau in [0, 1], the last ratio rho, the expert's mean return
    and how many evaluations fed each."""
    value: float = 0.0
    ratio: float = float("nan")
    expert_return: float = float("nan")
    expert_evals: int = 0
    updates: int = 0

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> "Trust":
        return cls(**{k: type(getattr(cls(), k))(v) for k, v in state.items()})


def trust_ratio(learned_return: float, reference_return: float) -> float:
    """rho = (R_learned + eps) / (max(R_reference, 0) + eps)."""
    return (learned_return + REWARD_EPS) / (max(reference_return, 0.0) + REWARD_EPS)


def trust_target(ratio: float, low: float, high: float) -> float:
    """clip((rho - low) / (high - low), 0, 1)."""
    return min(max((ratio - low) / (high - low), 0.0), 1.0)


def updated_trust(trust: Trust, learned_return: float, hybrid_return: float, hybrid_was_expert: bool,
                  low: float, high: float, smoothing: float) -> Trust:
    """The trust after one evaluation (a new object; `trust` is not changed)."""
    expert, n = trust.expert_return, trust.expert_evals
    if hybrid_was_expert:
        expert = hybrid_return if n == 0 else (expert * n + hybrid_return) / (n + 1)
        n += 1
    ratio = trust_ratio(learned_return, expert if n > 0 else hybrid_return)
    value = trust.value + smoothing * (trust_target(ratio, low, high) - trust.value)
    return Trust(value=min(max(value, 0.0), 1.0), ratio=ratio, expert_return=expert, expert_evals=n,
                 updates=trust.updates + 1)


def adaptive_horizon(trust: float, max_h: int, min_h: int) -> int:
    """H_c = min_h + round((max_h - min_h)(1 - tau))."""
    return min_h + _round((max_h - min_h) * (1.0 - min(max(trust, 0.0), 1.0)))


def bridge_weight(mode, classical_horizon: int, max_h: int, trust: float) -> float:
    """w for `bridge_weight` = a number in [0, 1], "schedule" (H_c / max_h) or "adaptive" (1 - tau)."""
    if mode == "schedule":
        return classical_horizon / max_h if max_h > 0 else 0.0
    if mode == "adaptive":
        return 1.0 - min(max(trust, 0.0), 1.0)
    return float(mode)
