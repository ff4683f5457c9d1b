"""Pure math of TD-MPC2 (spec sec. 3): symlog, two-hot regression, soft cross-entropy, policy
log-densities. Functions take tensors and numbers, never the config.

Notation: N bins with centres b_i = vmin + i * bin_size, i = 0..N-1 (in symlog space).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) log(1 + |x|)."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """sign(x) (exp|x| - 1), the inverse of symlog."""
    return torch.sign(x) * torch.expm1(x.abs())


def two_hot(x: torch.Tensor, vmin: float, vmax: float, num_bins: int) -> torch.Tensor:
    """Two-hot encoding of scalars x (..., 1) -> (..., N) in symlog space (spec 3)."""
    bin_size = (vmax - vmin) / (num_bins - 1)
    x = symlog(x).clamp(vmin, vmax).squeeze(-1)
    pos = (x - vmin) / bin_size
    idx = pos.floor().clamp(0, num_bins - 1)
    delta = (pos - idx).unsqueeze(-1)
    idx = idx.long().unsqueeze(-1)
    out = torch.zeros(*x.shape, num_bins, device=x.device, dtype=x.dtype)
    out.scatter_(-1, idx, 1 - delta)
    out.scatter_add_(-1, (idx + 1) % num_bins, delta)
    return out


def two_hot_inv(logits: torch.Tensor, vmin: float, vmax: float) -> torch.Tensor:
    """Decode logits (..., N) to scalars (..., 1): symexp of the expected bin centre."""
    centres = torch.linspace(vmin, vmax, logits.shape[-1], device=logits.device, dtype=logits.dtype)
    expectation = torch.softmax(logits, dim=-1) @ centres
    return symexp(expectation).unsqueeze(-1)


def soft_ce(logits: torch.Tensor, target: torch.Tensor, vmin: float, vmax: float) -> torch.Tensor:
    """Cross-entropy between logits (..., N) and the two-hot encoding of target (..., 1) -> (..., 1)."""
    log_probs = F.log_softmax(logits, dim=-1)
    target = two_hot(target, vmin, vmax, logits.shape[-1])
    return -(target * log_probs).sum(-1, keepdim=True)


def squash_log_std(raw: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """log sigma = low + (high - low) (tanh(raw) + 1) / 2 (spec 2.6)."""
    return low + 0.5 * (high - low) * (torch.tanh(raw) + 1)


def gaussian_log_prob(eps: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Sum over the last dim of log N(u; mu, sigma) written in terms of eps = (u - mu) / sigma."""
    return (-0.5 * eps.pow(2) - log_std).sum(-1, keepdim=True) - 0.5 * math.log(2 * math.pi) * eps.shape[-1]


def tanh_log_prob_correction(log_pu: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """log p_a = log p_u - sum log(max(0, 1 - a^2) + 1e-6) for a = tanh(u)."""
    return log_pu - torch.log(F.relu(1 - action.pow(2)) + 1e-6).sum(-1, keepdim=True)


def percentile_range(x: torch.Tensor, low: float = 5.0, high: float = 95.0) -> torch.Tensor:
    """P_high(x) - P_low(x) over all entries, linear interpolation at rank p (n-1) / 100."""
    q = torch.quantile(x.reshape(-1).float(), torch.tensor([low / 100, high / 100], device=x.device))
    return q[1] - q[0]
