"""Simulated branches (tdmpc2/branches.py): a branch is what the env itself does under the same
actions, branching leaves the live state alone, batches mix in the requested share with the
right provenance, a run stores and uses them, and bad settings fail naming the key."""
import numpy as np
import pytest
import torch

from tdmpc2.branches import SIMULATED, BranchConfig, BranchStore, MixedBatches, simulate_branch, uniform_actions
from tdmpc2.common.buffer import CLASSICAL, Buffer
from tdmpc2.config import ConfigError, load_config
from tdmpc2.envs import make_env, make_interface
from tdmpc2.hybrid_tdmpc2 import HybridTDMPC2
from tdmpc2.hybrid_trainer import HybridTrainer
from test_teaching import SMALL, labelled_episode, run_trainer


def test_a_branch_is_what_the_env_does_and_leaves_the_live_state_alone():
    cfg = load_config(task="cartpole-swingup", hybrid_mpc=True, **SMALL)
    env = make_env(cfg)
    env.reset(seed=4)
    for _ in range(7):  # somewhere off the initial state
        env.step(env.rand_act())
    interface = make_interface(cfg, env, planning_model="exact")
    state = interface.get_state().copy()
    obs_now = env.step(torch.zeros(1))[0]  # one more live step: the branch starts after it
    state = interface.get_state().copy()
    torch.manual_seed(0)
    actions = uniform_actions(3, *interface.action_bounds())
    assert actions.shape == (3, 1) and actions.abs().max() <= 1 and actions.std() > 0
    branch = simulate_branch(interface, state, actions)
    assert (interface.get_state() == state).all()  # the live env is untouched
    assert torch.allclose(branch["obs"][0], torch.as_tensor(obs_now, dtype=torch.float32), atol=1e-6)
    assert torch.isnan(branch["action"][0]).all() and torch.isnan(branch["reward"][0])
    for t in range(3):  # the env stepped with the same actions gives the same transitions
        obs, reward, _, _ = env.step(actions[t])
        assert torch.allclose(branch["obs"][t + 1], torch.as_tensor(obs, dtype=torch.float32), atol=1e-5)
        assert branch["reward"][t + 1].item() == pytest.approx(float(reward), abs=1e-5)
        assert torch.equal(branch["action"][t + 1], actions[t])
    assert (branch["terminated"][1:] == 0).all()


def _branch(number: float, horizon: int = 3) -> dict:
    """A fake branch whose every observation entry is `number`."""
    nan = torch.tensor([float("nan")])
    return dict(obs=torch.full((horizon + 1, 5), float(number)), action=torch.cat([nan, torch.rand(horizon)])[:, None],
                reward=torch.cat([nan, torch.rand(horizon)]), terminated=torch.cat([nan, torch.zeros(horizon)]))


def test_branch_store_keeps_the_newest_samples_uniformly_and_round_trips():
    store = BranchStore(capacity=10, horizon=3, seed=0)
    for i in range(25):
        store.add(_branch(i))
    assert len(store) == 10 and store.added == 25
    batch = store.sample(4000)
    assert batch.obs.shape == (4, 4000, 5) and batch.action.shape == (3, 4000, 1) and batch.reward.shape == (3, 4000, 1)
    assert torch.isfinite(batch.reward).all() and torch.isfinite(batch.action).all()  # entry 0's NaNs are dropped
    counts = torch.bincount(batch.obs[0, :, 0].long(), minlength=25)
    assert (counts[:15] == 0).all() and (counts[15:] > 300).all()  # the newest 10, ~400 each
    again = BranchStore(capacity=10, horizon=3, seed=99)
    again.load_state_dict(store.state_dict())
    assert again.added == 25 and torch.equal(again.sample(50).obs, store.sample(50).obs)  # same data, same generator
    small = BranchStore(capacity=4, horizon=3)
    small.load_state_dict(store.state_dict())
    assert sorted(small.sample(500).obs[0, :, 0].unique().tolist()) == [21.0, 22.0, 23.0, 24.0]
    with pytest.raises(ValueError, match="horizon\\+1"):
        store.add(_branch(0, horizon=5))


def _marked_buffer(mark: float, episodes: int, length: int, batch_size: int, seed=0):
    buffer = Buffer(10_000, 3, batch_size, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(episodes):
        episode = labelled_episode(length, 5, 1, [CLASSICAL] * (length // 2) + [0] * (length - length // 2), gen)
        episode["obs"][:, 0] = mark
        buffer.add(episode)
    return buffer


def test_mixed_batches_draw_the_share_from_the_branches_with_their_provenance():
    main = _marked_buffer(0.0, episodes=4, length=50, batch_size=200)
    branches = BranchStore(100, 3, seed=1)
    for _ in range(30):
        branches.add(_branch(1.0))
    mixed = MixedBatches(main, branches, 0.25)
    batch, provenance = mixed.sample_labelled(0.5)
    assert batch.obs.shape == (4, 200, 5) and batch.action.shape == (3, 200, 1)
    from_branches = batch.obs[0, :, 0] == 1.0
    assert from_branches.sum() == 50 and from_branches[150:].all()  # round(0.25 * 200), after the replay part
    assert (provenance.source[:, from_branches] == SIMULATED).all()
    assert torch.isnan(provenance.expert_action[:, from_branches]).all()
    # the expert share stays a share of the whole batch: round(0.5 * 200) slices start with an expert action
    assert (provenance.source[0, ~from_branches] == CLASSICAL).sum() >= 100
    empty = MixedBatches(main, BranchStore(100, 3), 0.25)  # no branch yet: the replay buffer alone
    assert empty.num_branch_slices() == 0 and empty.sample().obs.shape == (4, 200, 5)


def test_a_run_with_branches_stores_one_per_step_and_learns_from_them(tmp_path):
    trainer = run_trainer(tmp_path, steps=60, branch_prob=1.0, branch_share=0.25)
    store = trainer.branches.store
    assert store.added == 61 and len(store) == store.capacity == 60  # one per action (steps 0..60); room for `steps`
    assert isinstance(trainer.update_source(), MixedBatches)
    rewards = store.sample(200).reward
    assert torch.isfinite(rewards).all() and rewards.std() > 0
    assert np.isfinite(float(trainer._last_update["consistency_loss"]))
    plain = run_trainer(tmp_path / "plain", steps=20)
    assert plain.branches is None and plain.update_source() is plain.buffer


def test_branch_settings_fail_naming_the_key():
    with pytest.raises(ConfigError, match="branch_prob"):
        load_config(task="cartpole-balance", branch_prob=1.5)
    with pytest.raises(ConfigError, match="branch_share"):
        load_config(task="cartpole-balance", branch_prob=0.5, branch_share=1.0)
    with pytest.raises(ConfigError, match="branch_prob.*episodic"):
        load_config(task="cartpole-balance", branch_prob=0.5, episodic=True)
    cfg = load_config(task="cartpole-balance", branch_prob=0.5, **SMALL)  # hybrid_mpc=false: no simulator
    with pytest.raises(ConfigError, match="branch_prob.*hybrid_mpc=true"):
        HybridTrainer(cfg, make_env(cfg), HybridTDMPC2(cfg), None, None)
    assert not BranchConfig.from_config(load_config(task="cartpole-balance")).active


def test_branches_saved_in_the_first_format_still_load():
    """The first version kept branches in an episode `Buffer`; its resume states load oldest first."""
    old = Buffer(4 * 20, 3, 8)
    for i in range(6):
        old.add(_branch(i))
    store = BranchStore(capacity=4, horizon=3)
    store.load_state_dict(old.state_dict())
    assert store.added == 6 and len(store) == 4
    assert sorted(store.sample(300).obs[0, :, 0].unique().tolist()) == [2.0, 3.0, 4.0, 5.0]


# ---------------------------------------------------------------- elite branches
def test_the_learned_plan_is_tdmpc2s_cold_plan_and_leaves_the_agent_as_it_was():
    from tdmpc2.common.mppi import EliteUpdate

    cfg = load_config(task="cartpole-swingup", **SMALL)
    agent = HybridTDMPC2(cfg)
    obs = torch.randn(cfg.obs_shape["state"][0])
    agent.act(obs, t0=True)  # a warm start and a last plan to keep
    kept = agent._prev_mean.clone(), agent.last_plan, agent.planned_action
    torch.manual_seed(3)
    plan = agent.learned_plan(obs)
    assert isinstance(plan, EliteUpdate) and plan.elite_actions.shape == (cfg.horizon, cfg.num_elites, 1)
    assert torch.equal(agent._prev_mean, kept[0]) and agent.last_plan is kept[1] and agent.planned_action is kept[2]
    torch.manual_seed(3)
    agent.act(obs, t0=True, eval_mode=True)  # TD-MPC2's own plan at t0 with the same draws
    assert torch.equal(agent.last_plan.elite_actions, plan.elite_actions)


def test_drawn_elite_follows_the_planners_weights():
    from tdmpc2.branches import drawn_elite
    from tdmpc2.common.mppi import EliteUpdate

    elites = torch.arange(3 * 4, dtype=torch.float32).reshape(3, 4, 1)
    plan = EliteUpdate(mean=None, std=None, elite_actions=elites, weights=torch.tensor([0.0, 0.0, 1.0, 0.0]),
                       elite_values=None)
    assert torch.equal(drawn_elite(plan), elites[:, 2])
    torch.manual_seed(0)
    plan = plan._replace(weights=torch.tensor([0.7, 0.1, 0.1, 0.1]))
    picks = torch.stack([drawn_elite(plan)[0, 0] for _ in range(2000)])
    assert abs((picks == 0).float().mean().item() - 0.7) < 0.05  # binomial sd ~0.01


def test_elite_branches_simulate_the_proposal_and_are_absent_when_off():
    cfg = load_config(task="cartpole-swingup", hybrid_mpc=True, branch_prob=1.0, branch_elite_prob=1.0, **SMALL)
    env = make_env(cfg)
    env.reset(seed=2)
    from tdmpc2.branches import SimulatedBranches

    branches = SimulatedBranches(BranchConfig.from_config(cfg), make_interface(cfg, env, planning_model="exact"),
                                 cfg.horizon, capacity=10)
    proposal = torch.tensor([[0.5], [-0.25], [1.0]])
    assert branches.maybe_branch(lambda: proposal) == (True, True) and len(branches.store) == 2
    assert torch.equal(branches.store._data["action"][1, 1:], proposal)  # the second branch: the proposal
    assert branches.maybe_branch(None) == (True, False)  # no proposal (before pre-training): uniform only

    def never():
        raise AssertionError("proposed with branch_elite_prob=0")
    off = SimulatedBranches(BranchConfig(branch_prob=1.0), branches.interface, cfg.horizon, capacity=10)
    torch.manual_seed(1)
    assert off.maybe_branch(never) == (True, False)
    after = torch.rand(())
    torch.manual_seed(1)
    off.maybe_branch()
    assert torch.equal(torch.rand(()), after)  # no extra draw: runs without elite branches are unchanged


def test_a_run_with_elite_branches_adds_one_per_step_after_pretraining(tmp_path):
    import pandas as pd

    trainer = run_trainer(tmp_path, steps=40, branch_elite_prob=1.0, branch_share=0.25)
    store = trainer.branches.store
    assert store.added == 40 - trainer.cfg.seed_steps  # one per action once pre-trained (steps 21..40)
    rows = pd.read_csv(tmp_path / "train.csv")
    # train rows count per episode; step 40's branch falls after the last row
    assert rows.elite_branches.sum() == store.added - 1 and (rows.branches == rows.elite_branches).all()
    with pytest.raises(ConfigError, match="branch_elite_prob"):
        load_config(task="cartpole-balance", branch_elite_prob=2.0)
    with pytest.raises(ConfigError, match="branch_elite_prob.*episodic"):
        load_config(task="cartpole-balance", branch_elite_prob=0.5, episodic=True)
