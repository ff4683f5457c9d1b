"""`EnvironmentInterface`: what a simulator must offer to be planned on (hybrid-design.md sec. 4).

Notation: a state x is a 1-D float64 array of `state_dim` entries (an exact simulator snapshot),
its tangent dx has `tangent_dim` = n entries, an action u has `action_dim` = m entries in the
normalised space. T is a horizon in agent steps. Batches lead: states `(N, state_dim)`.

A subclass implements the abstract members; everything else has a (slow, generic) default that
a fast simulator overrides: batched simulation, Jacobians of whole trajectories, batched costs.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from tdmpc2.classical.costs import ResidualCost


class EnvironmentInterface(ABC):
    """A simulator that the classical solvers can plan on. Never disturbs the live env."""

    action_dim: int
    state_dim: int
    finite_diff_eps: float = 1e-6

    @property
    def tangent_dim(self) -> int:
        return self.state_dim

    # ---- abstract: the simulator and the task
    @abstractmethod
    def get_state(self) -> np.ndarray:
        """Exact snapshot of the live env, `(state_dim,)` float64."""

    @abstractmethod
    def step(self, state: np.ndarray, action: np.ndarray) -> np.ndarray:
        """The state after one agent step from `state` with `action`."""

    @abstractmethod
    def reward(self, state: np.ndarray, action: np.ndarray) -> float:
        """The task reward of that agent step, equal to what the env returns."""

    @abstractmethod
    def observation(self, state: np.ndarray) -> np.ndarray:
        """The observation the env emits in `state`."""

    @abstractmethod
    def cost(self, state: np.ndarray, action: np.ndarray) -> float:
        """Smooth planning cost of one agent step."""

    def terminal_cost(self, state: np.ndarray) -> float:
        return 0.0

    def residual_cost(self) -> ResidualCost | None:
        """The cost as a `ResidualCost` when it is one (enables Gauss-Newton derivatives)."""
        return None

    # ---- geometry
    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return -np.ones(self.action_dim), np.ones(self.action_dim)

    def state_difference(self, x1: np.ndarray, x0: np.ndarray) -> np.ndarray:
        """Tangent dx with x0 (+) dx = x1; batched over leading axes."""
        return np.asarray(x1, dtype=np.float64) - np.asarray(x0, dtype=np.float64)

    def state_add(self, x: np.ndarray, dx: np.ndarray) -> np.ndarray:
        """x (+) dx, the inverse of `state_difference`; batched over leading axes."""
        return np.asarray(x, dtype=np.float64) + np.asarray(dx, dtype=np.float64)

    # ---- batched simulation (defaults loop over the single-state members)
    def step_batch(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """`(N, state_dim)`, `(N, m)` -> next states `(N, state_dim)`."""
        return np.stack([self.step(x, u) for x, u in zip(states, actions)])

    def simulate(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """`(N, state_dim)`, `(N, T, m)` -> states `(N, T+1, state_dim)`, without rewards."""
        out = [np.asarray(states, dtype=np.float64)]
        for t in range(actions.shape[1]):
            out.append(self.step_batch(out[-1], actions[:, t]))
        return np.stack(out, axis=1)

    def rollout(self, states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`(N, state_dim)`, `(N, T, m)` -> `(states (N, T+1, state_dim), rewards (N, T))`."""
        traj = self.simulate(states, actions)
        rewards = np.array([[self.reward(x, u) for x, u in zip(xs[:-1], us)]
                            for xs, us in zip(traj, actions)]).reshape(actions.shape[:2])
        return traj, rewards

    def observations(self, states: np.ndarray) -> np.ndarray:
        """`(N, state_dim)` -> `(N, obs_dim)`."""
        return np.stack([self.observation(x) for x in states])

    # ---- costs
    def costs(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Running costs `(N,)` of states `(N, state_dim)` and actions `(N, m)`."""
        rc = self.residual_cost()
        if rc is not None:
            return rc.value(rc.residuals(states, actions))
        return np.array([self.cost(x, u) for x, u in zip(states, actions)])

    def terminal_costs(self, states: np.ndarray) -> np.ndarray:
        rc = self.residual_cost()
        if rc is not None:
            zeros = np.zeros((len(states), self.action_dim))
            return rc.value(rc.residuals(states, zeros), terminal=True)
        return np.array([self.terminal_cost(x) for x in states])

    # ---- derivatives
    def _perturbations(self, states, actions):
        """Forward-difference points: for each (x, u) the nominal, n state and m action nudges.

        Returns perturbed states `(N, 1+n+m, state_dim)`, actions `(N, 1+n+m, m)` and the signed
        step per coordinate `(N, n+m)` (an action at its upper bound is nudged downwards).
        """
        n, m, eps = self.tangent_dim, self.action_dim, self.finite_diff_eps
        N = len(states)
        dx = np.concatenate([np.zeros((1, n)), eps * np.eye(n), np.zeros((m, n))])
        xs = self.state_add(np.repeat(states[:, None], 1 + n + m, axis=1), np.broadcast_to(dx, (N,) + dx.shape))
        _, high = self.action_bounds()
        sign = np.where(actions + eps > high, -1.0, 1.0)  # (N, m)
        us = np.repeat(actions[:, None], 1 + n + m, axis=1).copy()
        us[:, 1 + n:] += eps * sign[:, None, :] * np.eye(m)
        steps = np.concatenate([np.full((N, n), eps), eps * sign], axis=1)
        return xs, us, steps

    def linearize_batch(self, states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Jacobians of `step` at each (x_t, u_t): A `(N, n, n)`, B `(N, n, m)` (forward differences)."""
        n = self.tangent_dim
        xs, us, steps = self._perturbations(states, actions)
        N, P = xs.shape[:2]
        nxt = self.step_batch(xs.reshape(N * P, -1), us.reshape(N * P, -1)).reshape(N, P, -1)
        diff = self.state_difference(nxt[:, 1:], nxt[:, :1])  # (N, n+m, n)
        jac = np.swapaxes(diff, 1, 2) / steps[:, None, :]
        return jac[:, :, :n], jac[:, :, n:]

    def linearize(self, state: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`(A (n, n), B (n, m))` of `step` at (state, action)."""
        A, B = self.linearize_batch(np.asarray(state, dtype=np.float64)[None],
                                    np.asarray(action, dtype=np.float64)[None])
        return A[0], B[0]

    def cost_derivatives_batch(self, states, actions, terminal: bool = False, full_hessian: bool = False):
        """(l_x `(N, n)`, l_u `(N, m)`, l_xx, l_uu, l_ux `(N, m, n)`) of the running (or terminal) cost.

        Gauss-Newton on the residuals when `residual_cost()` is given (residual Jacobians by
        forward differences); central finite differences of the cost itself otherwise, or when
        `full_hessian` asks for the exact (not Gauss-Newton) Hessian. `actions` None: zeros.
        """
        states = np.asarray(states, dtype=np.float64)
        actions = (np.zeros((len(states), self.action_dim)) if actions is None
                   else np.asarray(actions, dtype=np.float64))
        n = self.tangent_dim
        rc = self.residual_cost()
        if rc is not None and not full_hessian:
            xs, us, steps = self._perturbations(states, actions)
            N, P = xs.shape[:2]
            r = rc.residuals(xs.reshape(N * P, -1), us.reshape(N * P, -1)).reshape(N, P, -1)
            jac = np.swapaxes(r[:, 1:] - r[:, :1], 1, 2) / steps[:, None, :]  # (N, d, n+m)
            if terminal:
                jac[:, :, n:] = 0.0
            g, h = rc.gauss_newton(r[:, 0], jac, terminal=terminal)
        else:
            g, h = self._cost_fd(states, actions, terminal)
        return g[:, :n], g[:, n:], h[:, :n, :n], h[:, n:, n:], h[:, n:, :n]

    def _cost_fd(self, states, actions, terminal, eps: float = 1e-4):
        """Central-difference gradient and Hessian `(N, k)`, `(N, k, k)` in z = (dx, u), k = n+m.

        All points of all states go through one batched `costs` call; the step is larger than
        `finite_diff_eps` because second differences divide by its square.
        """
        n, m = self.tangent_dim, self.action_dim
        k, N = n + m, len(states)
        e = np.eye(k) * eps
        iu, ju = np.triu_indices(k, 1)
        pair = e[iu] + e[ju], e[iu] - e[ju]
        z = np.concatenate([np.zeros((1, k)), e, -e, pair[0], pair[1], -pair[1], -pair[0]])
        P = len(z)
        xs = self.state_add(np.repeat(states[:, None], P, axis=1), np.broadcast_to(z[:, :n], (N, P, n)))
        us = actions[:, None] + z[None, :, n:]
        if terminal:
            f = self.terminal_costs(xs.reshape(N * P, -1)).reshape(N, P)
        else:
            f = self.costs(xs.reshape(N * P, -1), us.reshape(N * P, -1)).reshape(N, P)
        f0, fp, fm = f[:, 0], f[:, 1:1 + k], f[:, 1 + k:1 + 2 * k]
        npair = len(iu)
        fpp, fpm, fmp, fmm = (f[:, 1 + 2 * k + i * npair:1 + 2 * k + (i + 1) * npair] for i in range(4))
        g = (fp - fm) / (2 * eps)
        h = np.zeros((N, k, k))
        h[:, np.arange(k), np.arange(k)] = (fp - 2 * f0[:, None] + fm) / eps ** 2
        off = (fpp - fpm - fmp + fmm) / (4 * eps ** 2)
        h[:, iu, ju] = off
        h[:, ju, iu] = off
        if terminal:
            g[:, n:], h[:, n:], h[:, :, n:] = 0.0, 0.0, 0.0
        return g, h

    def cost_derivatives(self, state, action):
        """`(l_x, l_u, l_xx, l_uu, l_ux)` of `cost` at one (state, action)."""
        out = self.cost_derivatives_batch(np.asarray(state, dtype=np.float64)[None],
                                          np.asarray(action, dtype=np.float64)[None])
        return tuple(a[0] for a in out)
