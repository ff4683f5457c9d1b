"""Running scale of the policy loss (spec 4.6): S <- (1-tau) S + tau max(1, P95 - P5), S >= 1."""
from __future__ import annotations

import torch

from tdmpc2.common.math import percentile_range


class RunningScale:
    def __init__(self, tau: float, device=None):
        self.tau = float(tau)
        self.value = torch.ones((), device=device)

    def update(self, x: torch.Tensor) -> None:
        spread = percentile_range(x.detach()).clamp(min=1.0)
        self.value.lerp_(spread.to(self.value), self.tau)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.value

    def state_dict(self) -> dict:
        return {"value": self.value.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.value.copy_(torch.as_tensor(state["value"]))
