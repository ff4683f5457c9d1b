"""MetaWorldInterface: exact snapshots, bit-for-bit steps, reward/observation parity, Jacobians."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("metaworld")

from tdmpc2.envs.metaworld import MetaWorldEnv  # noqa: E402
from tdmpc2.envs.metaworld_interface import MetaWorldInterface  # noqa: E402

TASKS = ("mw-reach", "mw-push", "mw-pick-place")


def _live(task, seed=0, warmup=0):
    env = MetaWorldEnv(task, seed=seed)
    interface = MetaWorldInterface(env)
    env.reset()
    rng = np.random.default_rng(seed)
    for _ in range(warmup):
        env.step(rng.uniform(-1, 1, 4))
    return env, interface, rng


@pytest.mark.parametrize("task", TASKS)
def test_restore_and_replay_100_steps_bit_for_bit(task):
    env, interface, rng = _live(task, warmup=3)
    x0 = interface.get_state()
    actions = rng.uniform(-1.2, 1.2, (100, 4))  # out-of-range entries are clipped by both
    live_states, live_obs, live_rewards = [], [], []
    for a in actions:
        obs, reward, _, _ = env.step(a)
        live_states.append(interface.get_state())
        live_obs.append(obs.numpy())
        live_rewards.append(float(reward))
    X, R = interface.rollout(x0[None], actions[None])
    assert np.array_equal(X[0, 1:], np.array(live_states))  # qpos, qvel, warm start, mocap, prev, ...
    assert np.array_equal(R[0].astype(np.float32), np.array(live_rewards, dtype=np.float32))
    assert np.array_equal(interface.observation(X[0, -1]), live_obs[-1])
    # the live env was not disturbed by the interface
    assert np.array_equal(interface.get_state(), live_states[-1])


@pytest.mark.parametrize("task", TASKS)
def test_step_equals_env_step_for_random_actions(task):
    env, interface, rng = _live(task, seed=1)
    for _ in range(15):
        x = interface.get_state()
        a = rng.uniform(-1, 1, 4)
        predicted = interface.step(x, a)
        env.step(torch.as_tensor(a))
        assert np.array_equal(predicted, interface.get_state())
    assert np.array_equal(interface.step_batch(np.stack([x, x]), np.stack([a, a]))[1], predicted)


@pytest.mark.parametrize("task", TASKS)
def test_reward_and_observation_parity_on_random_states(task):
    env, interface, rng = _live(task, seed=2)
    states, actions, rewards, observations = [], [], [], []
    for _ in range(30):
        states.append(interface.get_state())
        actions.append(rng.uniform(-1, 1, 4))
        obs, reward, _, info = env.step(actions[-1])
        rewards.append(float(reward))
        observations.append(obs.numpy())
    order = rng.permutation(len(states))  # evaluated out of order: each state carries what it needs
    for i in order:
        assert np.float32(interface.reward(states[i], actions[i])) == np.float32(rewards[i])
        if i + 1 < len(states):
            assert np.array_equal(interface.observation(states[i + 1]), observations[i])
    _, _, success = interface.step_with_reward(states[-1], actions[-1])
    assert success == info["success"]


def test_states_of_an_earlier_episode_keep_their_context():
    env, interface, rng = _live("mw-pick-place", seed=3)
    x_old = interface.get_state()
    a = rng.uniform(-1, 1, 4)
    expected = interface.step_with_reward(x_old, a)
    env.reset()  # new object and goal
    interface.get_state()
    again = interface.step_with_reward(x_old, a)
    assert np.array_equal(expected[0], again[0]) and expected[1] == again[1]
    assert not np.array_equal(interface.observation(x_old)[-3:], interface.observation(interface.get_state())[-3:])


def test_state_difference_and_add_are_inverse():
    env, interface, rng = _live("mw-push", seed=4, warmup=5)
    x = interface.get_state()
    dx = 1e-3 * rng.standard_normal(interface.tangent_dim)
    y = interface.state_add(x, dx)
    assert np.allclose(interface.state_difference(y, x), dx, atol=1e-10)
    assert interface.state_difference(x, x).shape == (interface.tangent_dim,)


def test_jacobian_mocap_columns_match_central_differences_of_step():
    env, interface, rng = _live("mw-push", seed=5, warmup=10)
    x, u = interface.get_state(), rng.uniform(-0.9, 0.9, 4)
    A, B = interface.linearize(x, u)
    n, eps = interface.tangent_dim, 1e-6
    assert A.shape == (n, n) and B.shape == (n, 4)
    for j in range(n - 3, n):  # the mocap position columns
        dx = np.zeros(n)
        dx[j] = eps
        reference = interface.state_difference(interface.step(interface.state_add(x, dx), u),
                                               interface.step(interface.state_add(x, -dx), u)) / (2 * eps)
        assert np.abs(A[:, j]).max() > 1e-2  # the hand follows the mocap
        assert np.allclose(A[:, j], reference, atol=1e-5 * max(1.0, np.abs(reference).max()))
    for j in range(4):
        du = np.zeros(4)
        du[j] = eps
        reference = interface.state_difference(interface.step(x, u + du), interface.step(x, u - du)) / (2 * eps)
        assert np.allclose(B[:, j], reference, atol=1e-5 * max(1.0, np.abs(reference).max()))
    assert np.abs(B[n - 3:, :3]).max() == pytest.approx(2 * 0.01)  # mocap moves 1 cm per env step


def test_costs_are_finite_and_pull_the_right_way():
    env, interface, rng = _live("mw-reach", seed=6)
    x = interface.get_state()
    feats = interface.features(x[None])
    towards = np.clip((feats["goal"] - feats["tcp"])[0] * 100, -1, 1)
    l_x, l_u, l_xx, l_uu, l_ux = interface.cost_derivatives(x, np.zeros(4))
    assert all(np.all(np.isfinite(d)) for d in (l_x, l_u, l_xx, l_uu, l_ux))
    c_towards = interface.cost(interface.step(x, np.r_[towards, 0.0]), np.zeros(4))
    c_away = interface.cost(interface.step(x, np.r_[-towards, 0.0]), np.zeros(4))
    assert c_towards < interface.cost(x, np.zeros(4)) < c_away
