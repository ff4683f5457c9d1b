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
    # walker: 2 substeps of 12.5 ms with softened contacts instead of 10 of 2.5 ms (fish, the
    # contact-free example, plans on the exact model: its 2-substep model diverged)
    env, exact = build("walker-walk", warmup=0)
    _, coarse = build("walker-walk", planning_model="default", warmup=0)
    assert coarse.steps_per_action < exact.steps_per_action
    x, nv = exact.get_state(), exact.nv
    errors, baselines = [], []
    for seed in range(3):  # after 0.1 s: the same motion up to softer contacts
        u = random_actions(2, 6, seed=seed).reshape(1, 2, 6)
        other = random_actions(2, 6, seed=seed + 10).reshape(1, 2, 6)
        target = exact.simulate(x[None], u)[0, -1]
        motion = np.linalg.norm(exact.state_difference(target, x)[:nv])
        errors.append(np.linalg.norm(exact.state_difference(coarse.simulate(x[None], u)[0, -1], target)[:nv]) / motion)
        baselines.append(np.linalg.norm(exact.state_difference(exact.simulate(x[None], other)[0, -1], target)[:nv]) / motion)
    assert 0 < np.median(errors) < 0.2 and max(errors) < 0.5  # relative position error of the coarse model
    assert all(e < b for e, b in zip(errors, baselines))  # closer than the exact model with other actions


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


# ---- batched rewards (tdmpc2/envs/dmc_rewards.py) against dm_control's own get_reward
VECTORISED = ["cheetah-run", "walker-stand", "walker-walk", "walker-run", "cartpole-balance",
              "cartpole-balance-sparse", "cartpole-swingup", "cartpole-swingup-sparse", "pendulum-swingup",
              "hopper-stand", "hopper-hop", "reacher-easy", "reacher-hard", "finger-spin", "finger-turn-easy",
              "finger-turn-hard", "cup-catch", "fish-swim", "acrobot-swingup"]


def _positions(iface, states, kind, name):
    """World position of a site / geom / body at each state (mj_kinematics on the env's model)."""
    field = {"site": "site_xpos", "geom": "geom_xpos", "body": "xpos"}[kind]
    index = getattr(iface.model, kind)(name).id
    return iface.kinematics(states, lambda d: getattr(d, field)[index])


def _near_goal(task, iface, states, rng):
    """States whose sparse reward is likely 1 (random states almost never hit small targets)."""
    x = states.copy()
    if task.startswith("cup"):  # ball moved next to the target inside the cup
        d = _positions(iface, x, "site", "target") - _positions(iface, x, "body", "ball")
        for axis, joint in ((0, "ball_x"), (2, "ball_z")):
            adr = iface.qpos_slice.start + iface.model.joint(joint).qposadr[0]
            x[:, adr] += d[:, axis] + rng.normal(0, 0.02, len(x))
        return x
    if task.startswith("reacher"):  # of many random arm poses, those closest to the target
        x = x[rng.integers(len(x), size=3000)]
        x[:, iface.qpos_slice] = rng.uniform(-np.pi, np.pi, (len(x), iface.nq))
        d = _positions(iface, x, "geom", "target") - _positions(iface, x, "geom", "finger")
        d = np.linalg.norm(d[:, :2], axis=1)
        return x[np.argsort(d)[:40]]
    return x[:0]


def random_states(task, env, iface, rng, reach=40, perturbed=120):
    """States visited by random-action rollouts from two resets, plus random perturbations of them
    (qpos near them or around qpos0 at random scales, qvel at scales 0.1 .. 30, random ctrl)."""
    visited = []
    for _ in range(2):
        env.reset()
        for _ in range(reach // 2):
            visited.append(iface.get_state())
            env.step(torch.as_tensor(rng.uniform(-1, 1, iface.action_dim), dtype=torch.float32))
    visited = np.array(visited)
    m, x = iface.model, visited[rng.integers(len(visited), size=perturbed)].copy()
    q, v, third = x[:, iface.qpos_slice], x[:, iface.qvel_slice], perturbed // 3
    q[:third] += rng.normal(0, 0.1, q[:third].shape)
    q[third:] = m.qpos0 + rng.normal(0, 1, q[third:].shape) * rng.uniform(0, 1, (perturbed - third, 1))
    v[:] = rng.normal(0, 1, v.shape) * rng.choice([0.1, 1, 10, 30], size=(perturbed, 1))
    for j in np.flatnonzero(m.jnt_type == 0):  # free joints: unit quaternions
        a = m.jnt_qposadr[j] + 3
        q[:, a:a + 4] /= np.linalg.norm(q[:, a:a + 4], axis=1, keepdims=True)
    x[:, iface.qpos_slice], x[:, iface.qvel_slice] = q, v
    x[:, iface._ctrl] = iface.to_native(rng.uniform(-1.2, 1.2, (perturbed, iface.action_dim)))
    states = np.concatenate([visited, x])
    return np.concatenate([states, _near_goal(task, iface, states, rng)])


@pytest.mark.parametrize("task", VECTORISED)
def test_batched_task_rewards_equal_get_reward_on_random_states(task):
    env, iface = build(task, planning_model="default", warmup=0)
    assert iface.vectorized_rewards
    states = random_states(task, env, iface, np.random.default_rng(0))
    reference = iface.reference_task_rewards(states)  # dm_control's get_reward, state by state
    np.testing.assert_allclose(iface.task_rewards(states), reference, rtol=1e-9, atol=1e-12)
    assert len(np.unique(reference)) > 1  # both reward levels (or many values) were visited
    # rollout rewards (sensors read one physics step late, trailing step) = per-state path on its states
    actions = np.random.default_rng(1).uniform(-1, 1, (len(states), 3, iface.action_dim))
    traj, rewards = iface.rollout(states, actions)
    iface._reward = None  # the original implementation: per-control-step states, get_reward each
    traj_ref, rewards_ref = iface.rollout(states, actions)
    np.testing.assert_array_equal(traj, traj_ref)
    np.testing.assert_allclose(rewards, rewards_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("task", VECTORISED)
def test_rollout_rewards_equal_stepping_the_env(task):
    env, iface = build(task, seed=3, warmup=10)  # exact model: the env's physics
    x0 = iface.get_state()
    actions = random_actions(8, iface.action_dim, seed=5)
    rewards, states = [], []
    for a in actions:  # dm_control's own step and get_reward, summed over the action repeat
        rewards.append(sum(env.dmc.step(env.to_native(a)).reward for _ in range(env.action_repeat)))
        states.append(iface.get_state())
    traj, batched = iface.rollout(np.repeat(x0[None], 2, 0), np.stack([actions, actions]))
    np.testing.assert_allclose(batched[0], rewards, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(batched[0], batched[1])
    for sl in (iface.qpos_slice, iface.qvel_slice):  # extra sensors leave the physics bit-identical
        np.testing.assert_array_equal(traj[0, 1:, sl], np.array(states)[:, sl])
    assert iface.reward(x0, actions[0]) == pytest.approx(rewards[0], rel=1e-9, abs=1e-12)


def test_unmatched_tasks_keep_the_exact_per_state_rewards():
    env = make_env(load_config(task="walker-walk-backwards", seed=1))  # custom task class: no batched formula
    env.reset()
    iface = DMControlInterface(env, cost=False, threads=1)
    assert not iface.vectorized_rewards
    x = iface.get_state()
    u = random_actions(4, iface.action_dim).reshape(1, 4, -1)
    _, r = iface.rollout(x[None], u)
    assert r.shape == (1, 4) and np.all(np.isfinite(r))
    off = DMControlInterface(build("walker-walk")[0], cost=False, vectorized_rewards=False)
    assert not off.vectorized_rewards


def test_tolerance_matches_dm_control():
    from dm_control.utils import rewards as dm_rewards

    from tdmpc2.envs.dmc_rewards import tolerance
    x = np.random.default_rng(0).normal(0, 3, 400)
    for sigmoid in ("gaussian", "hyperbolic", "long_tail", "reciprocal", "cosine", "linear", "quadratic",
                    "tanh_squared"):
        for bounds, margin in (((0, 0), 1.0), ((-1, 2), 0.5), ((1, float("inf")), 2.0), ((-1, 1), 0.0)):
            vam = 0.0 if sigmoid in ("linear", "quadratic", "cosine") and margin == 2.0 else 0.3
            np.testing.assert_array_equal(
                tolerance(x, bounds, margin, sigmoid, vam),
                dm_rewards.tolerance(x, bounds=bounds, margin=margin, sigmoid=sigmoid, value_at_margin=vam))


@pytest.mark.parametrize("task", ["reacher-hard", "fish-swim", "finger-spin"])
def test_targets_moved_by_a_new_episode_reach_the_batched_rewards(task):
    env, iface = build(task, seed=4, warmup=0)  # the interface outlives episodes
    for episode in range(2):
        env.reset()
        x0 = iface.get_state()  # syncs what the task changed in the model (targets, damping)
        actions = random_actions(5, iface.action_dim, seed=episode)
        rewards = [sum(env.dmc.step(env.to_native(a)).reward for _ in range(env.action_repeat)) for a in actions]
        traj, batched = iface.rollout(x0[None], actions[None])
        np.testing.assert_allclose(batched[0], rewards, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(traj[0, -1, iface.qpos_slice], iface.get_state()[iface.qpos_slice])


def test_planning_model_default_follows_the_per_task_table(monkeypatch):
    import dataclasses

    import tdmpc2.envs.dmcontrol_interface as module
    env = build("walker-walk", warmup=0)[0]
    assert DMControlInterface(env, threads=1).planning == "default"  # walker: 2 soft substeps
    exact_row = dataclasses.replace(module.classical_defaults("walker-walk"), planning_model="exact")
    monkeypatch.setattr(module, "classical_defaults", lambda task: exact_row)
    iface = DMControlInterface(env, threads=1)
    assert iface.planning == "exact" and iface.steps_per_action == env.action_repeat * iface.n_sub
