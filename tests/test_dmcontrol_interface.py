"""DMControlInterface against the live env: exact replay, rewards, observations, Jacobians, errors."""
import numpy as np
import pytest
import torch

from tdmpc2.config import load_config
from tdmpc2.envs import make_env, make_interface
from tdmpc2.envs.dmc_costs import COSTS
from tdmpc2.envs.dmcontrol_interface import DMControlInterface, UnsupportedTaskError
from tdmpc2.hybrid_mpc import SolverStatus, iLQG


def build(task, planning_model="exact", seed=1, warmup=5):
    cfg = load_config(task=task, seed=seed, planning_model=planning_model, mujoco_threads=2)
    env = make_env(cfg)
    env.reset()
    for _ in range(warmup):
        env.step(env.rand_act())
    return env, make_interface(cfg, env)


def random_actions(n, m, seed=0):
    # float32-representable, so the env (float32 actions) and the interface see the same numbers
    return np.random.default_rng(seed).uniform(-1, 1, (n, m)).astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("task", ["walker-walk", "cheetah-run", "fish-swim"])
def test_snapshot_restore_and_200_steps_reproduce_the_env_bit_for_bit(task):
    env, iface = build(task)
    x0 = iface.get_state()
    actions = random_actions(200, iface.action_dim)
    for a in actions:
        env.step(torch.as_tensor(a))
    live = iface.get_state()

    x = x0
    for a in actions:
        x = iface.step(x, a)
    np.testing.assert_array_equal(x, live)                         # state incl. warm start
    batched = iface.simulate(x0[None], actions[None])[0, -1]       # C rollout: physics identical
    np.testing.assert_array_equal(batched[iface.qpos_slice], live[iface.qpos_slice])
    np.testing.assert_array_equal(batched[iface.qvel_slice], live[iface.qvel_slice])
    np.testing.assert_array_equal(iface.get_state(), live)         # the live env was not disturbed


def test_restoring_a_snapshot_into_the_env_replays_it():
    env, iface = build("walker-stand")
    x0 = iface.get_state()
    actions = random_actions(50, iface.action_dim, seed=3)
    first = [env.step(torch.as_tensor(a))[0].numpy() for a in actions]
    import mujoco
    mujoco.mj_setState(iface.model, env.physics.data.ptr, x0[:iface._n_int], mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(iface.model, env.physics.data.ptr)
    second = [env.step(torch.as_tensor(a))[0].numpy() for a in actions]
    np.testing.assert_array_equal(np.array(first), np.array(second))


@pytest.mark.parametrize("task", list(COSTS))
def test_batched_reward_and_observation_equal_the_env(task):
    env, iface = build(task, seed=2)
    actions = random_actions(12, iface.action_dim, seed=7)
    starts, rewards, observations = [], [], []
    for a in actions:  # states along a random trajectory: varied, and reachable
        starts.append(iface.get_state())
        obs, r, _, _ = env.step(torch.as_tensor(a))
        rewards.append(float(r))
        observations.append(obs.numpy())
    states, batch_rewards = iface.rollout(np.array(starts), actions[:, None])
    np.testing.assert_allclose(batch_rewards[:, 0], rewards, rtol=0, atol=1e-6)  # env rewards are float32
    np.testing.assert_array_equal(iface.observations(states[:, 1]), np.array(observations))
    np.testing.assert_array_equal(iface.observation(states[-1, 1]), observations[-1])
    assert iface.reward(starts[0], actions[0]) == pytest.approx(rewards[0], abs=1e-6)
    assert np.all(np.isfinite(iface.costs(states[:, 0], actions)))


def test_rewards_vary_so_the_comparison_means_something():
    env, iface = build("walker-walk", seed=4, warmup=0)
    _, rewards = iface.rollout(np.repeat(iface.get_state()[None], 4, 0), random_actions(40, 6).reshape(4, 10, 6))
    assert np.ptp(rewards) > 1e-3


def test_fd_jacobians_match_central_differences_on_cheetah():
    env, iface = build("cheetah-run", warmup=20)
    x, u = iface.get_state(), random_actions(1, 6, seed=1)[0] * 0.5
    A, B = iface.linearize(x, u)
    n, eps = iface.tangent_dim, 1e-6
    A_ref, B_ref = np.zeros_like(A), np.zeros_like(B)
    for i in range(n):  # slow reference: central differences with single exact steps
        d = np.zeros(n)
        d[i] = eps
        A_ref[:, i] = iface.state_difference(iface.step(iface.state_add(x, d), u),
                                             iface.step(iface.state_add(x, -d), u)) / (2 * eps)
    for j in range(6):
        d = np.zeros(6)
        d[j] = eps
        B_ref[:, j] = iface.state_difference(iface.step(x, u + d), iface.step(x, u - d)) / (2 * eps)
    scale = np.abs(A_ref).max()
    np.testing.assert_allclose(A, A_ref, atol=1e-4 * scale)
    np.testing.assert_allclose(B, B_ref, atol=1e-4 * np.abs(B_ref).max())
    assert not np.allclose(A, np.eye(n), atol=1e-3)  # the dynamics do something over one step


def test_tangent_space_roundtrip_with_free_joint():
    env, iface = build("fish-swim")
    x = iface.get_state()
    dx = np.random.default_rng(0).normal(0, 0.1, iface.tangent_dim)
    y = iface.state_add(x, dx)
    np.testing.assert_allclose(iface.state_difference(y, x), dx, atol=1e-10)
    quat = iface.qpos(y)[3:7]
    assert abs(np.linalg.norm(quat) - 1) < 1e-12
    assert iface.tangent_dim == 2 * iface.nv < iface.nq + iface.nv + 1


def test_planning_model_is_coarser_but_close():
    env, exact = build("fish-swim", warmup=0)  # no contacts: only the integration step differs
    _, coarse = build("fish-swim", planning_model="default", warmup=0)
    assert coarse.steps_per_action < exact.steps_per_action
    x = exact.get_state()
    u = random_actions(2, 5).reshape(1, 2, 5)
    diff = exact.state_difference(coarse.simulate(x[None], u)[0, -1], exact.simulate(x[None], u)[0, -1])
    assert 0 < np.abs(diff[:exact.nv]).max() < 0.05  # positions after 0.1 s: same motion, other numbers


def test_ilqg_on_the_simulator_improves_the_plan_and_respects_limits():
    env, iface = build("cartpole-swingup", warmup=0)
    result = iLQG(iface, iterations=3).plan(iface.get_state(), 20)
    assert result.status is not SolverStatus.FAILED
    assert result.cost < result.cost_history[0]
    assert np.all(np.abs(result.actions) <= 1.0)


def test_nan_dynamics_give_failed_status(monkeypatch):
    env, iface = build("pendulum-swingup", warmup=0)
    x = iface.get_state()

    def broken(states, actions):
        out = np.asarray(states, dtype=np.float64).copy()
        out[:, iface.qvel_slice] = np.nan
        return out
    monkeypatch.setattr(iface, "step_batch", broken)
    monkeypatch.setattr(iface, "linearize_batch", lambda X, U: (np.full((len(X), 2, 2), np.nan), np.zeros((len(X), 2, 1))))
    result = iLQG(iface).plan(x, 10)
    assert result.status is SolverStatus.FAILED
    assert np.all(np.isfinite(result.actions))


def test_bad_inputs_raise_clear_errors():
    env, iface = build("cheetah-run", warmup=0)
    x = iface.get_state()
    with pytest.raises(ValueError, match="state has shape"):
        iface.step(x[:-1], np.zeros(6))
    with pytest.raises(ValueError, match="NaN"):
        iface.step(x, np.full(6, np.nan))
    with pytest.raises(ValueError, match="NaN"):
        iface.rollout(x[None], np.full((1, 3, 6), np.nan))
    with pytest.raises(ValueError, match="at least 1"):
        iface.rollout(x[None], np.zeros((1, 0, 6)))
    with pytest.raises(ValueError, match="horizon"):
        iLQG(iface).plan(x, 0)
    with pytest.raises(UnsupportedTaskError, match="no classical planning cost"):
        DMControlInterface(make_env(load_config(task="pendulum-spin")))
    with pytest.raises(ValueError, match="planning_model"):
        DMControlInterface(env, planning_model="coarse")
