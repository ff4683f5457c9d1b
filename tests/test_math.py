"""Pure math of TD-MPC2 against hand-computed values and slow references."""
import math

import pytest
import torch
import torch.nn.functional as F

from tdmpc2.common import math as m
from tdmpc2.common.layers import mish, simnorm
from tdmpc2.common.mppi import discounted_value, elite_update, gumbel_select
from tdmpc2.config import discount_from_episode_length, seed_steps_for

VMIN, VMAX, N = -10.0, 10.0, 101


def test_symlog_symexp_are_inverse():
    x = torch.tensor([-1e4, -3.5, -1.0, 0.0, 1e-3, 2.0, 7e3])
    assert torch.allclose(m.symexp(m.symlog(x)), x, rtol=1e-5)
    assert m.symlog(torch.tensor(math.e - 1)).item() == pytest.approx(1.0)


def test_two_hot_hand_computed():
    # symlog(e^1.1 - 1) = 1.1 -> position (1.1 + 10) / 0.2 = 55.5 -> bins 55 and 56, half each
    x = torch.tensor([[math.exp(1.1) - 1]])
    p = m.two_hot(x, VMIN, VMAX, N)[0]
    assert p.sum().item() == pytest.approx(1.0)
    assert p[55].item() == pytest.approx(0.5, abs=1e-4) and p[56].item() == pytest.approx(0.5, abs=1e-4)
    assert (p > 0).sum() == 2
    # x = 0 -> exactly the middle bin
    p0 = m.two_hot(torch.zeros(1, 1), VMIN, VMAX, N)[0]
    assert p0[50].item() == 1.0 and p0.sum().item() == 1.0
    # saturation at the top edge puts all mass on the last bin
    top = m.two_hot(torch.tensor([[1e9]]), VMIN, VMAX, N)[0]
    assert top[-1].item() == pytest.approx(1.0) and top[0].item() == 0.0


def test_two_hot_round_trip_through_logits():
    x = torch.tensor([[-250.0], [-3.0], [0.0], [0.37], [12.0], [900.0]])
    logits = torch.log(m.two_hot(x, VMIN, VMAX, N).clamp(min=1e-30))
    assert torch.allclose(m.two_hot_inv(logits, VMIN, VMAX), x, rtol=1e-4, atol=1e-4)


def test_soft_ce_hand_computed():
    # uniform logits: CE = log N for any target
    ce = m.soft_ce(torch.zeros(3, N), torch.tensor([[0.0], [5.0], [-2.0]]), VMIN, VMAX)
    assert torch.allclose(ce, torch.full((3, 1), math.log(N)))
    # one-hot-ish logits on bin 50 and target 0: CE = -log softmax_50
    logits = torch.zeros(1, N)
    logits[0, 50] = 3.0
    expected = -(3.0 - math.log(math.exp(3.0) + (N - 1)))
    assert m.soft_ce(logits, torch.zeros(1, 1), VMIN, VMAX).item() == pytest.approx(expected, rel=1e-5)


def test_simnorm_groups_sum_to_one_and_match_softmax():
    x = torch.randn(7, 64) * 5
    y = simnorm(x, 8)
    assert torch.allclose(y.view(7, 8, 8).sum(-1), torch.ones(7, 8), atol=1e-6)
    assert torch.allclose(y, torch.softmax(x.view(7, 8, 8), -1).view(7, 64), atol=1e-6)
    assert (y > 0).all()


def test_mish_matches_reference_in_inference():
    x = torch.linspace(-60, 60, 2001)
    with torch.no_grad():
        assert torch.allclose(mish(x), F.mish(x), atol=5e-6, rtol=1e-5)


def test_discount_and_seed_steps_formulas():
    assert discount_from_episode_length(500) == pytest.approx(0.99)
    assert discount_from_episode_length(100) == pytest.approx(0.95)
    assert discount_from_episode_length(10_000) == pytest.approx(0.995)  # clamped high
    assert discount_from_episode_length(20) == pytest.approx(0.95)       # clamped low
    assert seed_steps_for(500) == 2500 and seed_steps_for(100) == 1000 and seed_steps_for(50) == 1000


def test_percentile_range_linear_interpolation():
    x = torch.arange(256, dtype=torch.float32)  # P5 at rank 12.75, P95 at rank 242.25
    assert m.percentile_range(x).item() == pytest.approx(242.25 - 12.75)


def _slow_elite_update(actions, values, num_elites, temperature, min_std, max_std):
    """Per-sample loops: the reference for the vectorised MPPI update."""
    H, N, A = actions.shape
    order = sorted(range(N), key=lambda i: -float(values[i]))[:num_elites]
    best = max(float(values[i]) for i in order)
    w = [math.exp(temperature * (float(values[i]) - best)) for i in order]
    total = sum(w)
    w = [wi / total for wi in w]
    mean = torch.zeros(H, A, dtype=torch.float64)
    for wi, i in zip(w, order):
        mean += wi * actions[:, i].double()
    mean /= sum(w) + 1e-9
    var = torch.zeros(H, A, dtype=torch.float64)
    for wi, i in zip(w, order):
        var += wi * (actions[:, i].double() - mean) ** 2
    std = (var / (sum(w) + 1e-9)).sqrt().clamp(min_std, max_std)
    return mean, std, sorted(order), w


def test_vectorised_mppi_update_equals_slow_reference():
    g = torch.Generator().manual_seed(3)
    actions = torch.rand(3, 200, 4, generator=g) * 2 - 1
    values = torch.randn(200, 1, generator=g) * 3
    fast = elite_update(actions, values, 32, 0.5, 0.05, 2.0)
    mean, std, order, w = _slow_elite_update(actions, values, 32, 0.5, 0.05, 2.0)
    assert torch.allclose(fast.mean.double(), mean, atol=1e-6)
    assert torch.allclose(fast.std.double(), std, atol=1e-6)
    assert fast.weights.sum().item() == pytest.approx(1.0)
    assert sorted(fast.elite_values.tolist()) == pytest.approx(sorted(float(values[i]) for i in order))


def test_gumbel_select_follows_weights():
    torch.manual_seed(0)
    w = torch.tensor([0.1, 0.6, 0.3])
    counts = torch.bincount(torch.stack([gumbel_select(w) for _ in range(4000)]), minlength=3)
    assert torch.allclose(counts / 4000.0, w, atol=0.03)


def test_discounted_value():
    rewards = torch.tensor([[[1.0]], [[2.0]], [[3.0]]])
    terminal = torch.tensor([[10.0]])
    expected = 1 + 0.9 * 2 + 0.81 * 3 + 0.729 * 10
    assert discounted_value(rewards, terminal, 0.9).item() == pytest.approx(expected)
