"""Learning from the simulator (tdmpc2/teaching.py): classical seeding acts far better than random
actions and repeats under a seed, the policy-prior evaluation leaves the RNG untouched, and bad
settings fail naming the key."""
import warnings

import pytest
import torch

from tdmpc2.config import ConfigError, load_config
from tdmpc2.envs import make_env
from tdmpc2.hybrid_tdmpc2 import HybridTDMPC2
from tdmpc2.hybrid_trainer import HybridTrainer
from tdmpc2.teaching import PolicyPriorActor

SMALL = dict(model_size=1, num_samples=32, num_elites=4, num_pi_trajs=4, iterations=2, device="cpu",
             hybrid_prefix_samples=4, max_classical_horizon=3, episode_length=100)


def _episode(env, act, seed):
    env.reset(seed=seed)
    total, done, t = 0.0, False, 0
    while not done:
        _, reward, done, _ = env.step(act(t))
        total, t = total + float(reward), t + 1
    return total


def test_classical_seeding_acts_far_better_than_random_and_repeats_under_a_seed():
    cfg = load_config(task="cartpole-balance", hybrid_mpc=True, seed_policy="classical", seed_noise_std=0.3,
                      **{**SMALL, "episode_length": 300})
    env = make_env(cfg)
    agent = HybridTDMPC2(cfg, env)
    trainer = HybridTrainer(cfg, env, agent, buffer=None, logger=None)
    assert trainer.seeder is not None and trainer.seeder.horizon == agent.hybrid.plan_horizon
    torch.manual_seed(0)
    seeded = _episode(env, lambda t: trainer.seeder.act(t0=t == 0), seed=3)
    torch.manual_seed(0)
    again = _episode(env, lambda t: trainer.seeder.act(t0=t == 0), seed=3)
    random = _episode(env, lambda t: env.rand_act(), seed=3)
    assert seeded == again  # the noise comes from torch's RNG: a resumed run repeats it
    assert seeded > 540 and seeded > 2 * random, (seeded, random)  # max 600 in 300 agent steps


def test_seeding_noise_is_applied_and_actions_stay_in_bounds():
    cfg = load_config(task="cartpole-balance", hybrid_mpc=True, seed_policy="classical", seed_noise_std=5.0, **SMALL)
    env = make_env(cfg)
    env.reset(seed=1)
    seeder = HybridTrainer(cfg, env, HybridTDMPC2(cfg, env), None, None).seeder
    actions = torch.stack([seeder.act(t0=i == 0) for i in range(5)])
    assert actions.abs().max() <= 1 and (actions.abs() == 1).any()  # large noise saturates, clipped


def test_policy_prior_actor_is_the_prior_mean_and_leaves_the_rng_alone():
    cfg = load_config(task="cartpole-balance", **SMALL)
    agent = HybridTDMPC2(cfg)
    obs = torch.randn(5)
    state = torch.get_rng_state()
    action = PolicyPriorActor(agent).act(obs)
    assert torch.equal(torch.get_rng_state(), state)
    with torch.no_grad():
        mean = agent.model.pi(agent.model.encode(obs[None])).mean[0]
    assert torch.allclose(action, mean)


def test_bad_teaching_settings_name_the_key():
    with pytest.raises(ConfigError, match="seed_policy"):
        load_config(task="cartpole-balance", seed_policy="expert")
    with pytest.raises(ConfigError, match="seed_noise_std"):
        load_config(task="cartpole-balance", seed_noise_std=-0.1)
    cfg = load_config(task="cheetah-jump", hybrid_mpc=True, seed_policy="classical", **{**SMALL, "episode_length": None})
    env = make_env(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the no-interface warning (warned once per process)
        agent = HybridTDMPC2(cfg, env)
    with pytest.raises(ConfigError, match="seed_policy.*cheetah-jump"):
        HybridTrainer(cfg, env, agent, None, None)
