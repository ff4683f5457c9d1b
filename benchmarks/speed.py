"""act() and update() speed of the TD-MPC2 agent against the upstream reference, on CPU or GPU.

Prints milliseconds (median of repeats) for model sizes 1 and 5 on cartpole-balance and
cheetah-run at the reference settings (512 samples, 6 iterations, batch 256, horizon 3), a matmul
throughput calibration measured in the same run (interleaved with the timings, so a busy machine
slows both), the FLOPs of one act() counted by torch's FlopCounterMode, and the achieved
fraction of the calibrated rate.

Reference (upstream TD-MPC2 on this kind of CPU, 1 thread, idle, calibration 103 GFLOP/s):
size 1: act 251 ms, update 185 ms; size 5: act 758 ms, update 686 ms. Speedup is reported as
reference_ms * (103 / our calibration) / our_ms, i.e. both normalised to the same matmul rate.

    python benchmarks/speed.py                  # 1 thread, all four settings
    python benchmarks/speed.py --threads 2 --sizes 5 --tasks cheetah-run
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

REFERENCE = {1: (251.0, 185.0), 5: (758.0, 686.0)}  # act, update ms at 103 GFLOP/s
REFERENCE_GFLOPS = 103.0


def calibrate(n: int = 1024, repeats: int = 7) -> float:
    """Median GFLOP/s of an n x n float32 matmul (the better of n and 2n, i.e. near peak)."""
    best = 0.0
    for size in (n, 2 * n):
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
        best = max(best, 2 * size ** 3 / statistics.median(times) / 1e9)
    return best


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def act_flops(agent, obs) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        agent.act(obs, t0=False)
    return counter.get_total_flops()


class _Batch:
    def __init__(self, cfg):
        H, B, S, A = cfg.horizon, cfg.batch_size, cfg.obs_shape["state"][0], cfg.action_dim
        self.data = (torch.randn(H + 1, B, S), torch.rand(H, B, A) * 2 - 1, torch.rand(H, B, 1),
                     torch.zeros(H, B, 1), None)

    def sample(self):
        return self.data


def run(task: str, size: int, repeats: int) -> dict:
    from tdmpc2.config import load_config
    from tdmpc2.tdmpc2 import TDMPC2

    torch.manual_seed(0)
    cfg = load_config(task=task, model_size=size, device="cpu")
    agent = TDMPC2(cfg)
    obs = torch.randn(cfg.obs_shape["state"][0])
    buffer = _Batch(cfg)
    agent.act(obs, t0=True)
    agent.update(buffer)
    gflops_before = calibrate()
    act_ms = timed(lambda: agent.act(obs), repeats)
    update_ms = timed(lambda: agent.update(buffer), repeats)
    gflops = statistics.mean([gflops_before, calibrate()])
    flops = act_flops(agent, obs)
    return dict(task=task, size=size, act_ms=act_ms, update_ms=update_ms, gflops=gflops, act_gflop=flops / 1e9)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--tasks", nargs="+", default=["cartpole-balance", "cheetah-run"])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); reference normalised from "
          f"{REFERENCE_GFLOPS:.0f} GFLOP/s to this run's calibration")
    header = (f"{'task':<18}{'size':>5}{'calib GF/s':>11}{'act ms':>9}{'act GFLOP':>10}{'% peak':>8}"
              f"{'ref act':>9}{'act x':>7}{'upd ms':>9}{'ref upd':>9}{'upd x':>7}")
    print(header)
    rows = []
    for size in args.sizes:
        for task in args.tasks:
            r = run(task, size, args.repeats)
            norm = REFERENCE_GFLOPS / r["gflops"]
            ref_act, ref_upd = (v * norm for v in REFERENCE[size])
            r.update(act_speedup=ref_act / r["act_ms"], update_speedup=ref_upd / r["update_ms"])
            peak = 100 * r["act_gflop"] / (r["act_ms"] / 1e3) / r["gflops"]
            print(f"{task:<18}{size:>5}{r['gflops']:>11.1f}{r['act_ms']:>9.1f}{r['act_gflop']:>10.2f}"
                  f"{peak:>7.0f}%{ref_act:>9.0f}{r['act_speedup']:>6.2f}x{r['update_ms']:>9.1f}"
                  f"{ref_upd:>9.0f}{r['update_speedup']:>6.2f}x", flush=True)
            rows.append(r)
    print("targets at size 5: act >= 1.5x (aim 2x), update >= 1.3x (aim 1.5x)")
    return rows


if __name__ == "__main__":
    main()
