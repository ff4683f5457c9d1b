"""Smooth residual costs: l(x, u) = sum_j w_j * phi_j(r_j(x, u)).

Notation (shared by the whole `classical` package): N is a batch size, n the tangent size of the
state, m the action size, d_j the size of residual j, d the total residual size. A residual maps
a batch of states `(N, state_dim)` and actions `(N, m)` to `(N, d_j)`; a norm phi maps `(N, d_j)`
to `(N,)`. Gauss-Newton derivatives use the residual Jacobian J `(N, d, n + m)` and each norm's
own gradient and Hessian: l_z = sum_j w_j J_j' g_j, l_zz = sum_j w_j J_j' H_j J_j (PSD by design).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


class Quadratic:
    """phi(r) = 0.5 |r|^2."""

    def value(self, r):
        return 0.5 * np.sum(r * r, axis=-1)

    def grad_hess(self, r):
        eye = np.broadcast_to(np.eye(r.shape[-1]), r.shape + (r.shape[-1],))
        return r, eye


class SmoothAbs:
    """phi(r) = sqrt(|r|^2 + p^2) - p: quadratic near 0, linear (|r|) far away."""

    def __init__(self, p: float = 0.1):
        self.p = float(p)

    def value(self, r):
        return np.sqrt(np.sum(r * r, axis=-1) + self.p ** 2) - self.p

    def grad_hess(self, r):
        s = np.sqrt(np.sum(r * r, axis=-1) + self.p ** 2)[..., None]
        g = r / s
        eye = np.eye(r.shape[-1])
        h = eye / s[..., None] - g[..., :, None] * g[..., None, :] / s[..., None]
        return g, h


@dataclass(frozen=True)
class Term:
    """One residual with its norm and weights (`terminal_weight` None: same as `weight`)."""
    name: str
    residual: Callable[[np.ndarray, np.ndarray], np.ndarray]
    norm: object
    weight: float
    terminal_weight: float | None = None


class ResidualCost:
    """A weighted sum of norms of residuals; evaluates values and Gauss-Newton derivatives."""

    def __init__(self, terms: Sequence[Term]):
        if not terms:
            raise ValueError("A ResidualCost needs at least one term.")
        self.terms = tuple(terms)

    def _weights(self, terminal: bool):
        return [t.weight if not terminal or t.terminal_weight is None else t.terminal_weight
                for t in self.terms]

    def residuals(self, states, actions) -> np.ndarray:
        """All residuals concatenated: `(N, d)` (each term's size is remembered for `value`)."""
        blocks = [np.asarray(t.residual(states, actions), dtype=np.float64).reshape(len(states), -1)
                  for t in self.terms]
        self._sizes = [b.shape[1] for b in blocks]
        return np.concatenate(blocks, axis=1)

    def _blocks(self, r):
        start = 0
        for term, size in zip(self.terms, self._sizes):
            yield term, r[:, start:start + size]
            start += size

    def value(self, r: np.ndarray, terminal: bool = False) -> np.ndarray:
        """Cost `(N,)` from residuals `(N, d)`."""
        total = np.zeros(len(r))
        for (term, block), w in zip(self._blocks(r), self._weights(terminal)):
            if w:
                total += w * term.norm.value(block)
        return total

    def gauss_newton(self, r: np.ndarray, jac: np.ndarray, terminal: bool = False):
        """l_z `(N, k)` and l_zz `(N, k, k)` from residuals `(N, d)` and Jacobian `(N, d, k)`."""
        k = jac.shape[-1]
        grad = np.zeros((len(r), k))
        hess = np.zeros((len(r), k, k))
        start = 0
        for (term, block), w in zip(self._blocks(r), self._weights(terminal)):
            j = jac[:, start:start + block.shape[1]]
            start += block.shape[1]
            if not w:
                continue
            g, h = term.norm.grad_hess(block)
            grad += w * np.einsum("nd,ndk->nk", g, j)
            hess += w * np.einsum("ndk,nde,nel->nkl", j, h, j)
        return grad, hess
