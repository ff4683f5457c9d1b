"""Released upstream TD-MPC2 checkpoints (tdmpc2/common/upstream.py, the hook in TDMPC2.load_state_dict):
an upstream-format state dict built from our own agent through the mapping of tdmpc2-spec.md
appendix B loads into a fresh agent, which then acts exactly like the original (plain and hybrid
planning); weights of another task or size fail with one sentence."""
import pytest
import torch

from tdmpc2.config import load_config
from tdmpc2.envs import make_env
from tdmpc2.hybrid_tdmpc2 import HybridTDMPC2
from tdmpc2.tdmpc2 import TDMPC2, CheckpointError

# appendix B, written out from the table (not from tdmpc2.common.upstream)
Q_SUFFIX = {"w": "weight", "b": "bias", "g": "ln.weight", "s": "ln.bias"}


def upstream_state(model_state, log_std_min=-10.0, log_std_max=2.0):
    """Our world model's state dict in the upstream format `{"model": ...}`."""
    out = {"log_std_min": torch.tensor(log_std_min), "log_std_dif": torch.tensor(log_std_max - log_std_min)}
    for key, value in model_state.items():
        module, name = key.split(".", 1)
        if module == "_encoder":
            out[f"_encoder.state.{name}"] = value.clone()
        elif module in ("_Qs", "_target_Qs"):
            layer, suffix = int(name[1]) - 1, Q_SUFFIX[name[0]]
            if module == "_Qs":
                out[f"_Qs.params.{layer}.{suffix}"] = value.clone()
                out[f"_detach_Qs_params.{layer}.{suffix}"] = value.clone()
            else:
                out[f"_target_Qs_params.{layer}.{suffix}"] = value.clone()
        else:
            out[key] = value.clone()
    for group in ("_Qs.params", "_detach_Qs_params", "_target_Qs_params"):  # tensordict bookkeeping
        out[f"{group}.__batch_size"] = torch.Size([5])
        out[f"{group}.__device"] = None
    return {"model": out}


def config(**overrides):
    settings = dict(task="cartpole-balance", device="cpu", compile=False)
    settings.update(overrides)
    return load_config(**settings)


def actions(agent, obs, steps=3, seed=0):
    torch.manual_seed(seed)
    return torch.stack([agent.act(obs, t0=i == 0, eval_mode=i == 1) for i in range(steps)])


def test_upstream_checkpoint_loads_and_gives_identical_actions():
    torch.manual_seed(1)
    cfg = config(model_size=5)
    source = TDMPC2(cfg)
    with torch.no_grad():  # trained-looking weights: zero-initialised heads would hide a mix-up
        for p in source.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for target, online in zip(source.model._target_Qs.parameters(), source.model._Qs.parameters()):
            target.copy_(online + 0.01)
    state = upstream_state(source.model.state_dict())
    shapes = {k: tuple(v.shape) for k, v in state["model"].items() if isinstance(v, torch.Tensor)}
    # the shapes appendix B lists for cartpole-balance (obs 5, action 1) at model size 5
    assert shapes["_encoder.state.0.weight"] == (256, 5) and shapes["_encoder.state.1.weight"] == (512, 256)
    assert shapes["_dynamics.0.weight"] == (512, 513) and shapes["_reward.2.weight"] == (101, 512)
    assert shapes["_pi.2.weight"] == (2, 512) and shapes["_Qs.params.0.weight"] == (5, 512, 513)
    assert shapes["_Qs.params.2.weight"] == (5, 101, 512) and shapes["_target_Qs_params.1.ln.bias"] == (5, 512)

    torch.manual_seed(2)
    fresh = TDMPC2(cfg)
    assert not torch.equal(fresh.model._encoder[0].weight, source.model._encoder[0].weight)
    fresh.load(state)
    for key, value in source.model.state_dict().items():
        assert torch.equal(fresh.model.state_dict()[key], value), key
    obs = torch.tensor([0.1, -0.9, 0.2, 0.3, -0.1])
    assert torch.equal(actions(fresh, obs), actions(source, obs))


def test_upstream_checkpoint_file_plans_with_hybrid_mpc(tmp_path):
    hybrid = dict(model_size=1, hybrid_mpc=True, max_classical_horizon=2, ilqg_iterations=2,
                  hybrid_prefix_samples=4, num_samples=32, num_elites=8, num_pi_trajs=4, iterations=2)
    cfg = config(**hybrid)
    env = make_env(cfg)
    torch.manual_seed(3)
    source = HybridTDMPC2(cfg, env)
    with torch.no_grad():
        for p in source.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path / "upstream.pt"
    torch.save(upstream_state(source.model.state_dict()), path)
    torch.manual_seed(4)
    loaded = HybridTDMPC2(cfg, env)
    loaded.load(str(path))  # the same call `checkpoint=PATH` makes
    assert loaded.classical_horizon == source.classical_horizon == 2
    obs = env.reset()  # planning snapshots the live simulator and never steps it
    assert torch.equal(actions(loaded, obs, steps=2), actions(source, obs, steps=2))


@pytest.mark.parametrize("case", ["task", "size", "log_std", "missing"])
def test_upstream_checkpoint_of_another_task_or_size_fails_in_one_sentence(case):
    agent = TDMPC2(config(model_size=1))
    if case == "task":
        other = TDMPC2(config(task="walker-walk", model_size=1)).model.state_dict()
        state, expected = upstream_state(other), "'_encoder.state.0.weight' has shape (256, 24)"
    elif case == "size":
        other = TDMPC2(config(model_size=5)).model.state_dict()
        state, expected = upstream_state(other), "trained on another task or model size"
    elif case == "log_std":
        state, expected = upstream_state(agent.model.state_dict(), -5.0, 2.0), "log-std range is [-5, 2]"
    else:
        state = upstream_state(agent.model.state_dict())
        del state["model"]["_pi.2.bias"]
        expected = "no weights for this agent's '_pi.2.bias'"
    with pytest.raises(CheckpointError) as error:
        agent.load(state)
    message = str(error.value)
    assert expected in message, message
    assert message.startswith("The given state dict is an upstream TD-MPC2 checkpoint that does not fit")
    assert "\n" not in message and message.count(". ") == 0 and message.endswith(".")
