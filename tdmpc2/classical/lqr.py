"""LQR about the nominal: one linearisation, one Riccati pass, one closed-loop rollout.

It is iLQG stopped after its first iteration with the full step (alpha = 1) only; the nominal
(alpha = 0) stays a candidate, so the returned plan never costs more than the warm start.
"""
from __future__ import annotations

import numpy as np

from tdmpc2.classical.ilqg import iLQG


class LQR(iLQG):
    """Time-varying LQR about the warm start (no iteration)."""

    def __init__(self, interface, regularization: float = 1e-6, tolerance: float = 1e-6, **_ignored):
        super().__init__(interface, iterations=1, line_search_steps=1, regularization=regularization,
                         tolerance=tolerance)
        self.alphas = np.ones(1)
