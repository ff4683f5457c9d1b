"""Custom DMControl tasks (spec 8.4) and the Meta-World wrapper's protocol (spec 8.3)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tdmpc2.envs.dmcontrol import DMControlEnv
from tdmpc2.envs.tasks import UnknownTaskError, task_info

CUSTOM = ("walker-walk-backwards", "walker-run-backwards", "cheetah-run-backwards", "cheetah-run-front",
          "cheetah-run-back", "cheetah-jump", "hopper-hop-backwards", "reacher-three-easy",
          "reacher-three-hard", "cup-spin", "pendulum-spin")


def _episode(env, steps, seed=0):
    rng = np.random.default_rng(seed)
    obs = [env.reset()]
    rewards = []
    for _ in range(steps):
        o, r, done, info = env.step(torch.as_tensor(rng.uniform(-1, 1, env.action_space.shape), dtype=torch.float32))
        obs.append(o)
        rewards.append(float(r))
    return torch.stack(obs), np.array(rewards), done, info


@pytest.mark.parametrize("task", CUSTOM)
def test_custom_task_sizes_rewards_and_seeding(task):
    info = task_info(task)
    env = DMControlEnv(task, seed=3)
    assert env.observation_space.shape == (info.obs_dim,)
    assert env.action_space.shape == (info.action_dim,)
    assert env.max_episode_steps == 500
    obs, rewards, _, step_info = _episode(env, 20)
    assert obs.shape == (21, info.obs_dim) and obs.dtype == torch.float32
    assert np.all(rewards >= 0.0) and np.all(rewards <= 2.0)  # each sub-step reward in [0, 1]
    assert step_info["success"] == 0.0 and float(step_info["terminated"]) == 0.0
    again, rewards_again, _, _ = _episode(DMControlEnv(task, seed=3), 20)
    assert torch.equal(obs, again) and np.array_equal(rewards, rewards_again)
    other, _, _, _ = _episode(DMControlEnv(task, seed=4), 20)
    assert not torch.equal(obs, other)


def test_custom_task_runs_a_full_episode_of_1000_control_steps():
    env = DMControlEnv("pendulum-spin", seed=0)
    env.reset()
    done, steps = False, 0
    while not done:
        _, _, done, _ = env.step(env.rand_act())
        steps += 1
    assert steps == 500 and env.physics.data.time == pytest.approx(20.0)


def test_backwards_tasks_reward_backwards_motion():
    """Drive the models directly: moving backwards earns reward, moving forwards does not."""
    from tdmpc2.envs.dmc_custom import load

    for domain, task, joint, speed in (("cheetah", "run_backwards", "rootx", -9.0),
                                      ("walker", "walk_backwards", "rootx", -1.5)):
        env = load(domain, task, 0)
        env.reset()
        physics = env.physics
        rewards = {}
        for sign in (1.0, -1.0):
            with physics.reset_context():
                physics.named.data.qvel[joint] = sign * speed
            rewards[sign] = env.task.get_reward(physics)
        assert rewards[1.0] > rewards[-1.0]


def test_pendulum_spin_reward_follows_angular_speed():
    from tdmpc2.envs.dmc_custom import load

    env = load("pendulum", "spin", 0)
    env.reset()
    physics = env.physics
    values = []
    for omega in (0.0, 4.5, 9.0, -12.0):
        with physics.reset_context():
            physics.named.data.qvel["hinge"] = omega
        values.append(env.task.get_reward(physics))
    assert values[0] == pytest.approx(0.0) and values[1] == pytest.approx(0.5)
    assert values[2] == pytest.approx(1.0) and values[3] == pytest.approx(1.0)


def test_reacher_three_model_and_reward():
    from tdmpc2.envs.dmc_custom import load

    env = load("reacher", "three_hard", 0)
    env.reset()
    physics = env.physics
    assert physics.model.nu == 3 and physics.model.nq == 3
    assert physics.named.model.geom_size["target", 0] == pytest.approx(0.015)
    target = physics.named.data.geom_xpos["target", :2].copy()
    assert 0.05 <= np.linalg.norm(target) <= 0.2 + 1e-9
    physics.named.model.geom_pos["target", :2] = physics.named.data.geom_xpos["finger", :2]
    physics.forward()
    assert env.task.get_reward(physics) == pytest.approx(1.0)


def test_cup_spin_starts_mostly_with_ball_in_cup_and_pays_nothing_there():
    from tdmpc2.envs.dmc_custom import load

    env = load("ball_in_cup", "spin", 0)
    inside = []
    for _ in range(20):
        env.reset()
        inside.append(env.physics.in_target())
        if inside[-1]:
            assert env.task.get_reward(env.physics) == 0.0
    assert sum(inside) >= 12  # about 90 % start in the cup (the rest anywhere collision-free)


def test_custom_tasks_are_registered_in_dm_control_suite():
    from dm_control import suite

    from tdmpc2.envs import dmc_custom

    dmc_custom.register()
    dmc_custom.register()  # idempotent
    env = suite.load("walker", "walk_backwards", task_kwargs={"random": 0})
    assert env.physics.named.model.geom_size["floor", 0] >= 400  # enlarged ground plane


@pytest.mark.parametrize("bad, hint", [("walker-walk-backward", "walker-walk-backwards"),
                                       ("reacher-three-eazy", "reacher-three-easy"),
                                       ("mw-pick-plac", "mw-pick-place")])
def test_unknown_task_messages_name_close_matches(bad, hint):
    from tdmpc2.envs.dmcontrol import load_suite_env
    from tdmpc2.envs.metaworld import metaworld_env_id

    with pytest.raises(UnknownTaskError) as err:
        task_info(bad)
    assert hint in str(err.value) and bad in str(err.value)
    builder = metaworld_env_id if bad.startswith("mw-") else (lambda name: load_suite_env(name, 0))
    with pytest.raises(UnknownTaskError) as err:
        builder(bad)
    assert hint in str(err.value)


# ---- Meta-World (spec 8.3)
metaworld = pytest.importorskip("metaworld")


def test_metaworld_protocol():
    from tdmpc2.envs.metaworld import MetaWorldEnv

    env = MetaWorldEnv("mw-push", seed=5)
    assert env.observation_space.shape == (39,) and env.action_space.shape == (4,)
    assert env.max_episode_steps == 100 and env.action_repeat == 2
    obs = env.reset()
    assert obs.shape == (39,) and obs.dtype == torch.float32
    assert env.mw.curr_path_length == 1  # the extra zero-action step after reset
    goals = {tuple(obs[-3:].tolist())}
    done, steps = False, 0
    while not done:
        obs, reward, done, info = env.step(env.rand_act())
        steps += 1
        assert reward.dtype == torch.float32 and 0.0 <= float(reward) <= 20.0
        assert set(info) == {"terminated", "success"} and isinstance(info["success"], float)
    assert steps == 100 and env.mw.curr_path_length == 1 + 200
    for _ in range(2):  # object and goal re-randomised at every reset
        goals.add(tuple(env.reset()[-3:].tolist()))
    assert len(goals) == 3


def test_metaworld_action_repeat_sums_rewards():
    from tdmpc2.envs.metaworld import MetaWorldEnv, make_metaworld

    env = MetaWorldEnv("mw-reach", seed=2)
    env.reset()
    raw = make_metaworld("mw-reach", 2)
    raw.reset()
    raw.step(np.zeros(4))
    action = np.array([0.5, -0.2, 0.3, 0.1])
    expected = sum(float(raw.step(action)[1]) for _ in range(2))
    _, reward, _, _ = env.step(torch.as_tensor(action, dtype=torch.float32).double())
    assert float(reward) == pytest.approx(expected, rel=1e-6)


def test_metaworld_seeded_episodes_reproduce():
    from tdmpc2.envs.metaworld import MetaWorldEnv

    def run(seed):
        env = MetaWorldEnv("mw-pick-place", seed=seed)
        out = []
        for _ in range(2):
            out.append(env.reset())
            for t in range(5):
                out.append(env.step(torch.full((4,), 0.3 * (-1) ** t))[0])
        return torch.stack(out)

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


def test_metaworld_success_flag_at_final_step():
    from tdmpc2.envs.metaworld import MetaWorldEnv

    env = MetaWorldEnv("mw-reach", seed=0, episode_length=3)
    env.reset()
    flags = [env.step(torch.zeros(4))[3]["success"] for _ in range(3)]
    assert all(f in (0.0, 1.0) for f in flags)
    assert env.mw.evaluate_state(env.last_inner_obs, np.zeros(4))[1]["success"] == flags[-1]


def test_metaworld_seeded_reset_and_rng_state_round_trip():
    from tdmpc2.config import load_config
    from tdmpc2.envs import make_env

    env = make_env(load_config(task="mw-reach"))
    state = env.get_rng_state()
    a, b = env.reset(seed=5), env.reset(seed=5)
    assert torch.equal(a, b)
    assert not torch.equal(env.reset(seed=6), a)  # another seed, another goal
    env.set_rng_state(state)
    first = env.reset()
    fresh = make_env(load_config(task="mw-reach"))
    assert torch.equal(fresh.reset(), first)
