"""Time `sample()` of our replay buffer against torchrl's ReplayBuffer + SliceSampler.

Setting: B=256 slices of H+1=4 entries, 100,200 stored entries (200 DMControl-sized episodes of
501 entries, walker sizes obs 24 / action 6), CPU, one torch thread unless `--threads` says
otherwise. Each contender produces the same thing: time-major obs (H+1,B,obs), action (H,B,A),
reward (H,B,1), terminated (H,B,1). Reported: median over `--repeats` calls after a warm-up, and
the ratio torchrl / ours (> 1 means ours is faster).

torchrl is not a dependency of the package. To include it, install it into a throwaway venv
that reuses the system torch (pip must not replace torch):

    python3 -m venv --system-site-packages /tmp/trl
    /tmp/trl/bin/pip install --no-deps torchrl==0.14.1 tensordict==0.14.3 pyvers hoptorch
    /tmp/trl/bin/python benchmarks/buffer.py

torchrl 0.14.1 / tensordict 0.14.3 import fine with torch 2.13.0+cpu this way. If torchrl does
not import, the benchmark says so and times our buffer alone.

Two torchrl variants are timed: `cache_values=False`, the setting an online buffer needs because
episodes keep arriving (trajectory boundaries are recomputed from the `episode` key on every
sample), and `cache_values=True`, its best case for a static buffer.

Measured on the 2-core development machine (torch 2.13 CPU, 1 thread, shared with other jobs,
so three runs of the median of 200 are given as ranges):
    ours                                   0.20-0.38 ms
    torchrl SliceSampler cache_values=False 1.14-1.49 ms  (3.1-7.6x slower)
    torchrl SliceSampler cache_values=True  0.62-0.90 ms  (1.6-4.5x slower; static buffers only)
torchrl's slices were checked to stay inside one episode, like ours. Since the library is slower
even in its best case, and would add two dependencies, the hand-written sampler stays.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tdmpc2.common.buffer import Buffer  # noqa: E402

OBS_DIM, ACT_DIM, EPISODE_ENTRIES = 24, 6, 501


def make_episodes(num_episodes: int, seed: int = 0) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    episodes = []
    for _ in range(num_episodes):
        ep = dict(obs=torch.randn(EPISODE_ENTRIES, OBS_DIM, generator=gen),
                  action=torch.rand(EPISODE_ENTRIES, ACT_DIM, generator=gen) * 2 - 1,
                  reward=torch.rand(EPISODE_ENTRIES, generator=gen),
                  terminated=torch.zeros(EPISODE_ENTRIES))
        for key in ("action", "reward", "terminated"):
            ep[key][0] = float("nan")
        episodes.append(ep)
    return episodes


def median_ms(fn, repeats: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def ours(episodes, horizon: int, batch_size: int):
    buffer = Buffer(capacity=len(episodes) * EPISODE_ENTRIES, horizon=horizon, batch_size=batch_size)
    for ep in episodes:
        buffer.add(ep)
    return buffer.sample


def torchrl_sampler(episodes, horizon: int, batch_size: int, cache_values: bool):
    from tensordict import TensorDict
    from torchrl.data import LazyTensorStorage, ReplayBuffer
    from torchrl.data.replay_buffers.samplers import SliceSampler

    entries = len(episodes) * EPISODE_ENTRIES
    sampler = SliceSampler(num_slices=batch_size, traj_key="episode", truncated_key=None,
                           strict_length=True, cache_values=cache_values)
    rb = ReplayBuffer(storage=LazyTensorStorage(entries), sampler=sampler,
                      batch_size=batch_size * (horizon + 1))
    for i, ep in enumerate(episodes):
        td = TensorDict({**ep, "episode": torch.full((EPISODE_ENTRIES,), i)}, batch_size=[EPISODE_ENTRIES])
        rb.extend(td)

    def sample():
        td = rb.sample().view(batch_size, horizon + 1).permute(1, 0)  # time-major
        return (td["obs"], td["action"][1:], td["reward"][1:].unsqueeze(-1),
                td["terminated"][1:].unsqueeze(-1), None)

    return sample


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--horizon", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    episodes = make_episodes(args.episodes)
    print(f"torch {torch.__version__}, {args.threads} thread(s), B={args.batch_size}, H={args.horizon}, "
          f"{args.episodes * EPISODE_ENTRIES:,} stored entries, median of {args.repeats}")
    base = median_ms(ours(episodes, args.horizon, args.batch_size), args.repeats)
    print(f"  {'ours (tdmpc2.common.buffer)':<40} {base:8.3f} ms   1.00x")
    try:
        import torchrl
    except Exception as e:  # noqa: BLE001 - report any import failure, then carry on
        print(f"  torchrl not importable ({type(e).__name__}: {e}); timed our buffer only.")
        return
    for cache in (False, True):
        name = f"torchrl {torchrl.__version__} SliceSampler cache={cache}"
        t = median_ms(torchrl_sampler(episodes, args.horizon, args.batch_size, cache), args.repeats)
        print(f"  {name:<40} {t:8.3f} ms  {t / base:5.2f}x ours")


if __name__ == "__main__":
    main()
