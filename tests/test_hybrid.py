"""Hybrid planning: schedules, H_c = 0 equals TD-MPC2, the nominal is a candidate and never beaten
by the executed plan, batched hybrid values equal a slow sequential reference, the live env is
never touched, and checkpoints carry the schedule state."""
import warnings

import numpy as np
import pytest
import torch

from tdmpc2.config import ConfigError, load_config
from tdmpc2.envs import make_env
from tdmpc2.hybrid_tdmpc2 import HybridTDMPC2
from tdmpc2.schedules import SCHEDULES, classical_horizon
from tdmpc2.tdmpc2 import TDMPC2

SMALL = dict(model_size=1, num_samples=48, num_elites=8, num_pi_trajs=4, iterations=2, device="cpu",
             hybrid_prefix_samples=8, max_classical_horizon=4, ilqg_iterations=3, classical_plan_horizon=8)


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("max_h,min_h,steps", [(10, 0, 1000), (8, 2, 37), (3, 3, 5), (1, 0, 1)])
def test_schedules_integer_monotone_and_reach_min(kind, max_h, min_h, steps):
    values = [classical_horizon(kind, s, max_h, min_h, steps) for s in range(0, 2 * steps + 2)]
    assert all(isinstance(v, int) for v in values)
    assert values[0] == max_h
    assert all(b <= a for a, b in zip(values, values[1:]))
    assert all(min_h <= v <= max_h for v in values)
    if kind == "constant":
        assert set(values) == {max_h}
    else:
        assert all(v == min_h for v in values[steps:])
        assert values[steps - 1] >= min_h


def test_schedule_shapes_differ():
    at_half = {k: classical_horizon(k, 500, 10, 0, 1000) for k in SCHEDULES}
    assert at_half["linear"] == 5 and at_half["step"] == 10 and at_half["exponential"] < 5
    assert at_half["cosine"] == 5 and at_half["constant"] == 10


@pytest.mark.parametrize("overrides,key", [
    (dict(min_classical_horizon=5, max_classical_horizon=2), "min_classical_horizon"),
    (dict(max_classical_horizon=-1), "max_classical_horizon"),
    (dict(transition_schedule="sigmoid"), "transition_schedule"),
    (dict(classical_algorithm="mppi"), "classical_algorithm"),
    (dict(transition_steps=0), "transition_steps"),
    (dict(transition_shedule="linear"), "transition_schedule"),
    (dict(classical_plan_horizon=5, max_classical_horizon=8), "classical_plan_horizon"),
    (dict(bridge_weight=1.5), "bridge_weight"),
    (dict(bridge_weight="sometimes"), "bridge_weight"),
    (dict(adaptive_trust_low=0.9, adaptive_trust_high=0.8), "adaptive_trust_high"),
    (dict(adaptive_smoothing=0), "adaptive_smoothing"),
    (dict(adaptive_trust_low=-0.1), "adaptive_trust_low"),
    (dict(scoring_model="coarse"), "scoring_model"),
])
def test_invalid_hybrid_settings_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key):
        load_config(task="cartpole-balance", hybrid_mpc=True, **overrides)


def _hybrid(task="cartpole-balance", seed=0, **kw):
    cfg = load_config(task=task, hybrid_mpc=True, **{**SMALL, **kw})
    env = make_env(cfg)
    obs = env.reset()
    torch.manual_seed(seed)
    return HybridTDMPC2(cfg, env), env, obs


def test_classical_horizon_zero_gives_exactly_td_mpc2_actions():
    cfg = load_config(task="cheetah-run", **{**SMALL, "hybrid_mpc": True, "max_classical_horizon": 0})
    env = make_env(cfg)
    obs = env.reset()
    torch.manual_seed(3)
    hybrid = HybridTDMPC2(cfg, env)
    torch.manual_seed(3)
    plain = TDMPC2(load_config(task="cheetah-run", **{**SMALL, "max_classical_horizon": 0}))
    assert hybrid.classical_horizon == 0
    torch.manual_seed(4)
    a = torch.stack([hybrid.act(obs, t0=i == 0) for i in range(3)])
    torch.manual_seed(4)
    b = torch.stack([plain.act(obs, t0=i == 0) for i in range(3)])
    assert torch.equal(a, b)


def test_learned_only_context_plans_as_td_mpc2():
    agent, env, obs = _hybrid(seed=1)
    assert agent.classical_horizon == 4
    with agent.learned_only():
        assert agent.classical_horizon == 0
        agent.act(obs, t0=True)
        assert agent.hybrid.last_info is None  # the hybrid planner was not called
    assert agent.classical_horizon == 4


def _capture_iterations(monkeypatch, agent):
    """Record (actions, values) of every MPPI iteration and the solver's results of a hybrid plan."""
    import tdmpc2.hybrid_planner as planner

    seen, results = [], []
    real_update, real_plan = planner.elite_update, agent.hybrid.solver.plan

    def update(actions, values, *args):
        seen.append((actions.clone(), values.clone()))
        return real_update(actions, values, *args)

    def plan(*args, **kwargs):
        results.append(real_plan(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(planner, "elite_update", update)
    monkeypatch.setattr(agent.hybrid.solver, "plan", plan)
    return seen, results


@pytest.mark.parametrize("weight", [1.0, 0.0])
def test_nominal_is_candidate_zero_with_its_own_value_and_never_beaten_by_the_chosen(monkeypatch, weight):
    from tdmpc2.hybrid_bridge import ClassicalContinuation

    agent, env, obs = _hybrid(task="cartpole-swingup", seed=2, bridge_weight=weight)
    seen, results = _capture_iterations(monkeypatch, agent)
    Hc = agent.classical_horizon
    for i in range(2):
        seen.clear()
        results.clear()
        agent.act(obs, t0=i == 0, eval_mode=True)
        info = agent.get_hybrid_info()
        nominal = torch.as_tensor(results[0].actions[:Hc], dtype=torch.float32)
        assert len(seen) == agent.cfg.mppi_iterations
        for actions, values in seen:
            assert torch.equal(actions[:Hc, 0], nominal)  # the solver's prefix is candidate 0 every iteration
        assert info["nominal_value"] == pytest.approx(float(seen[-1][1][0, 0]))
        assert info["chosen_value"] >= info["nominal_value"]
        best = float(seen[-1][1].max())
        margin = agent.hybrid.margin * max(1.0, abs(info["nominal_value"]))
        assert info["chose_nominal"] == (best <= info["nominal_value"] + margin)
    if weight == 1.0:  # deterministic value: the nominal's true return + g^Hc * its bridge
        actions = seen[-1][0][:, :1]
        cont = ClassicalContinuation.from_plan(results[0], Hc)
        again = agent.hybrid.hybrid_values(actions, x0=agent.hybrid.interface.get_state(), horizon=Hc,
                                           weight=1.0, continuation=cont)
        assert float(again[0, 0]) == pytest.approx(float(seen[-1][1][0, 0]), rel=1e-6)


def test_the_nominal_is_executed_when_nothing_beats_it(monkeypatch):
    agent, env, obs = _hybrid(task="cartpole-balance", seed=7, bridge_weight=1.0)
    hm = agent.hybrid
    monkeypatch.setattr(hm, "_hybrid_value", lambda scores, group, tails, Hc, w, timer:
                        torch.where(group.unsqueeze(-1) == 0, 1.0, 0.0))  # only prefix 0 (the nominal's) scores
    seen, results = _capture_iterations(monkeypatch, agent)
    action = agent.act(obs, t0=True, eval_mode=True)
    assert agent.get_hybrid_info()["chose_nominal"]
    assert torch.allclose(action, torch.as_tensor(results[0].actions[0], dtype=torch.float32).clamp(-1, 1))


def test_planner_never_changes_the_live_env_state():
    agent, env, obs = _hybrid(task="cheetah-run", seed=3)
    interface = agent.hybrid.interface
    for _ in range(3):
        obs, *_ = env.step(env.rand_act())
    before = interface.get_state().copy()
    qpos = env.physics.data.qpos.copy()
    agent.act(obs, t0=True)
    assert np.array_equal(interface.get_state(), before)
    assert np.array_equal(env.physics.data.qpos, qpos)


def test_hybrid_value_equals_slow_sequential_reference():
    agent, env, obs = _hybrid(task="cheetah-run", seed=4)
    hm, interface = agent.hybrid, agent.hybrid.interface
    Hc, H, N = 4, agent.horizon, 5
    g = torch.Generator().manual_seed(0)
    actions = torch.rand(Hc + H, N, agent.cfg.action_dim, generator=g) * 2 - 1
    x0 = interface.get_state()
    torch.manual_seed(10)
    fast = hm.hybrid_values(actions, x0=x0, horizon=Hc, weight=0.0)  # w = 0: the value without a bridge
    # slow reference: one candidate at a time, one simulator step at a time
    returns, latents = [], []
    for i in range(N):
        x, total = x0.copy(), 0.0
        for t in range(Hc):
            u = actions[t, i].double().numpy()
            total += agent.discount ** t * interface.reward(x, u)
            x = interface.step(x, u)
        returns.append(total)
        obs_i = torch.as_tensor(interface.observation(x), dtype=torch.float32)
        latents.append(agent.model.encode(obs_i[None])[0])
    torch.manual_seed(10)
    with torch.no_grad():
        tail = agent.estimate_value(torch.stack(latents), actions[Hc:])
    slow = torch.tensor(returns, dtype=torch.float32).unsqueeze(-1) + agent.discount ** Hc * tail
    assert torch.allclose(fast, slow, rtol=1e-5, atol=1e-5)


def test_weight_zero_reproduces_the_value_without_bridge_and_weight_one_uses_only_the_bridge():
    from tdmpc2.hybrid_bridge import ClassicalContinuation, bridge_returns

    agent, env, obs = _hybrid(task="cartpole-swingup", seed=4)
    hm, Hc, H = agent.hybrid, 3, agent.horizon
    g = torch.Generator().manual_seed(1)
    actions = torch.rand(Hc + H, 6, agent.cfg.action_dim, generator=g) * 2 - 1
    x0 = hm.interface.get_state()
    cont = ClassicalContinuation.from_plan(hm.solver.plan(x0, hm.plan_horizon), Hc)
    torch.manual_seed(3)
    v0 = hm.hybrid_values(actions, x0=x0, horizon=Hc, weight=0.0, continuation=cont)
    v1 = hm.hybrid_values(actions, x0=x0, horizon=Hc, weight=1.0, continuation=cont)
    torch.manual_seed(3)
    vh = hm.hybrid_values(actions, x0=x0, horizon=Hc, weight=0.5, continuation=cont)
    assert torch.allclose(vh, 0.5 * (v0 + v1), rtol=1e-5, atol=1e-5)
    # w = 1: prefix return + g^Hc * bridge, no learned part
    states, rewards = hm.scorer.rollout(np.repeat(x0[None], 6, 0), actions[:Hc].transpose(0, 1).double().numpy())
    b, _ = bridge_returns(hm.scorer, states[:, -1], cont, agent.discount)
    expect = rewards @ agent.discount ** np.arange(Hc) + agent.discount ** Hc * b
    assert np.allclose(v1[:, 0].numpy(), expect, rtol=1e-5)


@pytest.mark.parametrize("task", ["cartpole-swingup", "pendulum-swingup"])
@pytest.mark.parametrize("closed_loop", [True, False])
def test_bridge_equals_slow_state_by_state_reference(task, closed_loop):
    from tdmpc2.hybrid_bridge import ClassicalContinuation, bridge_returns, reference_bridge_returns

    agent, env, obs = _hybrid(task=task, seed=5, classical_algorithm="ilqg", classical_plan_horizon=30)  # gains
    hm = agent.hybrid
    for _ in range(5):
        env.step(env.rand_act())
    x0 = hm.interface.get_state()
    result = hm.solver.plan(x0, hm.plan_horizon)
    cont = ClassicalContinuation.from_plan(result, 2)
    assert cont.has_gains and cont.length == hm.plan_horizon - 2
    rng = np.random.default_rng(0)
    starts = hm.scorer.simulate(np.repeat(x0[None], 4, 0), rng.uniform(-1, 1, (4, 2, agent.cfg.action_dim)))[:, -1]
    fast, final = bridge_returns(hm.scorer, starts, cont, agent.discount, closed_loop)
    slow = reference_bridge_returns(hm.scorer, starts, cont, agent.discount, closed_loop)
    assert np.allclose(fast, slow, rtol=1e-9, atol=1e-9)
    assert final.shape == starts.shape and np.ptp(fast) > 0  # different starts, different bridges
    if closed_loop:  # feedback matters: open loop from perturbed starts gives other returns
        open_loop, _ = bridge_returns(hm.scorer, starts, cont, agent.discount, closed_loop=False)
        assert not np.allclose(open_loop, fast)


def test_exact_scoring_gives_the_envs_own_observation_at_the_hand_over():
    agent, env, obs = _hybrid(task="walker-walk", seed=6, max_classical_horizon=3)
    hm = agent.hybrid
    assert hm.interface.planning != "exact" and hm.scorer.planning == "exact"  # coarse solver, exact scoring
    for _ in range(3):
        env.step(env.rand_act())
    x0 = hm.scorer.get_state()
    U = np.random.default_rng(1).uniform(-1, 1, (3, agent.cfg.action_dim)).astype(np.float32).astype(np.float64)
    states, rewards = hm.scorer.rollout(x0[None], U[None])
    predicted = hm.scorer.observations(states[:, -1])[0]
    total = 0.0
    for u in U:
        obs, reward, _, _ = env.step(torch.as_tensor(u, dtype=torch.float32))
        total += float(reward)
    assert np.array_equal(predicted, obs.numpy())
    assert rewards.sum() == pytest.approx(total, rel=1e-6)
    agent.act(obs, t0=True)
    assert agent.get_hybrid_info()["scoring_model"] == "exact"
    assert agent.get_hybrid_info()["solver_model"] == "default"


def test_learned_warm_start_is_fresh_when_the_classical_horizon_reaches_zero():
    agent, env, obs = _hybrid(task="cartpole-balance", seed=8, transition_steps=2, max_classical_horizon=2)
    agent.update_training_step(0)
    agent.act(obs, t0=True)
    hybrid_mean = agent.hybrid._prev_mean.clone()
    assert torch.equal(agent._prev_mean, hybrid_mean[:agent.horizon])
    agent.update_training_step(2)
    assert agent.classical_horizon == 0
    captured = {}
    real = agent.mppi

    def mppi(value_fn, mean, fixed):
        captured["mean"] = mean.clone()
        return real(value_fn, mean, fixed)

    agent.mppi = mppi
    agent.act(obs)  # mid-episode: TD-MPC2 starts from the hybrid plan's mean shifted by one step
    assert torch.equal(captured["mean"][:-1], hybrid_mean[1:agent.horizon])
    assert agent.hybrid._prev_mean is None and agent.hybrid._warm is None  # stale once the learner acted


def test_checkpoint_resumes_the_schedule(tmp_path):
    agent, env, obs = _hybrid(seed=5, transition_steps=100)
    agent.update_training_step(50)
    assert agent.classical_horizon == 2
    path = tmp_path / "hybrid.pt"
    agent.save(str(path))
    other, _, _ = _hybrid(seed=6, transition_steps=100)
    assert other.classical_horizon == 4
    other.load(str(path))
    assert other.training_step == 50 and other.classical_horizon == 2
    assert other.get_hybrid_info()["current_step"] == 50


def test_adaptive_hand_over_follows_the_trust_and_survives_a_checkpoint(tmp_path):
    agent, env, obs = _hybrid(seed=9, transition_schedule="adaptive", bridge_weight="adaptive",
                              max_classical_horizon=4)
    assert agent.classical_horizon == 4 and agent.bridge_weight == 1.0
    agent.observe_evaluation(learned_return=100.0, hybrid_return=900.0, hybrid_horizon=4)  # expert eval
    assert agent.hybrid.trust.expert_return == 900.0 and agent.classical_horizon == 4
    horizons = []
    for _ in range(3):  # the learner catches up: trust rises, H_c and w fall
        expert = agent.hybrid.is_expert()
        agent.observe_evaluation(learned_return=880.0, hybrid_return=900.0 if expert else 700.0,
                                 hybrid_horizon=agent.classical_horizon)
        horizons.append(agent.classical_horizon)
    assert horizons == sorted(horizons, reverse=True) and horizons[-1] < 4
    assert agent.hybrid.trust.expert_return == 900.0  # only evaluations of the expert move the reference
    assert agent.bridge_weight == pytest.approx(1 - agent.hybrid.trust.value) or agent.classical_horizon == 0
    path = tmp_path / "adaptive.pt"
    agent.save(str(path))
    other, _, _ = _hybrid(seed=10, transition_schedule="adaptive", bridge_weight="adaptive", max_classical_horizon=4)
    other.load(str(path))
    assert other.hybrid.trust == agent.hybrid.trust and other.classical_horizon == agent.classical_horizon
    for _ in range(4):  # the learner degrades: the simulator takes over again
        other.observe_evaluation(learned_return=50.0, hybrid_return=0.0, hybrid_horizon=other.classical_horizon)
    assert other.classical_horizon == 4


def test_without_env_warns_and_plans_as_td_mpc2():
    import tdmpc2.hybrid_tdmpc2 as module

    module._WARNED.clear()
    cfg = load_config(task="cartpole-balance", hybrid_mpc=True, **SMALL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        agent = HybridTDMPC2(cfg)
        HybridTDMPC2(cfg)
    messages = [str(w.message) for w in caught if "got no env" in str(w.message)]
    assert len(messages) == 1 and "plain TD-MPC2" in messages[0]
    assert agent.hybrid is None and agent.classical_horizon == 0
    assert not agent.get_hybrid_info()["hybrid_enabled"]
    assert agent.act(torch.zeros(5), t0=True).shape == (1,)


def test_train_hybrid_cli_from_package_dir_logs_both_planners(tmp_path):
    """`python train_hybrid.py ...` run from inside tdmpc2/ (the issue's commands) trains, evaluates
    the hybrid and the learned-only planner, and logs the hybrid metrics."""
    import csv
    import os
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args = ["task=cartpole-balance", "hybrid_mpc=true", "model_size=1", "steps=250", "seed_steps=100",
            "eval_freq=200", "eval_episodes=1", "num_samples=32", "num_elites=4", "num_pi_trajs=4",
            "iterations=2", "batch_size=32", "episode_length=50", "max_classical_horizon=3",
            "transition_steps=250", "hybrid_prefix_samples=4", "ilqg_iterations=2", "classical_plan_horizon=6",
            "device=cpu",
            f"log_dir={tmp_path}"]
    env = {**os.environ, "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "train_hybrid.py", *args], cwd=os.path.join(repo, "tdmpc2"),
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    work = tmp_path / "cartpole-balance" / "1" / "default"
    with open(work / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [0, 200]
    assert {"learned_episode_reward", "prior_episode_reward", "classical_horizon", "env_step"} <= set(rows[0])
    assert [int(r["classical_horizon"]) for r in rows] == [3, 1]  # linear: 3 at 0, round(3 * 50/250) at 200
    with open(work / "train.csv") as f:
        train = list(csv.DictReader(f))
    planned = [r for r in train if r.get("hybrid_plans")]
    assert planned and all(int(r["ilqg_converged"]) + int(r["ilqg_max_iterations"]) + int(r["ilqg_failed"])
                           == int(r["hybrid_plans"]) for r in planned)
    assert float(planned[-1]["planning_sim_steps"]) > 0
    assert not os.path.exists(os.path.join(repo, "tdmpc2", "train_hybrid.log"))


def test_task_without_interface_warns_once_and_plans_as_td_mpc2():
    import tdmpc2.hybrid_tdmpc2 as module

    module._WARNED.clear()
    cfg = load_config(task="cheetah-jump", hybrid_mpc=True, **{**SMALL, "num_elites": 4})
    env = make_env(cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        agent = HybridTDMPC2(cfg, env)
        HybridTDMPC2(cfg, env)
    messages = [str(w.message) for w in caught if "no simulator interface" in str(w.message)]
    assert len(messages) == 1 and "cheetah-jump" in messages[0]
    assert agent.hybrid is None and agent.classical_horizon == 0
    assert agent.act(env.reset(), t0=True).shape == (6,)
