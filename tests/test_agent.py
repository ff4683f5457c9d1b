"""TD-MPC2 agent behaviour: learning step, determinism, checkpoints, planning semantics."""
import pytest
import torch

from tdmpc2.common.device import matmul_precision
from tdmpc2.config import load_config
from tdmpc2.tdmpc2 import CheckpointError, TDMPC2

SMALL = dict(model_size=1, num_samples=64, num_elites=8, num_pi_trajs=4, iterations=2, batch_size=16)


def _agent(seed=0, **kw):
    torch.manual_seed(seed)
    return TDMPC2(load_config(task="cheetah-run", device="cpu", **{**SMALL, **kw}))


def _batch(agent, seed=0):
    g = torch.Generator().manual_seed(seed)
    H, B = agent.cfg.horizon, agent.cfg.batch_size
    obs = torch.randn(H + 1, B, 17, generator=g)
    action = torch.rand(H, B, 6, generator=g) * 2 - 1
    reward = torch.rand(H, B, 1, generator=g) * 2
    return obs, action, reward, torch.zeros(H, B, 1)


def test_updates_on_a_fixed_batch_lower_the_loss():
    agent = _agent()
    batch = _batch(agent)
    first = agent.update_on_batch(*batch)["total_loss"].item()
    for _ in range(30):
        last = agent.update_on_batch(*batch)["total_loss"].item()
    assert last < 0.7 * first


def test_update_moves_target_q_by_polyak_step():
    agent = _agent()
    before = [p.clone() for p in agent.model._target_Qs.parameters()]
    agent.update_on_batch(*_batch(agent))
    after = list(agent.model._target_Qs.parameters())
    online = list(agent.model._Qs.parameters())
    tau = agent.cfg.tau
    for b, a, o in zip(before, after, online):
        assert torch.allclose(a, b + tau * (o - b), atol=1e-6)
    assert not agent.model.training


def test_same_seed_gives_identical_actions():
    obs = torch.randn(17)
    runs = []
    for _ in range(2):
        agent = _agent(seed=7)
        torch.manual_seed(11)
        runs.append(torch.stack([agent.act(obs, t0=(i == 0)) for i in range(3)]))
    assert torch.equal(runs[0], runs[1])


def test_actions_are_in_bounds_and_warm_start_shifts():
    agent = _agent()
    obs = torch.randn(17)
    a = agent.act(obs, t0=True)
    assert a.shape == (6,) and a.abs().max() <= 1
    mean_after_first = agent._prev_mean.clone()
    agent.act(obs, t0=False, eval_mode=True)
    assert not torch.equal(mean_after_first, agent._prev_mean)


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    agent = _agent(seed=1)
    agent.update_on_batch(*_batch(agent))
    path = tmp_path / "agent.pt"
    agent.save(str(path))
    other = _agent(seed=2)
    other.load(str(path))
    obs = torch.randn(17)
    torch.manual_seed(5)
    a1 = agent.act(obs, eval_mode=True)
    torch.manual_seed(5)
    a2 = other.act(obs, eval_mode=True)
    assert torch.equal(a1, a2)
    assert torch.equal(agent.scale.value, other.scale.value)
    # optimiser state came along: the next update is identical too
    torch.manual_seed(9)
    l1 = agent.update_on_batch(*_batch(agent, 1))["total_loss"]
    torch.manual_seed(9)
    l2 = other.update_on_batch(*_batch(other, 1))["total_loss"]
    assert torch.equal(l1, l2)


def test_checkpoint_of_another_architecture_fails_with_one_sentence(tmp_path):
    path = tmp_path / "size1.pt"
    _agent().save(str(path))
    big = TDMPC2(load_config(task="cheetah-run", model_size=5, device="cpu"))
    with pytest.raises(CheckpointError, match="different architecture"):
        big.load(str(path))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        big.load(str(corrupt))
    with pytest.raises(CheckpointError, match="does not exist"):
        big.load(str(tmp_path / "missing.pt"))


def test_policy_prior_acting_without_mpc():
    agent = _agent(mpc=False)
    obs = torch.randn(17)
    a = agent.act(obs, eval_mode=True)
    b = agent.act(obs, eval_mode=True)
    assert torch.equal(a, b)  # eval mode returns the deterministic mean tanh(mu)


def test_matmul_precision_is_scoped_to_act_and_update_and_stays_close_to_float32():
    """medium (bfloat16 inputs, float32 sums) changes results by rounding only, and act/update
    put torch's global setting back."""
    exact, fast = _agent(seed=3, matmul_precision="highest"), _agent(seed=3, matmul_precision="medium")
    fast.model.load_state_dict(exact.model.state_dict())
    z = exact.model.encode(torch.randn(1, 17))
    actions = torch.rand(exact.cfg.horizon, 64, 6) * 2 - 1
    torch.manual_seed(4)
    with torch.no_grad():
        v_exact = exact.estimate_value(z, actions)
    before = torch.get_float32_matmul_precision()
    torch.manual_seed(4)
    with torch.no_grad(), matmul_precision("medium"):
        v_fast = fast.estimate_value(z, actions)
    assert torch.get_float32_matmul_precision() == before
    assert torch.allclose(v_fast, v_exact, rtol=2e-2, atol=2e-2 * v_exact.abs().mean().item())
    torch.manual_seed(5)
    l_exact = exact.update_on_batch(*_batch(exact))
    torch.manual_seed(5)
    l_fast = fast.update_on_batch(*_batch(fast))
    fast.act(torch.randn(17), t0=True)
    assert torch.get_float32_matmul_precision() == before
    for key in ("consistency_loss", "reward_loss", "value_loss", "pi_loss"):
        assert torch.allclose(l_fast[key], l_exact[key], rtol=2e-2, atol=1e-3), key


def test_matmul_precision_rejects_unknown_levels():
    from tdmpc2.config import ConfigError

    with pytest.raises(ConfigError, match="matmul_precision"):
        load_config(task="cheetah-run", matmul_precision="bf16")
