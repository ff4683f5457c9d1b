"""MetaWorldInterface: exact snapshots, bit-for-bit steps, reward/observation parity, Jacobians,
the batched path (vectorised rewards, observations, features) and a tiny hybrid training run."""
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


# ---------------------------------------------------------------------------------------------
# Batched path: vectorised rewards, observations, features (tdmpc2/envs/metaworld_rewards.py)
# ---------------------------------------------------------------------------------------------

def _expert_states(task, seed, steps=40, noise=0.1):
    """States, actions and env rewards along Meta-World's scripted policy (plus noise): covers the
    reward's branches (approach, caging, grasp/lift bonus, 10 at the goal)."""
    from metaworld import policies

    policy = {"mw-reach": policies.SawyerReachV3Policy, "mw-push": policies.SawyerPushV3Policy,
              "mw-pick-place": policies.SawyerPickPlaceV3Policy}[task]()
    env, interface, rng = _live(task, seed=seed)
    states, actions, rewards, observations = [], [], [], []
    for _ in range(steps):
        a = np.clip(policy.get_action(env.last_inner_obs) + noise * rng.standard_normal(4), -1, 1)
        states.append(interface.get_state())
        actions.append(a)
        obs, reward, _, _ = env.step(a)
        rewards.append(float(reward))
        observations.append(obs.numpy())
    return env, interface, rng, np.array(states), np.array(actions), np.array(rewards), np.array(observations)


@pytest.mark.parametrize("task", TASKS)
def test_batched_rewards_equal_meta_world_on_visited_and_perturbed_states(task):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the scripted policies warn about their gains
        env, interface, rng, states, actions, env_rewards, _ = _expert_states(task, seed=7)
    assert interface.batched(states[0]) is not None  # the batched path is the one under test
    n = len(states)
    dx = rng.standard_normal((n, interface.tangent_dim)) * 3e-3  # qpos (object included), qvel, mocap
    perturbed = interface.state_add(states, dx)
    xs = np.concatenate([states, perturbed, states])
    us = np.concatenate([actions, actions, rng.uniform(-1.2, 1.2, (n, 4))])
    X, R = interface.rollout(xs, us[:, None])
    reference = [interface.step_with_reward(x, u) for x, u in zip(xs, us)]  # Meta-World's own code
    np.testing.assert_allclose(R[:, 0], [r for _, r, _ in reference], rtol=1e-9, atol=0)
    assert np.array_equal(X[:, 1], np.array([x for x, _, _ in reference]))
    assert np.array_equal(R[:n, 0].astype(np.float32), env_rewards.astype(np.float32))
    if task != "mw-reach":  # the expert run reached the bonus branches
        assert R.max() >= 19.99 and ((R > 2) & (R < 19)).any()


@pytest.mark.parametrize("task", TASKS)
def test_rollout_rewards_equal_env_step_rewards(task):
    env, interface, rng = _live(task, seed=8, warmup=2)
    x0 = interface.get_state()
    actions = rng.uniform(-1, 1, (12, 4))
    rewards, observations = [], []
    for a in actions:
        obs, reward, _, _ = env.step(a)
        rewards.append(float(reward))
        observations.append(obs.numpy())
    X, R = interface.rollout(np.stack([x0, x0]), np.stack([actions, actions]))
    assert np.array_equal(R[0], R[1])
    assert np.array_equal(R[0].astype(np.float32), np.array(rewards, dtype=np.float32))  # env sums in float64
    assert np.array_equal(X[0, -1], interface.get_state())
    assert np.array_equal(interface.observations(X[0, 1:]), np.array(observations))


@pytest.mark.parametrize("task", TASKS)
def test_batched_observations_and_features_equal_per_state(task):
    env, interface, rng = _live(task, seed=9, warmup=4)
    x = interface.get_state()
    states = interface.state_add(np.repeat(x[None], 6, axis=0),
                                 rng.standard_normal((6, interface.tangent_dim)) * 1e-2)
    assert np.array_equal(interface.observations(states), np.stack([interface.observation(s) for s in states]))
    batched = interface.features(states)
    interface.vectorized = False
    per_state = interface.features(states)
    assert all(np.array_equal(batched[k], per_state[k]) for k in ("tcp", "obj", "goal"))


def test_batches_mixing_episodes_and_unsupported_tasks_use_the_right_path():
    env, interface, rng = _live("mw-push", seed=10, warmup=2)
    x_old = interface.get_state()
    env.reset()
    x_new = interface.get_state()
    us = rng.uniform(-1, 1, (2, 3, 4))
    X, R = interface.rollout(np.stack([x_old, x_new]), us)
    for i, x in enumerate((x_old, x_new)):  # each with its own episode's goal and object
        Xi, Ri = interface._rollout_per_state(x[None], us[i:i + 1])
        assert np.array_equal(X[i], Xi[0]) and np.allclose(R[i], Ri[0], rtol=1e-9, atol=0)
    other = MetaWorldEnv("mw-door-open", seed=0)
    other_interface = MetaWorldInterface(other)
    other.reset()
    y = other_interface.get_state()
    assert other_interface.batched(y) is None  # no vectorised reward: Meta-World's code per state
    Y, Ry = other_interface.rollout(y[None], us[:1])
    assert np.array_equal(Y[0, 1], other_interface.step(y, us[0, 0]))
    assert Ry[0, 0] == other_interface.reward(y, us[0, 0])


def test_hybrid_training_on_mw_reach_logs_success(tmp_path):
    """The smallest hybrid run on Meta-World: trains, evaluates the hybrid and the learned-only
    planner and logs both success flags."""
    import csv
    import os
    import subprocess
    import sys

    args = ["task=mw-reach", "hybrid_mpc=true", "model_size=1", "steps=30", "seed_steps=20", "eval_freq=30",
            "eval_episodes=1", "episode_length=10", "num_samples=16", "num_elites=4", "num_pi_trajs=2",
            "iterations=1", "batch_size=16", "max_classical_horizon=2", "hybrid_prefix_samples=4",
            "ilqg_iterations=1", "device=cpu", "threads=1", "mujoco_threads=1", f"log_dir={tmp_path}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "tdmpc2.train_hybrid", *args], env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / "mw-reach" / "1" / "default" / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [0, 30]
    for row in rows:
        assert float(row["episode_success"]) in (0.0, 1.0)
        assert float(row["learned_episode_success"]) in (0.0, 1.0)
        assert int(row["classical_horizon"]) >= 1 and int(row["hybrid_enabled"]) == 1
