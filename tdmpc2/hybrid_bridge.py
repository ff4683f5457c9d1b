"""The simulated bridge of the hybrid value (hybrid-design.md sec. 6).

Notation: T_c the classical plan's horizon, H_c the hand-over step (H_c <= T_c), M states,
m action dim, n tangent dim. The classical plan gives actions U `(T_c, m)`, states X
`(T_c+1, state_dim)` and feedback gains K `(T_c, m, n)`. Its continuation policy from H_c on is

    c_t(x) = clip(U_t + K_t (x (-) X_t), low, high),   t = H_c .. T_c - 1,

and the bridge value of a state x_{H_c} is the true discounted return of c run on the simulator:

    B(x_{H_c}) = sum_{t=H_c}^{T_c-1} g^{t-H_c} r(x_t, c_t(x_t)).

`ClassicalContinuation` holds (U, X, K) from H_c on; `bridge_returns` evaluates B for a batch of
states, closed loop (one batched simulator step per time step) or open loop (K ignored: one
batched rollout of U). `reference_bridge_returns` is the slow state-by-state reference.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassicalContinuation:
    """The classical plan from H_c on: actions U `(L, m)`, states X `(L+1, state_dim)` and gains K
    `(L, m, n)`, or None when the solver has none (all zero), with L = T_c - H_c >= 0."""
    U: np.ndarray
    X: np.ndarray
    K: np.ndarray | None

    @classmethod
    def from_plan(cls, result, handover: int) -> "ClassicalContinuation":
        """The part of a `ClassicalResult` after the first `handover` actions."""
        U = np.asarray(result.actions, dtype=np.float64)
        X = np.asarray(result.states, dtype=np.float64)
        K = getattr(result, "K", None)
        if K is not None:
            K = np.asarray(K, dtype=np.float64)[handover:]
            if K.shape[0] != len(U) - handover or not np.any(K):
                K = None
        return cls(U[handover:], X[handover:], K)

    @property
    def length(self) -> int:
        return len(self.U)

    @property
    def has_gains(self) -> bool:
        return self.K is not None

    def action(self, interface, t: int, states: np.ndarray) -> np.ndarray:
        """c_t at states `(M, state_dim)`: `(M, m)`."""
        u = np.broadcast_to(self.U[t], (len(states), self.U.shape[1]))
        if self.has_gains:
            dx = interface.state_difference(states, self.X[t][None])
            u = u + np.einsum("ij,nj->ni", self.K[t], dx)
        low, high = interface.action_bounds()
        return np.clip(u, low, high)


def bridge_returns(interface, states: np.ndarray, plan: ClassicalContinuation, discount: float,
                   closed_loop: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """B for each of `states (M, state_dim)`: returns `(M,)` and the final states `(M, state_dim)`.

    Closed loop: one batched `rollout` call of one agent step per time step, the actions from
    the gains; open loop (or a plan without gains): one batched rollout of U.
    """
    states = np.asarray(states, dtype=np.float64)
    M, L = len(states), plan.length
    if L == 0:
        return np.zeros(M), states
    powers = discount ** np.arange(L)
    if not (closed_loop and plan.has_gains):
        traj, rewards = interface.rollout(states, np.broadcast_to(plan.U, (M,) + plan.U.shape))
        return rewards @ powers, traj[:, -1]
    total, x = np.zeros(M), states
    for t in range(L):
        traj, rewards = interface.rollout(x, plan.action(interface, t, x)[:, None])
        total += powers[t] * rewards[:, 0]
        x = traj[:, -1]
    return total, x


def reference_bridge_returns(interface, states: np.ndarray, plan: ClassicalContinuation, discount: float,
                             closed_loop: bool = True) -> np.ndarray:
    """Slow reference of `bridge_returns`: one state at a time, one `step` at a time."""
    out = []
    for x in np.asarray(states, dtype=np.float64):
        total = 0.0
        for t in range(plan.length):
            if closed_loop:
                u = plan.action(interface, t, x[None])[0]
            else:
                u = np.clip(plan.U[t], *interface.action_bounds())
            total += discount ** t * interface.reward(x, u)
            x = interface.step(x, u)
        out.append(total)
    return np.array(out)
