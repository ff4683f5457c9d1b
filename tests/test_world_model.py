"""World model structure: parameter counts, initialisation, fast paths equal slow references."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tdmpc2.common.world_model import build_world_model
from tdmpc2.config import load_config


def _expected_params(obs, act, enc, mlp_dim, latent, num_enc_layers, num_q, bins=101):
    """Parameter count from the layer formulas of spec sec. 2 (linear + LayerNorm per layer)."""
    def normed(i, o):
        return i * o + o + 2 * o

    def linear(i, o):
        return i * o + o

    enc_dims = [obs] + [enc] * max(num_enc_layers - 1, 1)
    encoder = sum(normed(a, b) for a, b in zip(enc_dims, enc_dims[1:])) + normed(enc_dims[-1], latent)
    za = latent + act
    dynamics = normed(za, mlp_dim) + normed(mlp_dim, mlp_dim) + normed(mlp_dim, latent)
    reward = normed(za, mlp_dim) + normed(mlp_dim, mlp_dim) + linear(mlp_dim, bins)
    policy = normed(latent, mlp_dim) + normed(mlp_dim, mlp_dim) + linear(mlp_dim, 2 * act)
    q = num_q * (normed(za, mlp_dim) + normed(mlp_dim, mlp_dim) + linear(mlp_dim, bins))
    return encoder + dynamics + reward + policy + q


@pytest.mark.parametrize("task,obs,act", [("walker-walk", 24, 6), ("cartpole-balance", 5, 1)])
@pytest.mark.parametrize("size", [1, 5])
def test_parameter_counts(task, obs, act, size):
    cfg = load_config(task=task, model_size=size)
    model = build_world_model(cfg)
    expected = _expected_params(obs, act, cfg.enc_dim, cfg.mlp_dim, cfg.latent_dim, cfg.num_enc_layers, cfg.num_q)
    assert model.total_params() == expected
    spec_5m = {"walker-walk": 4_960_618, "cartpole-balance": 4_932_704}
    if size == 5:
        assert model.total_params() == spec_5m[task]


def test_initial_rewards_and_values_are_zero_and_targets_copy():
    cfg = load_config(task="cheetah-run", model_size=1)
    model = build_world_model(cfg)
    z = model.encode(torch.randn(4, 17))
    a = torch.rand(4, 6) * 2 - 1
    # the mean of the bin centres is 0 up to float rounding of linspace
    assert model.reward(z, a).abs().max() < 1e-6
    assert model.Q(z, a, torch.tensor([0, 1])).abs().max() < 1e-6
    assert torch.equal(model.reward_logits(z, a), torch.zeros(4, cfg.num_bins))
    for p, tp in zip(model._Qs.parameters(), model._target_Qs.parameters()):
        assert torch.equal(p, tp) and not tp.requires_grad
    groups = z.view(4, -1, cfg.simnorm_dim).sum(-1)
    assert torch.allclose(groups, torch.ones_like(groups), atol=1e-5)


def test_q_ensemble_matches_per_head_reference():
    """The stacked ensemble equals K separate Linear/LayerNorm/Mish heads (slow reference)."""
    torch.manual_seed(0)
    cfg = load_config(task="cheetah-run", model_size=1)
    model = build_world_model(cfg).eval()  # no dropout
    q = model._Qs
    with torch.no_grad():
        for p in q.parameters():
            p.normal_(0, 0.1)
    x = torch.randn(3, 5, q.w1.shape[2])
    out = q(x)
    for k in range(q.num_q):
        h = F.linear(x, q.w1[k], q.b1[k])
        h = F.mish(F.layer_norm(h, h.shape[-1:], q.g1[k], q.s1[k]))
        h = F.mish(F.layer_norm(F.linear(h, q.w2[k], q.b2[k]), h.shape[-1:], q.g2[k], q.s2[k]))
        ref = F.linear(h, q.w3[k], q.b3[k])
        assert torch.allclose(out[k], ref, atol=1e-5)
    pair = torch.tensor([1, 0])
    assert torch.allclose(q(x, pair), out[[1, 0]], atol=1e-6)


def test_shared_first_layer_equals_concatenation():
    torch.manual_seed(1)
    cfg = load_config(task="cheetah-run", model_size=1)
    model = build_world_model(cfg)
    with torch.no_grad():
        nn.init.normal_(model._reward[-1].weight, std=0.1)
        z = model.encode(torch.randn(1, 17))
        a = torch.rand(64, 6) * 2 - 1
        r_fast, z_fast = model.reward_and_next(z, a)
        r_ref = model.reward(z.expand(64, -1), a)
        z_ref = model.next(z.expand(64, -1), a)
    assert torch.allclose(r_fast, r_ref, atol=1e-5) and torch.allclose(z_fast, z_ref, atol=1e-6)


def test_policy_log_std_bounds_and_entropy_terms():
    cfg = load_config(task="walker-walk", model_size=1)
    model = build_world_model(cfg)
    sample = model.pi(model.encode(torch.randn(16, 24)))
    assert sample.action.abs().max() <= 1
    assert (sample.log_std >= cfg.log_std_min).all() and (sample.log_std <= cfg.log_std_max).all()
    # the scaled entropy is essentially -A log p_u (spec 2.6)
    assert torch.isfinite(sample.scaled_entropy).all()


def test_inference_fast_paths_equal_the_plain_ops():
    """LayerNorm->SimNorm without the max shift, and the in-place rational Mish, equal the
    textbook ops in inference; a LayerNorm scale that breaks the bound falls back safely."""
    torch.manual_seed(2)
    cfg = load_config(task="cheetah-run", model_size=1)
    model = build_world_model(cfg).eval()
    layer = model._dynamics[-1]
    x = torch.randn(33, layer.in_features) * 3
    with torch.no_grad():
        ref = torch.softmax(F.layer_norm(F.linear(x, layer.weight, layer.bias), (layer.out_features,),
                                         layer.ln.weight, layer.ln.bias).view(33, -1, 8), -1).view(33, -1)
        assert torch.allclose(layer(x), ref, atol=1e-6)
        layer.ln.weight.mul_(50.0)  # bound now > 80: the guarded path must still be exact
        ref = torch.softmax(F.layer_norm(F.linear(x, layer.weight, layer.bias), (layer.out_features,),
                                         layer.ln.weight, layer.ln.bias).view(33, -1, 8), -1).view(33, -1)
        out = layer(x)
        assert torch.isfinite(out).all() and torch.allclose(out, ref, atol=1e-6)
