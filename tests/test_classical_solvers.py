"""Classical solvers against known answers: finite-horizon Riccati, the batch LQ optimum, box limits."""
import numpy as np
import pytest

from tdmpc2.classical import Quadratic, ResidualCost, Term, box_qp
from tdmpc2.hybrid_mpc import (DDP, LQR, ClassicalResult, EnvironmentInterface, SolverStatus, iLQG,
                               make_classical_solver, riccati_backward)

RNG = np.random.default_rng(0)
N_X, N_U, T = 4, 2, 12
A_SYS = np.eye(N_X) + 0.1 * RNG.standard_normal((N_X, N_X))
B_SYS = 0.3 * RNG.standard_normal((N_X, N_U))
Q = np.diag([1.0, 2.0, 0.5, 1.0])
R = np.diag([0.1, 0.3])
QF = 5 * np.eye(N_X)


class LinearQuadratic(EnvironmentInterface):
    """x' = A x + B u with cost 0.5 x'Qx + 0.5 u'Ru and terminal 0.5 x'Qf x (as residuals)."""

    state_dim, action_dim = N_X, N_U

    def __init__(self, bound=np.inf):
        self.bound = bound
        lq, lr, lf = np.linalg.cholesky(Q).T, np.linalg.cholesky(R).T, np.linalg.cholesky(QF).T
        self._cost = ResidualCost([
            Term("state", lambda x, u: x @ lq.T, Quadratic(), 1.0, terminal_weight=0.0),
            Term("control", lambda x, u: u @ lr.T, Quadratic(), 1.0, terminal_weight=0.0),
            Term("terminal", lambda x, u: x @ lf.T, Quadratic(), 0.0, terminal_weight=1.0),
        ])

    def action_bounds(self):
        return -self.bound * np.ones(N_U), self.bound * np.ones(N_U)

    def get_state(self):
        return np.ones(N_X)

    def step(self, state, action):
        return A_SYS @ state + B_SYS @ action

    def step_batch(self, states, actions):
        return states @ A_SYS.T + actions @ B_SYS.T

    def reward(self, state, action):
        return -self.cost(state, action)

    def observation(self, state):
        return state

    def cost(self, state, action):
        return float(self.costs(state[None], action[None])[0])

    def residual_cost(self):
        return self._cost


def riccati_reference(A, B, Q, R, Qf, T):
    """Textbook finite-horizon LQR: P_T = Qf, K = -(R + B'PB)^-1 B'PA, P <- Q + A'P(A + BK)."""
    P, gains, values = Qf, [], [Qf]
    for _ in range(T):
        K = -np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        P = Q + A.T @ P @ (A + B @ K)
        gains.append(K)
        values.append(P)
    return np.array(gains[::-1]), np.array(values[::-1])


def lq_optimum(x0, T):
    """The LQ optimum by one big least-squares solve over all actions (no recursion)."""
    Sx = np.stack([np.linalg.matrix_power(A_SYS, t) for t in range(T + 1)])            # (T+1, n, n)
    Su = np.zeros((T + 1, N_X, T, N_U))
    for t in range(1, T + 1):
        for s in range(t):
            Su[t, :, s] = np.linalg.matrix_power(A_SYS, t - 1 - s) @ B_SYS
    Su = Su.reshape((T + 1) * N_X, T * N_U)
    Qbar = np.kron(np.diag([1.0] * T + [0.0]), Q)
    Qbar[-N_X:, -N_X:] = QF
    Rbar = np.kron(np.eye(T), R)
    U = -np.linalg.solve(Su.T @ Qbar @ Su + Rbar, Su.T @ Qbar @ (Sx.reshape(-1, N_X) @ x0))
    return U.reshape(T, N_U)


def test_backward_pass_equals_finite_horizon_riccati():
    K_ref, P_ref = riccati_reference(A_SYS, B_SYS, Q, R, QF, T)
    A = np.broadcast_to(A_SYS, (T, N_X, N_X))
    B = np.broadcast_to(B_SYS, (T, N_X, N_U))
    l_xx = np.concatenate([np.broadcast_to(Q, (T, N_X, N_X)), QF[None]])
    bp = riccati_backward(A, B, np.zeros((T + 1, N_X)), np.zeros((T, N_U)), l_xx,
                          np.broadcast_to(R, (T, N_U, N_U)), np.zeros((T, N_U, N_X)))
    assert bp.ok
    np.testing.assert_allclose(bp.K, K_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(bp.V_xx, P_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(bp.k, 0.0, atol=1e-14)


@pytest.mark.parametrize("solver", [iLQG, DDP])
def test_ilqg_reaches_lq_optimum_in_two_iterations(solver):
    env, x0 = LinearQuadratic(), np.array([1.0, -2.0, 0.5, 3.0])
    result = solver(env, iterations=10, regularization=0.0).plan(x0, T)
    assert isinstance(result, ClassicalResult)
    assert result.iterations <= 2 and result.status is SolverStatus.CONVERGED
    np.testing.assert_allclose(result.actions, lq_optimum(x0, T), rtol=1e-6, atol=1e-6)
    assert result.states.shape == (T + 1, N_X) and result.K.shape == (T, N_U, N_X)
    assert set(result.timings) >= {"derivatives", "backward", "rollout"}


def test_lqr_is_one_riccati_pass_and_factory_picks_by_name():
    env, x0 = LinearQuadratic(), np.array([1.0, -2.0, 0.5, 3.0])
    solver = make_classical_solver("lqr", env, regularization=0.0)
    assert isinstance(solver, LQR)
    result = solver.plan(x0, T)
    assert result.iterations == 1
    np.testing.assert_allclose(result.actions, lq_optimum(x0, T), rtol=1e-6, atol=1e-6)
    assert isinstance(make_classical_solver("ddp", env), DDP)
    with pytest.raises(ValueError, match="classical_algorithm"):
        make_classical_solver("ilqr", env)


def test_control_limits_are_never_violated():
    env = LinearQuadratic(bound=0.2)
    x0 = np.array([3.0, -3.0, 2.0, 4.0])
    warm = RNG.uniform(-1, 1, (T, N_U))  # out of bounds on purpose: must be clipped
    result = iLQG(env, iterations=15).plan(x0, T, warm_start=warm)
    assert np.all(np.abs(result.actions) <= 0.2 + 1e-12)
    assert not result.failed
    unconstrained = lq_optimum(x0, T)
    assert np.any(np.abs(unconstrained) > 0.2)  # the limits are active in this problem
    clamped = np.isclose(np.abs(result.actions), 0.2)
    assert clamped.any()
    np.testing.assert_allclose(result.K[clamped], 0.0)  # no feedback through clamped controls


def test_box_qp_matches_brute_force():
    H = np.array([[2.0, 0.5], [0.5, 1.0]])
    g = np.array([-4.0, 0.2])  # x0 clamps at 1, then x1 = -0.7 is free
    low, high = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    x, free = box_qp(H, g, low, high)
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 401), np.linspace(-1, 1, 401)), -1).reshape(-1, 2)
    f = 0.5 * np.einsum("ni,ij,nj->n", grid, H, grid) + grid @ g
    np.testing.assert_allclose(x, grid[np.argmin(f)], atol=6e-3)
    assert list(free) == [False, True]


def test_cost_never_increases_and_regularisation_is_bounded():
    env = Pendulum()
    for seed in range(3):
        warm = np.random.default_rng(seed).uniform(-1, 1, (30, 1))
        result = iLQG(env, iterations=8).plan(np.array([0.3, 0.0]), 30, warm_start=warm)
        assert np.all(np.diff(result.cost_history) <= 0)
        assert result.regularization <= iLQG.max_regularization
        assert result.cost < result.cost_history[0]


def test_fd_jacobians_match_linear_system():
    A, B = LinearQuadratic().linearize(RNG.standard_normal(N_X), RNG.uniform(-1, 1, N_U))
    np.testing.assert_allclose(A, A_SYS, atol=1e-7)
    np.testing.assert_allclose(B, B_SYS, atol=1e-7)


def test_gauss_newton_cost_derivatives_of_quadratic_cost_are_exact():
    env = LinearQuadratic()
    l_x, l_u, l_xx, l_uu, l_ux = env.cost_derivatives(np.array([1.0, 2.0, -1.0, 0.5]), np.array([0.3, -0.2]))
    np.testing.assert_allclose(l_x, Q @ [1.0, 2.0, -1.0, 0.5], atol=1e-5)
    np.testing.assert_allclose(l_u, R @ [0.3, -0.2], atol=1e-5)
    np.testing.assert_allclose(l_xx, Q, atol=1e-8)
    np.testing.assert_allclose(l_uu, R, atol=1e-8)
    np.testing.assert_allclose(l_ux, 0.0, atol=1e-8)


class Pendulum(LinearQuadratic):
    """Damped pendulum x = (angle from upright, velocity), swing-up cost."""
    state_dim, action_dim = 2, 1

    def __init__(self, nan_when=None):
        self.nan_when = nan_when
        self.bound = 1.0
        self._cost = ResidualCost([
            Term("upright", lambda x, u: np.stack([1 - np.cos(x[:, 0]), 0.1 * x[:, 1]], 1), Quadratic(), 1.0),
            Term("control", lambda x, u: 0.1 * u, Quadratic(), 1.0, terminal_weight=0.0)])

    def action_bounds(self):
        return -np.ones(1), np.ones(1)

    def step(self, state, action):
        th, w = state
        w = w + 0.05 * (9.8 * np.sin(th) + 4.0 * action[0] - 0.1 * w)
        nxt = np.array([th + 0.05 * w, w])
        if self.nan_when is not None and self.nan_when(state, action):
            nxt[:] = np.nan
        return nxt

    def step_batch(self, states, actions):
        return np.stack([self.step(x, u) for x, u in zip(states, actions)])


def test_nan_dynamics_fail_without_raising():
    always = Pendulum(nan_when=lambda x, u: True)
    result = iLQG(always).plan(np.array([0.3, 0.0]), 10)
    assert result.status is SolverStatus.FAILED and np.all(np.isfinite(result.actions))

    off_nominal = Pendulum(nan_when=lambda x, u: u[0] != 0.0)  # the nominal (zeros) is fine, nudges are not
    result = iLQG(off_nominal).plan(np.array([0.3, 0.0]), 10)
    assert result.status is SolverStatus.FAILED
    np.testing.assert_array_equal(result.actions, 0.0)
    assert np.isfinite(result.cost)


def test_bad_inputs_raise_clear_errors():
    solver = iLQG(LinearQuadratic())
    with pytest.raises(ValueError, match="horizon"):
        solver.plan(np.zeros(N_X), 0)
    with pytest.raises(ValueError, match="state has shape"):
        solver.plan(np.zeros(N_X + 1), 5)
    with pytest.raises(ValueError, match="NaN"):
        solver.plan(np.zeros(N_X), 3, warm_start=np.full((3, N_U), np.nan))
    with pytest.raises(ValueError, match="warm_start has shape"):
        solver.plan(np.zeros(N_X), 3, warm_start=np.zeros((4, N_U)))
