"""The iLQG backward pass as a pure function over arrays (Tassa, Erez & Todorov 2012, sec. II).

Notation: T steps, n tangent size, m action size. Linearised dynamics dx' = A_t dx + B_t du and a
quadratic model of the cost about the nominal give, from V_x = l_x[T], V_xx = l_xx[T] backwards,

    Q_x  = l_x + A' V_x          Q_u  = l_u + B' V_x
    Q_xx = l_xx + A' V_xx A      Q_uu = l_uu + B' V_xx B      Q_ux = l_ux + B' V_xx A

and the policy du = k + K dx minimising Q over du (with Q_uu + mu I, mu >= 0 the
Levenberg-Marquardt term). With control limits, k solves the box QP
min 0.5 du' Q_uu du + du' Q_u s.t. low - u <= du <= high - u (Tassa, Mansard & Todorov 2014) and
the rows of K for clamped controls are zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np


@dataclass
class BackwardPass:
    """k `(T, m)`, K `(T, m, n)`, value V_x `(T+1, n)`, V_xx `(T+1, n, n)`, expected change
    dV = (sum k'Q_u, sum 0.5 k'Q_uu k): the model predicts J(alpha) - J = alpha dV0 + alpha^2 dV1.
    `ok` is False when Q_uu was not positive definite at step `failed_at` (retry with larger mu)."""
    k: np.ndarray
    K: np.ndarray
    V_x: np.ndarray
    V_xx: np.ndarray
    dV: np.ndarray
    ok: bool = True
    failed_at: int = -1


def box_qp(H: np.ndarray, g: np.ndarray, low: np.ndarray, high: np.ndarray, warm: np.ndarray | None = None):
    """min 0.5 x'Hx + g'x s.t. low <= x <= high (MuJoCo's projected Newton solver).

    Returns (x, free) with `free` a boolean mask of unclamped coordinates, or (None, None) if H
    is not positive definite on the free subspace.
    """
    m = len(g)
    x = np.zeros(m) if warm is None else np.clip(np.array(warm, dtype=np.float64), low, high)
    R = np.zeros((m, m + 7))
    index = np.zeros(m, dtype=np.int32)
    rank = mujoco.mju_boxQP(x, R, index, np.ascontiguousarray(H), g.astype(np.float64),
                            low.astype(np.float64), high.astype(np.float64))
    if rank < 0:
        return None, None
    free = np.zeros(m, dtype=bool)
    free[index[:rank]] = True
    return x, free


def riccati_backward(A, B, l_x, l_u, l_xx, l_uu, l_ux, reg: float = 0.0,
                     du_low=None, du_high=None, k_warm=None) -> BackwardPass:
    """Backward pass over T steps.

    A `(T, n, n)`, B `(T, n, m)`; l_x `(T+1, n)` and l_xx `(T+1, n, n)` include the terminal
    cost at index T; l_u `(T, m)`, l_uu `(T, m, m)`, l_ux `(T, m, n)`. `reg` is added to the
    diagonal of Q_uu. `du_low`/`du_high` `(T, m)` bound the action change (None: unbounded);
    `k_warm` `(T, m)` warm-starts the box QPs.
    """
    T, n, m = B.shape
    k = np.zeros((T, m))
    K = np.zeros((T, m, n))
    V_x = np.zeros((T + 1, n))
    V_xx = np.zeros((T + 1, n, n))
    V_x[T], V_xx[T] = l_x[T], l_xx[T]
    dV = np.zeros(2)
    eye = np.eye(m)
    for t in range(T - 1, -1, -1):
        At, Bt, vx, vxx = A[t], B[t], V_x[t + 1], V_xx[t + 1]
        Q_x = l_x[t] + At.T @ vx
        Q_u = l_u[t] + Bt.T @ vx
        Q_xx = l_xx[t] + At.T @ vxx @ At
        Q_uu = l_uu[t] + Bt.T @ vxx @ Bt
        Q_ux = l_ux[t] + Bt.T @ vxx @ At
        Q_uu_reg = 0.5 * (Q_uu + Q_uu.T) + reg * eye
        if du_low is None:
            try:
                L = np.linalg.cholesky(Q_uu_reg)
            except np.linalg.LinAlgError:
                return BackwardPass(k, K, V_x, V_xx, dV, ok=False, failed_at=t)
            sol = _chol_solve(L, np.column_stack([Q_u, Q_ux]))
            k[t], K[t] = -sol[:, 0], -sol[:, 1:]
        else:
            kt, free = box_qp(Q_uu_reg, Q_u, du_low[t], du_high[t], None if k_warm is None else k_warm[t])
            if kt is None:
                return BackwardPass(k, K, V_x, V_xx, dV, ok=False, failed_at=t)
            k[t] = kt
            if free.any():
                try:
                    L = np.linalg.cholesky(Q_uu_reg[np.ix_(free, free)])
                except np.linalg.LinAlgError:
                    return BackwardPass(k, K, V_x, V_xx, dV, ok=False, failed_at=t)
                K[t][free] = -_chol_solve(L, Q_ux[free])
        kt, Kt = k[t], K[t]
        dV += (kt @ Q_u, 0.5 * kt @ Q_uu @ kt)
        V_x[t] = Q_x + Kt.T @ Q_uu @ kt + Kt.T @ Q_u + Q_ux.T @ kt
        vxx_t = Q_xx + Kt.T @ Q_uu @ Kt + Kt.T @ Q_ux + Q_ux.T @ Kt
        V_xx[t] = 0.5 * (vxx_t + vxx_t.T)
    return BackwardPass(k, K, V_x, V_xx, dV)


def _chol_solve(L: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve (L L') X = rhs for lower-triangular L."""
    y = np.linalg.solve(L, rhs)
    return np.linalg.solve(L.T, y)
