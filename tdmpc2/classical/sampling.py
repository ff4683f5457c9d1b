"""Predictive sampling on the simulator (Howell et al. 2022, "Predictive Sampling: Real-time
Behaviour Synthesis with MuJoCo"), with an MPPI-weighted mean as one extra candidate.

Notation as in `tdmpc2.classical.riccati`: horizon T agent steps, actions U `(T, m)`, states X
`(T+1, state_dim)`. The plan is a spline with P knots theta `(P, m)`: U = W theta, where the
fixed matrix W `(T, P)` interpolates the knots (`zero`: piecewise constant, `linear`: piecewise
linear; P = T with either is the raw action sequence).

One iteration rolls out N candidates together in one batched `rollout`: the nominal theta, the
perturbations theta + sigma eps (eps ~ N(0, I), clipped to the action bounds) and, from the
second iteration on, the MPPI mean (softmax of -J / (temperature * std J)) of the previous
iteration's candidates; the best candidate under the objective becomes the nominal.
The warm start itself is rolled out first and kept as the incumbent, so the returned plan is
never worse than the warm start under the solver's own objective. Objectives: `cost` (the
interface's smooth planning cost, running + terminal) or `reward` (minus the summed task reward).
Draws come from the solver's own generator (`seed`), so plans are reproducible. There are no
gains: K and k are zeros. A candidate whose rollout is not finite scores +inf; when no candidate
is finite the status is FAILED and the actions are the (clipped, finite) warm start.
"""
from __future__ import annotations

import time

import numpy as np

from tdmpc2.classical.ilqg import ClassicalMPC, ClassicalResult, SolverStatus

INTERPOLATIONS = ("zero", "linear")
OBJECTIVES = ("cost", "reward")


def interpolation_matrix(horizon: int, knots: int, kind: str = "linear") -> np.ndarray:
    """W `(T, P)` with U = W theta: knots spread evenly over steps 0 .. T-1."""
    if kind not in INTERPOLATIONS:
        raise ValueError(f"Unknown interpolation '{kind}'; choose one of {', '.join(INTERPOLATIONS)}.")
    P = max(1, min(int(knots), horizon))
    W = np.zeros((horizon, P))
    if P == 1:
        W[:, 0] = 1.0
        return W
    if kind == "zero":  # knot j holds over an equal share of the steps
        W[np.arange(horizon), np.minimum(np.arange(horizon) * P // horizon, P - 1)] = 1.0
        return W
    pos = np.arange(horizon) * (P - 1) / (horizon - 1)  # step t sits at knot coordinate pos[t]
    left = np.minimum(np.floor(pos).astype(int), P - 2)
    frac = pos - left
    W[np.arange(horizon), left] = 1.0 - frac
    W[np.arange(horizon), left + 1] = frac
    return W


class PredictiveSampling(ClassicalMPC):
    """Sampling-based receding-horizon planner on the true dynamics; same result type as iLQG."""

    def __init__(self, interface, iterations: int = 1, samples: int = 64, noise: float = 0.3,
                 knots: int = 8, interpolation: str = "linear", objective: str = "cost",
                 temperature: float = 0.1, seed: int = 0):
        super().__init__(interface)
        if iterations < 1 or samples < 2 or knots < 1:
            raise ValueError("sampling needs iterations >= 1, samples >= 2 and knots >= 1.")
        if noise < 0 or temperature <= 0:
            raise ValueError("sampling noise must be >= 0 and temperature > 0.")
        if objective not in OBJECTIVES:
            raise ValueError(f"Unknown sampling objective '{objective}'; choose one of {', '.join(OBJECTIVES)}.")
        interpolation_matrix(2, 2, interpolation)  # validates the name
        self.iterations, self.samples, self.noise = int(iterations), int(samples), float(noise)
        self.knots, self.interpolation, self.objective = int(knots), interpolation, objective
        self.temperature = float(temperature)
        self.rng = np.random.default_rng(seed)
        self._basis: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _spline(self, horizon):
        """(W `(T, P)`, its pseudo-inverse `(P, T)`) for this horizon, cached."""
        if horizon not in self._basis:
            W = interpolation_matrix(horizon, self.knots, self.interpolation)
            self._basis[horizon] = W, np.linalg.pinv(W)
        return self._basis[horizon]

    def _evaluate(self, x0, U):
        """Roll out actions `(N, T, m)` from x0: states `(N, T+1, sd)` and objective `(N,)` (inf if not finite)."""
        env = self.interface
        N, T, _ = U.shape
        starts = np.repeat(x0[None], N, axis=0)
        if self.objective == "reward":
            X, rewards = env.rollout(starts, U)
            J = -np.sum(rewards, axis=1)
        else:
            X = env.simulate(starts, U)
            J = np.full(N, np.inf)
            ok = np.all(np.isfinite(X.reshape(N, -1)), axis=1)
            if ok.any():
                Xo, Uo = X[ok], U[ok]
                n = len(Xo)
                running = env.costs(Xo[:, :-1].reshape(n * T, -1), Uo.reshape(n * T, -1)).reshape(n, T)
                J[ok] = running.sum(axis=1) + env.terminal_costs(Xo[:, -1])
        finite = np.isfinite(J) & np.all(np.isfinite(X.reshape(N, -1)), axis=1)
        return X, np.where(finite, J, np.inf)

    def _mppi_mean(self, theta, J):
        """Softmax(-J / (temperature * spread)) average of candidate knots, or None if none is finite."""
        finite = np.isfinite(J)
        if finite.sum() < 2:
            return None
        Jf = J[finite]
        scale = max(float(np.std(Jf)), 1e-12) * self.temperature
        w = np.exp(-(Jf - Jf.min()) / scale)
        return np.tensordot(w / w.sum(), theta[finite], axes=1)

    def plan(self, state, horizon, warm_start=None) -> ClassicalResult:
        x0, U0 = self._inputs(state, horizon, warm_start)
        env = self.interface
        n, m = env.tangent_dim, env.action_dim
        low, high = env.action_bounds()
        W, W_pinv = self._spline(horizon)
        timings = dict(derivatives=0.0, backward=0.0, rollout=0.0, sampling=0.0)
        start = time.perf_counter()

        tic = time.perf_counter()
        X0, J0 = self._evaluate(x0, U0[None])
        timings["rollout"] += time.perf_counter() - tic
        best_U, best_X, best_J = U0, X0[0], float(J0[0])  # the incumbent: the warm start itself
        history = [best_J]
        theta = np.clip(W_pinv @ U0, low, high)  # the spline nearest to the warm start
        extra = None
        for it in range(self.iterations):
            tic = time.perf_counter()
            draws = self.samples - 1 - (extra is not None)
            eps = self.rng.standard_normal((draws,) + theta.shape)
            cands = [theta[None], theta[None] + self.noise * eps]
            if extra is not None:
                cands.append(extra[None])
            thetas = np.clip(np.concatenate(cands), low, high)
            U = np.einsum("tp,npm->ntm", W, thetas)
            timings["sampling"] += time.perf_counter() - tic
            tic = time.perf_counter()
            X, J = self._evaluate(x0, U)
            timings["rollout"] += time.perf_counter() - tic
            i = int(np.argmin(J))
            if J[i] < best_J:
                best_U, best_X, best_J = U[i], X[i], float(J[i])
            if np.isfinite(J[i]):
                theta = thetas[i]
            history.append(best_J)
            if it + 1 < self.iterations:
                extra = self._mppi_mean(thetas, J)
        status = SolverStatus.MAX_ITERATIONS if np.isfinite(best_J) else SolverStatus.FAILED
        if status is SolverStatus.FAILED:  # nothing finite: the clipped warm start, its raw states
            best_U, best_X = U0, np.where(np.isfinite(X0[0]), X0[0], x0)
        timings["total"] = time.perf_counter() - start
        return ClassicalResult(actions=np.array(best_U), states=np.array(best_X), K=np.zeros((horizon, m, n)),
                               k=np.zeros((horizon, m)), cost=float(best_J), iterations=self.iterations,
                               status=status, timings=timings, regularization=0.0, cost_history=history)
