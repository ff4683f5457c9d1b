"""The gate between the learned planner and the policy prior (tdmpc2/gate.py): the rule, the
agent's eval-mode acts under it, its evaluation columns, and that it changes no training."""
import math

import pandas as pd
import pytest
import torch

from tdmpc2.config import ConfigError, load_config
from tdmpc2.gate import PlannerGate, gated_returns, prefers_prior
from tdmpc2.hybrid_tdmpc2 import HybridTDMPC2

from test_teaching import SMALL, run_trainer


def test_the_rule_needs_the_prior_ahead_by_more_than_the_margin_and_finite_returns():
    assert prefers_prior(100.0, 101.0) and not prefers_prior(100.0, 100.0)
    assert not prefers_prior(100.0, 150.0, margin=50.0) and prefers_prior(100.0, 150.5, margin=50.0)
    assert not prefers_prior(float("nan"), 900.0) and not prefers_prior(10.0, float("nan"))


def test_gated_returns_take_the_half_the_previous_evaluation_preferred():
    planner = [10.0, 20.0, 300.0, 40.0, 50.0]
    prior = [15.0, 5.0, 100.0, 400.0, 60.0]
    # 0: no evaluation before it (planner); 1: prior led at 0; 2: planner led at 1; 3: planner led at 2;
    # 4: prior led at 3
    assert gated_returns(planner, prior).tolist() == [10.0, 5.0, 300.0, 40.0, 60.0]
    assert gated_returns(planner, prior, margin=100.0).tolist() == [10.0, 20.0, 300.0, 40.0, 60.0]
    with pytest.raises(ValueError, match="equal 1-D"):
        gated_returns([1.0, 2.0], [1.0])


def test_gate_state_moves_only_through_observe_and_survives_the_agent_checkpoint():
    gate = PlannerGate()
    moved = gate.observe(100.0, 300.0)
    assert not gate.use_prior and gate.evaluations == 0  # observe returns a new gate
    assert moved.use_prior and moved.source == "prior" and moved.evaluations == 1
    assert PlannerGate.from_state(moved.state_dict()) == moved
    cfg = load_config(task="cartpole-balance", learned_gate="prior", **SMALL)
    agent = HybridTDMPC2(cfg)
    agent.observe_gate(100.0, 300.0)
    other = HybridTDMPC2(cfg)
    other.load_state_dict(agent.state_dict())
    assert other.gate == agent.gate and other.gate.use_prior


def _plans(agent, monkeypatch):
    """Replace planning with a marker action, so an act shows whether it planned."""
    marker = torch.full((agent.cfg.action_dim,), 0.123)
    monkeypatch.setattr(agent, "plan", lambda obs, t0=False, eval_mode=False: marker.clone())
    return marker


def test_eval_acts_are_the_prior_mean_only_while_the_gate_prefers_it(monkeypatch):
    cfg = load_config(task="cartpole-balance", learned_gate="prior", **SMALL)
    agent = HybridTDMPC2(cfg)
    marker = _plans(agent, monkeypatch)
    obs = torch.randn(cfg.obs_shape["state"][0])
    with torch.no_grad():
        mean = agent.model.pi(agent.model.encode(obs[None])).mean[0]
    assert torch.equal(agent.act(obs, eval_mode=True), marker)  # a fresh gate plans
    agent.observe_gate(planner_return=10.0, prior_return=500.0)
    assert torch.allclose(agent.act(obs, eval_mode=True), mean)
    assert torch.equal(agent.act(obs, eval_mode=False), marker)  # training acts always plan
    with agent.gate_suspended():
        assert torch.equal(agent.act(obs, eval_mode=True), marker)
    agent.observe_gate(planner_return=500.0, prior_return=10.0)
    assert torch.equal(agent.act(obs, eval_mode=True), marker)


def test_the_gate_leaves_the_hybrid_planner_alone_while_it_plans_on_the_simulator():
    from tdmpc2.envs import make_env

    cfg = load_config(task="cartpole-balance", hybrid_mpc=True, learned_gate="prior", **SMALL)
    agent = HybridTDMPC2(cfg, make_env(cfg))
    agent.observe_gate(planner_return=10.0, prior_return=500.0)
    agent.update_training_step(0)
    assert agent.classical_horizon > 0 and not agent.acts_with_prior
    with agent.learned_only():
        assert agent.acts_with_prior


def test_evaluations_log_the_gated_agent_and_training_is_the_same_as_without_the_gate(tmp_path):
    """With learned_gate=prior every evaluation repeats the half the previous one preferred, and
    the run's training rows, planner and prior scores are those of the same run without it."""
    settings = dict(hybrid_mpc=False, eval_freq=10, steps=50, seed_steps=10, batch_size=16)
    run_trainer(tmp_path / "off", **settings)
    run_trainer(tmp_path / "on", learned_gate="prior", **settings)
    off, on = pd.read_csv(tmp_path / "off" / "eval.csv"), pd.read_csv(tmp_path / "on" / "eval.csv")
    assert "gated_episode_reward" not in off and len(on) >= 3
    for column in ("episode_reward", "learned_episode_reward", "prior_episode_reward"):
        assert on[column].tolist() == off[column].tolist(), column
    train_off, train_on = pd.read_csv(tmp_path / "off" / "train.csv"), pd.read_csv(tmp_path / "on" / "train.csv")
    assert train_on.episode_reward.tolist() == train_off.episode_reward.tolist()
    expected = gated_returns(on.learned_episode_reward, on.prior_episode_reward)
    assert on.gated_episode_reward.tolist() == expected.tolist()
    sources = [0] + [int(prefers_prior(a, b)) for a, b in zip(on.learned_episode_reward, on.prior_episode_reward)][:-1]
    assert on.gated_source.tolist() == sources


def test_bad_gate_settings_name_the_key():
    with pytest.raises(ConfigError, match="learned_gate"):
        load_config(task="cartpole-balance", learned_gate="always")
    with pytest.raises(ConfigError, match="learned_gate_margin"):
        load_config(task="cartpole-balance", learned_gate_margin=-1)
    assert math.isfinite(load_config(task="cartpole-balance").learned_gate_margin)


def test_the_study_summary_recomputes_the_gated_curve_from_logged_halves():
    """benchmarks/teaching.py: runs without the gate get its curve from their planner and prior
    columns (the gate changes no training); a logged gated column is kept as it is."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "teaching.py")
    spec = importlib.util.spec_from_file_location("teaching_study_gate", path)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    frame = pd.DataFrame(dict(step=[2000, 0, 1000, 1000], learned_episode_reward=[7.0, 1.0, 99.0, 2.0],
                              prior_episode_reward=[8.0, 5.0, 99.0, 1.0]))  # unordered; step 1000 logged twice
    gated = study.with_gated(frame)
    assert gated.step.tolist() == [0, 1000, 2000] and gated.gated_episode_reward.tolist() == [1.0, 1.0, 7.0]
    logged = frame.assign(gated_episode_reward=-1.0)
    assert study.with_gated(logged) is logged and study.with_gated(None) is None


def test_evaluate_scores_the_gated_agent_next_to_the_learned_only_planner():
    from tdmpc2.envs import make_env
    from tdmpc2.evaluate import planners

    cfg = load_config(task="cartpole-balance", hybrid_mpc=True, learned_gate="prior", **SMALL)
    agent = HybridTDMPC2(cfg, make_env(cfg))
    agent.observe_gate(planner_return=10.0, prior_return=500.0)
    contexts = planners(agent)
    assert list(contexts) == ["hybrid", "learned_only", "gated"]
    acts = {}
    for name, context in contexts.items():
        with context:
            acts[name] = agent.acts_with_prior
    assert acts == dict(hybrid=False, learned_only=False, gated=True) and not agent.acts_with_prior
    plain = HybridTDMPC2(load_config(task="cartpole-balance", learned_gate="prior", **SMALL))
    plain.observe_gate(planner_return=10.0, prior_return=500.0)
    assert list(planners(plain)) == ["tdmpc2", "gated"]
    with planners(plain)["tdmpc2"]:
        assert not plain.acts_with_prior
