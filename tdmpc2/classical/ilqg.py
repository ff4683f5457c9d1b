"""iLQG (Tassa, Erez & Todorov 2012) with control limits (Tassa, Mansard & Todorov 2014).

Notation as in `tdmpc2.classical.riccati`: horizon T agent steps, nominal actions U `(T, m)`,
nominal states X `(T+1, state_dim)`, total cost J = sum_t l(x_t, u_t) + l_T(x_T).

One iteration = derivatives about (X, U) -> backward pass (retried with larger mu while Q_uu is
not positive definite) -> line search over a fixed set of step sizes with the closed-loop policy
u = clip(U + alpha k + K (x (-) X)), where alpha = 0 (the current nominal) is always a candidate,
so J never increases. mu is bounded: [regularization, max_regularization]. The solver stops as
CONVERGED only when the relative improvement (or the predicted one) is below `tolerance` while
mu is small; as FAILED on NaN derivatives or when mu saturates; else after `iterations` as
MAX_ITERATIONS. Numerical trouble never raises: the result holds the best finite plan seen.
"""
from __future__ import annotations

import enum
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from tdmpc2.classical.interface import EnvironmentInterface
from tdmpc2.classical.riccati import riccati_backward


class SolverStatus(enum.Enum):
    CONVERGED = "converged"
    MAX_ITERATIONS = "max_iterations"
    FAILED = "failed"


@dataclass
class ClassicalResult:
    """A classical plan: actions `(T, m)`, states `(T+1, state_dim)`, gains K `(T, m, n)`,
    feedforward k `(T, m)` of the last backward pass, total cost, iterations run, status,
    seconds per phase (`derivatives`, `backward`, `rollout`, `total`) and the final mu."""
    actions: np.ndarray
    states: np.ndarray
    K: np.ndarray
    k: np.ndarray
    cost: float
    iterations: int
    status: SolverStatus
    timings: dict = field(default_factory=dict)
    regularization: float = 0.0
    cost_history: list = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return self.status is SolverStatus.CONVERGED

    @property
    def failed(self) -> bool:
        return self.status is SolverStatus.FAILED


class ClassicalMPC(ABC):
    """A trajectory optimiser over an `EnvironmentInterface`."""

    def __init__(self, interface: EnvironmentInterface):
        self.interface = interface

    @abstractmethod
    def plan(self, state: np.ndarray, horizon: int, warm_start: np.ndarray | None = None) -> ClassicalResult:
        """Plan `horizon` agent steps from `state`; `warm_start` `(horizon, m)` seeds the actions."""

    def _inputs(self, state, horizon, warm_start):
        """Validated (x0, U0); bad inputs (not numerical trouble) raise ValueError."""
        env = self.interface
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon!r}.")
        x0 = np.asarray(state, dtype=np.float64)
        if x0.shape != (env.state_dim,):
            raise ValueError(f"state has shape {x0.shape}, expected ({env.state_dim},).")
        if not np.all(np.isfinite(x0)):
            raise ValueError("state contains NaN or infinite entries.")
        if warm_start is None:
            U = np.zeros((horizon, env.action_dim))
        else:
            U = np.array(warm_start, dtype=np.float64)
            if U.shape != (horizon, env.action_dim):
                raise ValueError(f"warm_start has shape {U.shape}, expected ({horizon}, {env.action_dim}).")
            if not np.all(np.isfinite(U)):
                raise ValueError("warm_start contains NaN or infinite actions.")
        low, high = env.action_bounds()
        return x0, np.clip(U, low, high)


class iLQG(ClassicalMPC):  # noqa: N801 (the algorithm's name)
    """iLQG with Gauss-Newton cost Hessians, box-QP control limits and bounded LM regularisation."""

    max_regularization = 1e8
    regularization_factor = 1.6       # Tassa 2012: mu grows/shrinks geometrically, factor accelerating
    small_regularization = 1e-3       # convergence may be declared only with mu at or below this
    full_hessian = False              # DDP flips this: exact cost Hessians instead of Gauss-Newton

    def __init__(self, interface: EnvironmentInterface, iterations: int = 10, line_search_steps: int = 10,
                 regularization: float = 1e-6, tolerance: float = 1e-6):
        super().__init__(interface)
        if iterations < 1 or line_search_steps < 1:
            raise ValueError("iterations and line_search_steps must be at least 1.")
        if regularization < 0 or tolerance < 0:
            raise ValueError("regularization and tolerance must be non-negative.")
        self.iterations = int(iterations)
        self.min_regularization = float(regularization)
        self.tolerance = float(tolerance)
        # step sizes 1 .. 1e-3 (log-spaced); alpha = 0 is the current nominal, kept implicitly
        self.alphas = np.logspace(0, -3, int(line_search_steps)) if line_search_steps > 1 else np.ones(1)

    # ---- pieces of one iteration
    def _total_cost(self, X, U) -> float:
        env = self.interface
        running = env.costs(X[:-1], U)
        return float(np.sum(running) + env.terminal_costs(X[-1:])[0])

    def _derivatives(self, X, U):
        env = self.interface
        A, B = env.linearize_batch(X[:-1], U)
        l_x, l_u, l_xx, l_uu, l_ux = env.cost_derivatives_batch(X[:-1], U, full_hessian=self.full_hessian)
        t_x, _, t_xx, _, _ = env.cost_derivatives_batch(X[-1:], None, terminal=True, full_hessian=self.full_hessian)
        return (A, B, np.concatenate([l_x, t_x]), l_u, np.concatenate([l_xx, t_xx]), l_uu, l_ux)

    def _line_search(self, X, U, k, K):
        """Closed-loop rollouts for every alpha at once: states `(a, T+1, sd)`, actions, costs `(a,)`."""
        env = self.interface
        low, high = env.action_bounds()
        a = self.alphas[:, None]
        xs = np.repeat(X[:1], len(self.alphas), axis=0)
        Xs, Us = [xs], []
        for t in range(len(U)):
            dx = env.state_difference(xs, X[t])
            us = np.clip(U[t] + a * k[t] + dx @ K[t].T, low, high)
            xs = env.step_batch(xs, us)
            Xs.append(xs)
            Us.append(us)
        Xs, Us = np.stack(Xs, axis=1), np.stack(Us, axis=1)
        costs = np.array([self._total_cost(x, u) if np.all(np.isfinite(x)) else np.inf for x, u in zip(Xs, Us)])
        return Xs, Us, np.where(np.isfinite(costs), costs, np.inf)

    def _increase(self, mu, delta):
        delta = max(self.regularization_factor, delta * self.regularization_factor)
        return max(self.min_regularization, mu * delta, 1e-6), delta

    def _decrease(self, mu, delta):
        delta = min(1.0 / self.regularization_factor, delta / self.regularization_factor)
        mu = mu * delta
        return (mu if mu > self.min_regularization else self.min_regularization), delta

    # ---- the solver
    def plan(self, state, horizon, warm_start=None) -> ClassicalResult:
        x0, U = self._inputs(state, horizon, warm_start)
        env = self.interface
        n, m = env.tangent_dim, env.action_dim
        low, high = env.action_bounds()
        timings = dict(derivatives=0.0, backward=0.0, rollout=0.0)
        start = time.perf_counter()
        X = env.simulate(x0[None], U[None])[0]
        J = self._total_cost(X, U) if np.all(np.isfinite(X)) else np.inf
        timings["rollout"] += time.perf_counter() - start
        k, K = np.zeros((horizon, m)), np.zeros((horizon, m, n))
        history = [J]
        if not np.isfinite(J):
            return self._result(U, X, K, k, J, 0, SolverStatus.FAILED, timings, start, self.min_regularization, history)

        mu, delta = self.min_regularization, 1.0
        status, it = SolverStatus.MAX_ITERATIONS, 0
        for it in range(1, self.iterations + 1):
            tic = time.perf_counter()
            derivs = self._derivatives(X, U)
            timings["derivatives"] += time.perf_counter() - tic
            if not all(np.all(np.isfinite(d)) for d in derivs):
                status = SolverStatus.FAILED
                break

            tic = time.perf_counter()
            bp = riccati_backward(*derivs, reg=mu, du_low=low - U, du_high=high - U, k_warm=k)
            while not bp.ok and mu < self.max_regularization:
                mu, delta = self._increase(mu, delta)
                bp = riccati_backward(*derivs, reg=mu, du_low=low - U, du_high=high - U, k_warm=k)
            timings["backward"] += time.perf_counter() - tic
            if not bp.ok:
                status = SolverStatus.FAILED
                break
            k, K = bp.k, bp.K

            tic = time.perf_counter()
            Xs, Us, costs = self._line_search(X, U, k, K)
            timings["rollout"] += time.perf_counter() - tic
            best = int(np.argmin(costs))
            improvement = J - costs[best]
            expected = -(bp.dV[0] + bp.dV[1])  # predicted decrease at alpha = 1
            scale = max(abs(J), 1e-12)
            if improvement > 0:  # accept the best step size (alpha = 0 otherwise: keep the nominal)
                X, U, J = Xs[best], Us[best], float(costs[best])
                history.append(J)
                mu, delta = self._decrease(mu, delta)
                if improvement < self.tolerance * scale and mu <= self.small_regularization:
                    status = SolverStatus.CONVERGED
                    break
            else:
                if expected < self.tolerance * scale and mu <= self.small_regularization:
                    status = SolverStatus.CONVERGED  # stationary: nothing left to gain
                    break
                mu, delta = self._increase(mu, delta)
                if mu >= self.max_regularization:
                    status = SolverStatus.FAILED
                    break
        return self._result(U, X, K, k, J, it, status, timings, start, mu, history)

    def _result(self, U, X, K, k, J, it, status, timings, start, mu, history):
        timings["total"] = time.perf_counter() - start
        return ClassicalResult(actions=U, states=X, K=K, k=k, cost=float(J), iterations=it, status=status,
                               timings=timings, regularization=float(mu), cost_history=history)
