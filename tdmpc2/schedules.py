"""Transition schedules of the classical horizon H_c (hybrid-design.md sec. 3).

Every schedule is a pure function of the training step (agent steps since the start of
training): integer-valued, equal to `max_h` at step 0, equal to `min_h` from `transition_steps`
on (except `constant`), and never increasing. With p = clip(step / transition_steps, 0, 1) and
D = max_h - min_h, rounding half up:

| kind        | H_c(step)                                                           |
|-------------|---------------------------------------------------------------------|
| linear      | min_h + round(D (1 - p))                                            |
| exponential | min_h + round(D (e^{-k p} - e^{-k}) / (1 - e^{-k})), k = 5          |
|             |   (fast early decay: about 10% of D remains at p = 0.5)             |
| step        | max_h while step < transition_steps, then min_h (a single switch)   |
| cosine      | min_h + round(D (1 + cos(pi p)) / 2)                                |
| constant    | max_h at every step (no transition; min_h is ignored)               |
"""
from __future__ import annotations

import math

SCHEDULES = ("linear", "exponential", "step", "constant", "cosine")
EXPONENTIAL_RATE = 5.0


def _round(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def _progress(step: int, transition_steps: int) -> float:
    return min(max(step / transition_steps, 0.0), 1.0)


def linear(step: int, max_h: int, min_h: int, transition_steps: int) -> int:
    return min_h + _round((max_h - min_h) * (1.0 - _progress(step, transition_steps)))


def exponential(step: int, max_h: int, min_h: int, transition_steps: int, rate: float = EXPONENTIAL_RATE) -> int:
    p = _progress(step, transition_steps)
    frac = (math.exp(-rate * p) - math.exp(-rate)) / (1.0 - math.exp(-rate))
    return min_h + _round((max_h - min_h) * frac)


def step(step: int, max_h: int, min_h: int, transition_steps: int) -> int:  # noqa: F811 - the schedule's name
    return max_h if step < transition_steps else min_h


def cosine(step: int, max_h: int, min_h: int, transition_steps: int) -> int:
    p = _progress(step, transition_steps)
    return min_h + _round((max_h - min_h) * 0.5 * (1.0 + math.cos(math.pi * p)))


def constant(step: int, max_h: int, min_h: int, transition_steps: int) -> int:
    return max_h


_FUNCTIONS = {"linear": linear, "exponential": exponential, "step": step, "cosine": cosine, "constant": constant}


def classical_horizon(kind: str, step_: int, max_h: int, min_h: int, transition_steps: int) -> int:
    """H_c at training step `step_` for schedule `kind`; ValueError for bad arguments."""
    if kind not in _FUNCTIONS:
        raise ValueError(f"Unknown transition_schedule '{kind}'; choose one of {', '.join(SCHEDULES)}.")
    if min_h < 0 or max_h < 0:
        raise ValueError("Classical horizons must be non-negative.")
    if min_h > max_h:
        raise ValueError(f"min_classical_horizon ({min_h}) must not exceed max_classical_horizon ({max_h}).")
    if transition_steps <= 0:
        raise ValueError(f"transition_steps must be positive, got {transition_steps}.")
    return _FUNCTIONS[kind](max(int(step_), 0), int(max_h), int(min_h), int(transition_steps))
