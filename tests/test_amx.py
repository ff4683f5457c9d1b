"""The AMX bfloat16 matmul (`tdmpc2.common.amx`) against slow references and torch's own medium path.

Skipped where the kernel cannot run (no AMX-BF16 CPU, no compiler that knows AMX)."""
import pytest
import torch
import torch.nn.functional as F

from tdmpc2.common import amx
from tdmpc2.common.device import matmul_precision
from tdmpc2.config import load_config

pytestmark = pytest.mark.skipif(not amx.available(), reason="no AMX-BF16 CPU or no compiler for it")


def _rounded_reference(x, w, bias=None):
    """bf16(x) @ bf16(w)^T (+ bias) in float64: the function the kernel computes."""
    out = x.bfloat16().double() @ w.bfloat16().double().t()
    return out if bias is None else out + bias.double()


@pytest.mark.parametrize("m,k,n", [(536, 384, 384), (33, 129, 384), (1, 128, 384), (512, 1, 384),
                                   (70, 64, 101), (5, 40, 2), (32, 32, 16)])
def test_linear_equals_the_rounded_product(m, k, n):
    """Row, depth and column tails (padded inside), with and without a bias, into `out`."""
    torch.manual_seed(0)
    x, w, b = torch.randn(m, k), torch.randn(n, k) * 0.1, torch.randn(n)
    tiles = amx.pack(w)
    for bias in (None, b):
        ref = _rounded_reference(x, w, bias)
        out = amx.linear(x, tiles, n, bias=bias)
        assert out.shape == (m, n) and out.dtype == torch.float32
        torch.testing.assert_close(out.double(), ref, rtol=1e-6, atol=1e-5)
        into = torch.full((m, n), float("nan"))
        assert amx.linear(x, tiles, n, bias=bias, out=into) is into
        assert torch.equal(into, out)
    unrounded = (x.double() @ w.double().t() - _rounded_reference(x, w)).abs().max()
    assert unrounded > 1e-4  # the test inputs do need rounding: a float32 product would fail above


def test_linear_takes_leading_dims_and_strided_rows_and_propagates_nan():
    torch.manual_seed(1)
    w = torch.randn(48, 20)
    tiles = amx.pack(w)
    x = torch.randn(3, 7, 40)[..., ::2]  # rows with a stride, not contiguous
    out = amx.linear(x, tiles, 48)
    assert out.shape == (3, 7, 48)
    torch.testing.assert_close(out.double(), _rounded_reference(x, w), rtol=1e-6, atol=1e-5)
    x = torch.randn(40, 20)
    x[5, 3] = float("nan")
    out = amx.linear(x, tiles, 48)
    assert torch.isnan(out[5]).all() and torch.isfinite(out[torch.arange(40) != 5]).all()


@pytest.fixture
def one_thread():
    """The kernel applies at 1 torch thread only (it is single-threaded)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_equals_torch_medium_where_torch_rounds_and_only_there(one_thread):
    """Where torch's own medium matmul rounds (its backend decides per shape), the kernel gives
    torch's result; elsewhere `applies` leaves the product to torch."""
    torch.manual_seed(2)
    for m, k, n in [(536, 384, 384), (536, 129, 384), (1, 128, 384), (512, 384, 101), (512, 1, 384), (16, 384, 16)]:
        x, w = torch.randn(m, k), torch.randn(n, k) * 0.1
        with torch.no_grad(), matmul_precision("medium"):
            theirs = F.linear(x, w)
            takes = amx.applies(x, w)
        if takes:
            torch.testing.assert_close(theirs.double(), _rounded_reference(x, w), rtol=1e-6, atol=1e-5)
            torch.testing.assert_close(amx.linear(x, amx.pack(w), n), theirs, rtol=1e-6, atol=1e-6)
        else:  # torch kept float32 here
            assert (theirs.double() - x.double() @ w.double().t()).abs().max() < 1e-4
    with torch.no_grad(), matmul_precision("medium"):
        assert amx.applies(torch.randn(536, 384), torch.randn(384, 384))
        assert not amx.applies(torch.randn(512, 1), torch.randn(384, 1))  # torch's float32 path
    with torch.no_grad(), matmul_precision("high"):
        assert not amx.applies(torch.randn(536, 384), torch.randn(384, 384))
    with matmul_precision("medium"):
        assert not amx.applies(torch.randn(536, 384, requires_grad=True), torch.randn(384, 384))
    torch.set_num_threads(2)
    with torch.no_grad(), matmul_precision("medium"):
        assert not amx.applies(torch.randn(536, 384), torch.randn(384, 384))


def test_packed_weights_follow_in_place_updates():
    """The cache repacks (into the same memory) after an in-place write, and after a fused optimiser
    step, which leaves the version counter as it was; an unchanged weight is not repacked."""
    w = torch.randn(32, 64)
    cache = amx.PackedWeights()
    first = cache.get("w", w).clone()
    assert torch.equal(cache.get("w", w), first)
    w.mul_(2.0)
    assert torch.equal(cache.get("w", w), amx.pack(w)) and not torch.equal(cache.get("w", w), first)
    p = torch.nn.Parameter(torch.randn(32, 64))
    optimiser = torch.optim.Adam([p], lr=0.1, fused=True)
    before = cache.get("p", p).clone()
    p.grad = torch.ones_like(p)
    version = p._version
    optimiser.step()
    assert p._version == version  # why the cache also counts optimiser steps
    assert torch.equal(cache.get("p", p), amx.pack(p)) and not torch.equal(cache.get("p", p), before)
    x = torch.randn(8, 64)
    torch.testing.assert_close(amx.linear(x, cache.get("w", w), 32).double(), _rounded_reference(x, w),
                               rtol=1e-6, atol=1e-5)


def _agent(task="cartpole-balance"):
    from tdmpc2.tdmpc2 import TDMPC2

    torch.manual_seed(0)
    agent = TDMPC2(load_config(task=task, model_size=1, device="cpu", matmul_precision="medium"))
    if not agent.model._native:
        pytest.skip("the fused CPU kernels are off")
    with torch.no_grad():
        for p in agent.model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return agent


def _act(agent, obs, use_amx, monkeypatch):
    with monkeypatch.context() as patch:
        if not use_amx:
            patch.setattr(amx, "_lib", None)
        torch.manual_seed(7)
        return agent.act(obs, t0=True)


@pytest.mark.parametrize("task", ["cartpole-balance", "cheetah-run"])
def test_agent_plans_the_same_with_and_without_amx_before_and_after_updates(task, monkeypatch, one_thread):
    """At torch threads 1 and medium precision, act() with the kernel returns torch's own actions
    bit for bit, also after update() changed the weights in place (the tiles are repacked)."""
    agent = _agent(task)
    obs = torch.randn(agent.cfg.obs_shape["state"][0])
    H, B, A = agent.cfg.horizon, agent.cfg.batch_size, agent.cfg.action_dim
    batch = (torch.randn(H + 1, B, obs.shape[0]), torch.rand(H, B, A) * 2 - 1, torch.rand(H, B, 1), torch.zeros(H, B, 1))
    calls = []
    original = amx.linear
    monkeypatch.setattr(amx, "linear", lambda *a, **k: calls.append(1) or original(*a, **k))
    for _ in range(2):
        ours, theirs = _act(agent, obs, True, monkeypatch), _act(agent, obs, False, monkeypatch)
        assert calls and torch.equal(ours, theirs)
        agent.update_on_batch(*batch)
        calls.clear()
