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
             hybrid_prefix_samples=8, max_classical_horizon=4, ilqg_iterations=3)


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


def test_nominal_is_a_candidate_and_chosen_value_is_at_least_its_value():
    agent, env, obs = _hybrid(task="cheetah-run", seed=2)
    for i in range(3):
        agent.act(obs, t0=i == 0, eval_mode=i == 2)
        info = agent.get_hybrid_info()
        assert info["chosen_value"] >= info["nominal_value"]
        assert info["last_classical_horizon"] == 4
        assert info["ilqg_status"] in ("converged", "max_iterations", "failed")
        assert info["sim_steps"] > 0 and info["ilqg_time"] >= 0


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
    fast = hm.hybrid_values(actions, x0=x0, horizon=Hc)
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


def test_without_env_warns_and_plans_as_td_mpc2():
    cfg = load_config(task="cartpole-balance", hybrid_mpc=True, **SMALL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        agent = HybridTDMPC2(cfg)
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
            "transition_steps=250", "hybrid_prefix_samples=4", "ilqg_iterations=2", "device=cpu",
            f"log_dir={tmp_path}"]
    env = {**os.environ, "PYTHONPATH": ""}
    result = subprocess.run([sys.executable, "train_hybrid.py", *args], cwd=os.path.join(repo, "tdmpc2"),
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    work = tmp_path / "cartpole-balance" / "1" / "default"
    with open(work / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [0, 200]
    assert {"learned_episode_reward", "classical_horizon", "env_step"} <= set(rows[0])
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
