"""World model structure: parameter counts, initialisation, fast paths equal slow references."""
import math

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
    # entropy and scaled entropy against a hand computation from the same noise draw (spec 2.6)
    z = model.encode(torch.randn(16, 24))
    state = torch.get_rng_state()
    sample = model.pi(z)
    torch.set_rng_state(state)
    mu, raw = model._pi(z).chunk(2, dim=-1)
    eps = torch.randn_like(mu)
    log_std = cfg.log_std_min + 0.5 * (cfg.log_std_max - cfg.log_std_min) * (torch.tanh(raw) + 1)
    action = torch.tanh(mu + eps * log_std.exp())
    log_pu = (-0.5 * eps ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1, keepdim=True)
    log_pa = log_pu - torch.log(torch.clamp(1 - action ** 2, min=0) + 1e-6).sum(-1, keepdim=True)
    assert torch.allclose(sample.action, action, atol=1e-6)
    assert torch.allclose(sample.entropy, -log_pa, rtol=1e-5, atol=1e-4)
    # the scaled entropy is -A log p_u (the ratio log p_u / log p_a cancels up to its 1e-8 guard)
    assert torch.allclose(sample.scaled_entropy, -cfg.action_dim * log_pu, rtol=1e-4, atol=1e-3)
    assert not torch.allclose(sample.scaled_entropy, sample.entropy)  # not the textbook entropy


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


def _perturbed_pair(task="cheetah-run", size=1):
    """Two world models with the same random (non-initial) weights: eager and native kernels."""
    from tdmpc2.common import kernels

    if not kernels.available():
        pytest.skip("no C compiler: the fused CPU kernels cannot be built")
    torch.manual_seed(3)
    cfg = load_config(task=task, model_size=size)
    eager = build_world_model(cfg).eval()
    with torch.no_grad():
        for p in eager.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    native = build_world_model(cfg).eval()
    native.load_state_dict(eager.state_dict())
    assert native.use_native_kernels() and not eager._native
    return cfg, eager, native


def test_native_kernels_equal_eager_in_planning():
    """Fused CPU kernels (LN->Mish, LN->SimNorm, two-hot decoding) == eager ops, in every call
    the planner makes, including the shared-latent first step and the chosen Q heads."""
    cfg, eager, native = _perturbed_pair()
    obs, a = torch.randn(1, 17) * 2, torch.rand(64, 6) * 2 - 1
    with torch.no_grad():
        z_e, z_n = eager.encode(obs), native.encode(obs)
        assert torch.allclose(z_e, z_n, atol=1e-6)
        for z in (z_e, z_e.expand(64, -1).contiguous()):
            (r_e, n_e), (r_n, n_n) = eager.reward_and_next(z, a), native.reward_and_next(z, a)
            assert torch.allclose(r_e, r_n, rtol=1e-4, atol=1e-4) and torch.allclose(n_e, n_n, atol=1e-6)
        zs = n_e
        torch.manual_seed(0)
        pa_e = eager.pi_action(zs)
        torch.manual_seed(0)
        assert torch.allclose(pa_e, native.pi_action(zs), atol=1e-5)
        for heads in (torch.tensor([1, 0]), torch.tensor([0, 1])):
            for reduce in ("avg", "min"):
                q_e = eager.Q(zs, pa_e, heads, reduce, target=True)
                assert torch.allclose(q_e, native.Q(zs, pa_e, heads, reduce, target=True), rtol=1e-4, atol=1e-4)
        for model in (eager, native):  # a LayerNorm scale whose outputs span > 80: the guarded SimNorm
            model._dynamics[-1].ln.weight.mul_(50.0)
        next_e, next_n = eager.next(zs, pa_e), native.next(zs, pa_e)
        assert torch.isfinite(next_n).all() and torch.allclose(next_e, next_n, rtol=1e-3, atol=1e-6)


def test_native_kernels_equal_eager_gradients():
    """The fused LN->Mish autograd function: same losses and parameter gradients as eager."""
    cfg, eager, native = _perturbed_pair()
    obs, a = torch.randn(32, 17), torch.rand(32, 6) * 2 - 1
    grads = []
    for model in (eager, native):
        model.zero_grad()
        torch.manual_seed(0)  # the same policy noise for both
        z = model.encode(obs)
        loss = (model.reward_logits(z, a).square().mean() + model.Q_logits(z, a).square().mean()
                + model.next(z, a).square().mean() + model.pi(z).action.square().mean())
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (loss_e, g_e), (loss_n, g_n) = grads
    assert torch.allclose(loss_e, loss_n, rtol=1e-5)
    assert len(g_e) == len(g_n)
    for ge, gn in zip(g_e, g_n):
        assert torch.allclose(ge, gn, rtol=1e-3, atol=1e-6 + 1e-4 * ge.abs().max().item())


def test_native_kernels_fall_back_to_eager_without_a_compiler(monkeypatch):
    from tdmpc2.common import kernels

    monkeypatch.setattr(kernels, "_lib", None)
    monkeypatch.setattr(kernels, "_tried", False)
    monkeypatch.setattr(kernels, "_build", lambda: None)  # as when no C compiler is found
    cfg = load_config(task="cheetah-run", model_size=1)
    model = build_world_model(cfg).eval()
    assert not model.use_native_kernels()
    with torch.no_grad():
        z = model.encode(torch.randn(4, 17))
        assert torch.isfinite(model.reward_and_next(z, torch.rand(4, 6))[0]).all()


def test_dropout_zeroes_entries_independently_with_probability_p():
    from tdmpc2.common.layers import dropout

    torch.manual_seed(0)
    p, n = 0.01, 1_000_000
    out = dropout(torch.ones(n), p)
    dropped = (out == 0).sum().item()
    assert abs(dropped - p * n) < 6 * math.sqrt(n * p * (1 - p))
    assert torch.allclose(out[out != 0], torch.full((n - dropped,), 1 / (1 - p)))
    # the dropped positions are spread uniformly (no bias towards the start or the end)
    halves = (out.view(2, -1) == 0).sum(1).float()
    assert abs(halves[0] - halves[1]).item() < 6 * math.sqrt(n * p)
    x = torch.randn(3, 50, 40, requires_grad=True)
    y = dropout(x, 0.2)
    y.sum().backward()
    assert torch.equal(x.grad == 0, y == 0) and torch.allclose(x.grad[y != 0], torch.tensor(1.25))


def test_dropout_backward_zeroes_the_forward_positions_for_any_gradient_layout():
    from tdmpc2.common.layers import dropout

    torch.manual_seed(1)
    x = torch.randn(4, 5, 6, requires_grad=True)
    y = dropout(x, 0.3)
    grad = torch.randn(6, 5, 4).permute(2, 1, 0)  # not contiguous
    y.backward(grad)
    kept = y != 0
    assert torch.equal(x.grad[kept], (grad * (1 / 0.7))[kept]) and not x.grad[~kept].any()


@pytest.fixture(params=["native", "portable"])
def kernel_build(request, monkeypatch):
    """The kernels as built for this CPU (AVX-512 code here), then a portable build (-O3 only:
    the plain C loops); skipped without a C compiler."""
    from tdmpc2.common import kernels

    if not kernels.available():
        pytest.skip("no C compiler")
    if request.param == "portable":
        lib = kernels._build(flag_sets=(["-O3"],))
        assert lib is not None
        monkeypatch.setattr(kernels, "_lib", lib)
    return kernels


def test_ln_mish_kernel_matches_eager_for_any_width(kernel_build):
    """The LN -> Mish kernel, forward and backward with a bias, against eager torch on widths that
    are not multiples of the vector length, for the build the CPU gets (AVX-512 code here) and
    for a portable build (-O3 only: the plain C loops). The shapes reach every path of the AVX-512
    code: rows in groups of 4 and a remainder, the 64-wide unrolled body, single vectors, the
    masked tail."""
    kernels = kernel_build
    torch.manual_seed(0)
    for K, R, C in ((1, 5, 37), (2, 7, 19), (2, 3, 16), (1, 9, 130), (2, 6, 64), (1, 4, 400)):
        x = (torch.randn(K, R, C) * 3).requires_grad_()
        gamma, beta, bias = (torch.randn(K, C).requires_grad_() for _ in range(3))
        grad = torch.randn(K, R, C)
        outputs = []
        for fused in (True, False):
            for t in (x, gamma, beta, bias):
                t.grad = None
            if fused:
                y = kernels.ln_mish(x, gamma, beta, 1e-5, bias=bias)
            else:
                y = F.mish(F.layer_norm(x + bias.unsqueeze(1), (C,), eps=1e-5) * gamma.unsqueeze(1) + beta.unsqueeze(1))
            y.backward(grad)
            outputs.append([y.detach()] + [t.grad.clone() for t in (x, gamma, beta, bias)])
        for fused, eager in zip(*outputs):
            assert torch.allclose(fused, eager, rtol=1e-4, atol=1e-5), (K, R, C)
        with torch.no_grad():
            y = kernels.ln_mish_(x.detach().clone(), gamma.detach(), beta.detach(), 1e-5, bias=bias.detach())
        assert torch.allclose(y, outputs[1][0], rtol=1e-4, atol=1e-5)


def test_ln_simnorm_kernel_matches_eager(kernel_build):
    """The inference LN -> SimNorm kernel against eager torch: row counts around the 4-row groups
    of its statistics, with and without the bias, and gamma small (the shift-free path) or large
    (the per-group max pass)."""
    from tdmpc2.common.layers import simnorm

    kernels = kernel_build
    torch.manual_seed(0)
    for R, C, scale in ((1, 64, 1.0), (6, 128, 1.0), (9, 136, 1.0), (7, 128, 30.0)):
        x = torch.randn(R, C) * 3
        gamma, beta, bias = torch.randn(C) * 0.3 * scale, torch.randn(C) * 0.3, torch.randn(C)
        for b in (None, bias):
            eager = simnorm(F.layer_norm(x if b is None else x + b, (C,), eps=1e-5) * gamma + beta, 8)
            fused = kernels.ln_simnorm_(x.clone(), gamma, beta, 8, eps=1e-5, bias=b)
            assert torch.allclose(fused, eager, rtol=1e-4, atol=1e-6), (R, C, scale, b is None)


def test_two_hot_decoding_kernel_matches_eager_for_any_width(kernel_build):
    """symexp(softmax(logits) @ centres) from the kernel against eager torch, on bin counts around
    the vector length, wide logits (the max shift matters), and NaN rows (NaN out, not 0)."""
    from tdmpc2.common import math as m

    kernels = kernel_build
    torch.manual_seed(0)
    for N in (1, 15, 16, 17, 101, 255):
        logits = torch.randn(33, N) * 6
        logits[3] += 50.0
        centres = torch.linspace(-10, 10, N)
        eager = m.two_hot_inv(logits, -10, 10)
        assert torch.allclose(kernels.two_hot_inv(logits, centres), eager, rtol=1e-4, atol=1e-5), N
    logits[5, 7] = float("nan")
    out = kernels.two_hot_inv(logits, torch.linspace(-10, 10, logits.shape[-1]))
    assert torch.isnan(out[5]).all() and torch.isfinite(out[torch.arange(len(out)) != 5]).all()
