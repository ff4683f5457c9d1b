"""MPPI building blocks (spec sec. 5) as pure batched functions.

Notation: H horizon, N candidates, A action dim, E elites. Action sequences are time-major,
`actions (H, N, A)`; values `(N, 1)` or `(N,)`.
"""
from __future__ import annotations

from typing import NamedTuple

import torch


class EliteUpdate(NamedTuple):
    mean: torch.Tensor           # (H, A)
    std: torch.Tensor            # (H, A)
    elite_actions: torch.Tensor  # (H, E, A)
    weights: torch.Tensor        # (E,), sums to 1
    elite_values: torch.Tensor   # (E,)


def sample_actions(mean: torch.Tensor, std: torch.Tensor, num: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """clip(mean + std * eps, -1, 1) for `num` samples: (H, num, A)."""
    H, A = mean.shape
    noise = torch.randn(H, num, A, device=mean.device, dtype=mean.dtype)
    samples = torch.addcmul(mean.unsqueeze(1), std.unsqueeze(1), noise).clamp_(-1, 1)
    if out is not None:
        out.copy_(samples)
        return out
    return samples


def elite_update(actions: torch.Tensor, values: torch.Tensor, num_elites: int, temperature: float,
                 min_std: float, max_std: float) -> EliteUpdate:
    """Top-E candidates, weights exp(temperature (G - max G)) normalised, and the weighted mean
    and clamped std of the elite actions."""
    values = torch.nan_to_num(values.reshape(-1))
    elite_values, idx = torch.topk(values, num_elites, sorted=False)
    elite_actions = actions[:, idx]
    score = torch.exp(temperature * (elite_values - elite_values.max()))
    score = score / score.sum()
    w = score.view(1, -1, 1)
    denom = score.sum() + 1e-9
    mean = (w * elite_actions).sum(1) / denom
    std = ((w * (elite_actions - mean.unsqueeze(1)).pow(2)).sum(1) / denom).sqrt().clamp(min_std, max_std)
    return EliteUpdate(mean, std, elite_actions, score, elite_values)


def gumbel_select(weights: torch.Tensor) -> torch.Tensor:
    """Index drawn with probabilities `weights` by the Gumbel-max trick."""
    uniform = torch.rand_like(weights).clamp_(min=1e-20)
    neg_log = (-torch.log(uniform)).clamp_(min=1e-20)
    gumbel = -torch.log(neg_log)
    return torch.argmax(torch.log(weights) + gumbel)


def discounted_value(rewards: torch.Tensor, terminal: torch.Tensor, discount: float) -> torch.Tensor:
    """sum_t g^t r_t + g^T terminal for rewards (T, N, 1), terminal (N, 1)."""
    T = rewards.shape[0]
    powers = discount ** torch.arange(T + 1, device=rewards.device, dtype=rewards.dtype)
    return (powers[:T].view(T, 1, 1) * rewards).sum(0) + powers[T] * terminal
