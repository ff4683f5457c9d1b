"""Replay buffer (spec 6): slices stay inside one complete episode, time-major shapes, capacity,
state_dict round trip."""
import math

import pytest
import torch

from tdmpc2.common.buffer import Buffer

OBS_DIM, ACT_DIM = 3, 2


def make_episode(index: int, steps: int) -> dict:
    """An episode whose every stored value encodes (episode index, entry number):
    obs = 1000*index + k, action/reward = the same code for the step leading into entry k."""
    k = torch.arange(steps + 1, dtype=torch.float32)
    code = 1000.0 * index + k
    action, reward = code.unsqueeze(1).repeat(1, ACT_DIM), code.clone()
    action[0], reward[0] = float("nan"), float("nan")
    terminated = torch.zeros(steps + 1)
    terminated[0] = float("nan")
    return dict(obs=code.unsqueeze(1).repeat(1, OBS_DIM), action=action, reward=reward,
                terminated=terminated)


def assert_valid_slices(buffer: Buffer, stored: set[int], lengths: dict[int, int]):
    """Every slice is H+1 consecutive entries of one stored, complete episode."""
    obs, action, reward, terminated, task = buffer.sample()
    h, b = buffer.horizon, buffer.batch_size
    assert obs.shape == (h + 1, b, OBS_DIM) and action.shape == (h, b, ACT_DIM)
    assert reward.shape == (h, b, 1) and terminated.shape == (h, b, 1) and task is None
    code = obs[..., 0]
    episode, entry = torch.div(code, 1000, rounding_mode="floor").long(), code.remainder(1000).long()
    assert (episode == episode[0]).all(), "a slice crossed an episode boundary"
    assert (entry == entry[0] + torch.arange(h + 1).unsqueeze(1)).all(), "entries not consecutive"
    assert set(episode[0].tolist()) <= stored, "sampled an evicted episode"
    for ep, last in zip(episode[0].tolist(), entry[-1].tolist()):
        assert last <= lengths[ep]
    # actions/rewards are the ones that led into entries 1..H: never the NaN placeholder
    assert torch.isfinite(action).all() and torch.isfinite(reward).all()
    assert torch.equal(action[..., 0], code[1:]) and torch.equal(reward[..., 0], code[1:])
    return episode[0], entry[0]


def test_shapes_and_time_major_layout():
    buffer = Buffer(capacity=1000, horizon=3, batch_size=64, seed=0)
    buffer.add(make_episode(0, 50))
    assert_valid_slices(buffer, {0}, {0: 50})
    assert len(buffer) == 51 and buffer.num_eps == 1


def test_slices_never_cross_episodes_with_unequal_lengths():
    buffer = Buffer(capacity=10_000, horizon=5, batch_size=512, seed=1)
    lengths = {i: n for i, n in enumerate([5, 6, 7, 40, 3, 100])}  # 3 and 4 entries are too short
    for i, n in lengths.items():
        buffer.add(make_episode(i, n))
    episodes, _ = assert_valid_slices(buffer, set(lengths), lengths)
    assert 4 not in episodes.tolist()  # only 4 entries < H+1 = 6: never sampled


def test_wraparound_evicts_whole_oldest_episodes():
    buffer = Buffer(capacity=250, horizon=3, batch_size=1024, seed=2)
    for i in range(7):  # 7 episodes of 51 entries through a 250-entry ring: wraps twice
        buffer.add(make_episode(i, 50))
        stored = set(range(max(0, i - 3), i + 1))  # at most 4 whole episodes fit (204 entries)
        assert len(buffer) == 51 * len(stored)
        episodes, _ = assert_valid_slices(buffer, stored, {j: 50 for j in stored})
    assert set(episodes.tolist()) == {3, 4, 5, 6}
    assert buffer.num_eps == 7 and buffer.num_stored_eps == 4


def test_episode_spanning_ring_end_is_sampled_correctly():
    buffer = Buffer(capacity=120, horizon=3, batch_size=2048, seed=3)
    buffer.add(make_episode(0, 49))   # entries 0..49
    buffer.add(make_episode(1, 49))   # entries 50..99
    buffer.add(make_episode(2, 49))   # entries 100..119, 0..29 (evicts episode 0)
    episodes, starts = assert_valid_slices(buffer, {1, 2}, {1: 49, 2: 49})
    across_end = starts[episodes == 2]
    assert ((across_end > 17) & (across_end < 20)).any(), "no slice crossed the ring's end"


def test_offsets_cover_the_episode_uniformly():
    buffer = Buffer(capacity=100, horizon=3, batch_size=20_000, seed=4)
    buffer.add(make_episode(0, 9))  # 10 entries -> 7 valid start offsets
    _, starts = assert_valid_slices(buffer, {0}, {0: 9})
    counts = torch.bincount(starts, minlength=7).float()
    assert counts.shape == (7,) and counts.min() > 0.9 * 20_000 / 7


def test_episodes_chosen_uniformly_not_by_length():
    buffer = Buffer(capacity=1000, horizon=1, batch_size=20_000, seed=5)
    buffer.add(make_episode(0, 10))
    buffer.add(make_episode(1, 400))
    episodes, _ = assert_valid_slices(buffer, {0, 1}, {0: 10, 1: 400})
    assert math.isclose(episodes.float().mean().item(), 0.5, abs_tol=0.02)


def test_capacity_and_oversized_episode():
    buffer = Buffer(capacity=100, horizon=3, batch_size=8)
    with pytest.raises(ValueError, match="does not fit"):
        buffer.add(make_episode(0, 100))
    with pytest.raises(RuntimeError, match="no episode"):
        buffer.sample()


def test_from_config_capacity_is_min_of_buffer_size_and_steps():
    from tdmpc2.config import load_config

    cfg = load_config(task="cartpole-balance", steps=5000, buffer_size=1_000_000, batch_size=16)
    assert Buffer.from_config(cfg, "cpu").capacity == 5000
    cfg = load_config(task="cartpole-balance", steps=10**7, buffer_size=20_000)
    buffer = Buffer.from_config(cfg, torch.device("cpu"))
    assert buffer.capacity == 20_000 and buffer.batch_size == cfg.batch_size


def test_state_dict_round_trip_resumes_identically():
    buffer = Buffer(capacity=300, horizon=3, batch_size=32, seed=6)
    for i in range(8):
        buffer.add(make_episode(i, 40 + i))
    state = buffer.state_dict()
    restored = Buffer(capacity=300, horizon=3, batch_size=32, seed=123)
    restored.load_state_dict(state)
    assert len(restored) == len(buffer) and restored.num_eps == buffer.num_eps == 8
    for a, b in zip(buffer.sample(), restored.sample()):
        assert (a is None and b is None) or torch.equal(a, b)
    buffer.add(make_episode(8, 45))
    restored.add(make_episode(8, 45))
    for a, b in zip(buffer.sample(), restored.sample()):
        assert (a is None and b is None) or torch.equal(a, b)


def test_state_dict_into_smaller_buffer_keeps_newest_episodes():
    buffer = Buffer(capacity=500, horizon=3, batch_size=256, seed=7)
    for i in range(5):
        buffer.add(make_episode(i, 50))
    small = Buffer(capacity=120, horizon=3, batch_size=256, seed=7)
    small.load_state_dict(buffer.state_dict())
    assert small.num_stored_eps == 2 and small.num_eps == 5
    assert_valid_slices(small, {3, 4}, {3: 50, 4: 50})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_storage_and_output():
    buffer = Buffer(capacity=500, horizon=3, batch_size=64, device="cuda", seed=8)
    buffer.add(make_episode(0, 60))
    batch = buffer.sample()
    assert batch.obs.device.type == "cuda"
    cpu_side = Buffer(capacity=500, horizon=3, batch_size=64, device="cuda", storage_device="cpu")
    cpu_side.add(make_episode(0, 60))
    assert cpu_side.sample().obs.device.type == "cuda"
