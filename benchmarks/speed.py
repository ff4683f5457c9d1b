"""act(), update() and training-step speed of the TD-MPC2 agent against the upstream reference.

Prints, for model sizes 1 and 5 on cartpole-balance and cheetah-run at the reference settings
(512 samples, 6 iterations, 64 elites, horizon 3, batch 256), with float32 (`high`) and bfloat16
(`medium`) matmuls timed interleaved step by step (a busy machine slows both alike), in one run:
  * act and update milliseconds (median of repeats, act and update interleaved),
  * their FLOPs (torch's FlopCounterMode) and the fraction of the calibrated matmul rate they run at,
  * the step: act + update + one env step (a real env), the unit a training run pays per agent step,
  * the ratio to the upstream reference, normalised to this run's matmul calibration.
The calibration (float32 matmul GFLOP/s, the better of 1024^2 and 2048^2) is measured before and
after the timings and averaged, so a busy machine slows both alike.

Calibrated reference (upstream TD-MPC2 patched to CPU, 1 thread, idle, calibration 103 GFLOP/s):
size 1: act 251 ms, update 185 ms; size 5: act 758 ms, update 686 ms. A speedup is
reference_ms * (103 / this run's calibration) / our_ms. The step's reference is the reference
act + update plus our own env step (the env is the same DMControl code).

Anchor: upstream and ours measured side by side on one machine (1 thread, torch 2.13.0, runs
interleaved; main before the fused CPU kernels), against which these ratios were checked:
    |              | upstream act | ours act   | x       | upstream update | ours update | x       |
    | model size 1 | 421 ms       | 274-328 ms | 1.3-1.5 | 300-311 ms      | 255-283 ms  | 1.1-1.2 |
    | model size 5 | 1052-1263 ms | 598-735 ms | 1.4-2.1 | 1045-1076 ms    | 694-707 ms  | 1.5     |
On that machine (calibration 85-92 GFLOP/s) this script printed act 0.95-1.14x / update 0.88-0.90x
at size 1 and act 1.47-1.58x / update 1.09-1.15x at size 5: the calibrated reference is the
stricter yardstick (it was measured on an idle machine).

Targets: act >= 2x and update >= 1.5x at sizes 1 and 5, step >= 2x at size 1; act at >= 70% of
the calibrated rate at size 1 and >= 80% at size 5.

    python benchmarks/speed.py                      # 1 thread, all four settings
    python benchmarks/speed.py --threads 2 --sizes 5 --tasks cheetah-run
    python benchmarks/speed.py --compile false      # eager torch (no fused kernels), for A/B
    python benchmarks/speed.py --precisions high    # float32 only
    python benchmarks/speed.py --amx false          # medium through torch's own matmuls, for A/B
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

REFERENCE = {1: (251.0, 185.0), 5: (758.0, 686.0)}  # act, update ms at 103 GFLOP/s
REFERENCE_GFLOPS = 103.0
TARGETS = dict(act=2.0, update=1.5, step=2.0)


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


def flops(fn) -> int:
    """torch's FLOP count of fn, with the AMX kernel off (its ctypes calls are invisible to the
    counter; the products are the same)."""
    from torch.utils.flop_counter import FlopCounterMode

    from tdmpc2.common import amx

    lib, amx._lib = amx._lib, None
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    finally:
        amx._lib = lib
    return counter.get_total_flops()


class _Batch:
    def __init__(self, cfg):
        H, B, S, A = cfg.horizon, cfg.batch_size, cfg.obs_shape["state"][0], cfg.action_dim
        self.data = (torch.randn(H + 1, B, S), torch.rand(H, B, A) * 2 - 1, torch.rand(H, B, 1),
                     torch.zeros(H, B, 1), None)

    def sample(self):
        return self.data


class _Setting:
    """One agent (one matmul precision) with its own env and timings."""

    def __init__(self, task, size, compile_mode, precision):
        from tdmpc2.config import load_config
        from tdmpc2.envs import make_env
        from tdmpc2.tdmpc2 import TDMPC2

        torch.manual_seed(0)
        cfg = load_config(task=task, model_size=size, device="cpu", compile=compile_mode, matmul_precision=precision)
        self.precision, self.agent, self.env = precision, TDMPC2(cfg), make_env(cfg)
        self.obs, self.buffer = self.env.reset(), _Batch(cfg)
        self.agent.act(self.obs, t0=True)
        self.agent.update(self.buffer)
        self.times = dict(act=[], update=[], env=[])

    def step(self, first: bool) -> None:
        """act, env step, update: the order of a training step."""
        t = time.perf_counter()
        action = self.agent.act(self.obs, t0=first)
        t1 = time.perf_counter()
        self.obs, _, done, _ = self.env.step(action)
        t2 = time.perf_counter()
        self.agent.update(self.buffer)
        t3 = time.perf_counter()
        if done:
            self.obs = self.env.reset()
        for key, value in (("act", t1 - t), ("env", t2 - t1), ("update", t3 - t2)):
            self.times[key].append(value)


def run(task: str, size: int, repeats: int, compile_mode, precisions=("high",)) -> list[dict]:
    """Time each precision's agent, the settings interleaved step by step (a busy machine then
    slows them alike), between two calibrations."""
    settings = [_Setting(task, size, compile_mode, p) for p in precisions]
    gflops_before = calibrate()
    for i in range(repeats):
        for setting in settings:
            setting.step(first=i == 0)
    gflops = statistics.mean([gflops_before, calibrate()])
    rows = []
    for s in settings:
        med = {k: statistics.median(v) * 1e3 for k, v in s.times.items()}
        rows.append(dict(task=task, size=size, precision=s.precision, gflops=gflops, act_ms=med["act"],
                         update_ms=med["update"], env_ms=med["env"],
                         act_gflop=flops(lambda: s.agent.act(s.obs)) / 1e9,
                         update_gflop=flops(lambda: s.agent.update(s.buffer)) / 1e9, kernels=s.agent.model._native))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--tasks", nargs="+", default=["cartpole-balance", "cheetah-run"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--precisions", nargs="+", default=["high", "medium"], choices=["highest", "high", "medium"],
                        help="the agent's matmul_precision; high = float32 on CPU, medium = bfloat16 inputs with "
                             "float32 sums (AMX / AVX512-BF16), whose learning check is benchmarks/precision.py")
    parser.add_argument("--compile", default="auto", choices=["auto", "false", "true"],
                        help="the agent's compile key: auto = fused CPU kernels, false = eager torch")
    parser.add_argument("--amx", default="auto", choices=["auto", "false"],
                        help="auto: act() at medium runs its matmuls on AMX tiles where the CPU has them; false: torch's own")
    args = parser.parse_args()
    if args.amx == "false":
        from tdmpc2.common import amx

        amx._tried, amx._lib = True, None  # as on a CPU without AMX
    compile_mode = {"auto": "auto", "false": False, "true": True}[args.compile]
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), compile={args.compile}; reference normalised "
          f"from {REFERENCE_GFLOPS:.0f} GFLOP/s to this run's calibration; '% cal' = achieved / calibrated float32 FLOP rate (above 100% is possible at medium)")
    print(f"{'task':<17}{'size':>4}{'prec':>7}{'cal GF/s':>9}{'act ms':>8}{'GFLOP':>7}{'% cal':>6}{'ref':>6}{'act x':>7}"
          f"{'upd ms':>8}{'GFLOP':>7}{'% cal':>6}{'ref':>6}{'upd x':>7}{'step ms':>8}{'ref':>6}{'step x':>7}")
    rows = []
    for size, task, r in ((s, t, r) for s in args.sizes for t in args.tasks
                          for r in run(t, s, args.repeats, compile_mode, args.precisions)):
        precision = r["precision"]
        norm = REFERENCE_GFLOPS / r["gflops"]
        ref_act, ref_upd = (v * norm for v in REFERENCE[size])
        step_ms, ref_step = r["act_ms"] + r["update_ms"] + r["env_ms"], ref_act + ref_upd + r["env_ms"]
        pct = {k: 100 * r[f"{k}_gflop"] / (r[f"{k}_ms"] / 1e3) / r["gflops"] for k in ("act", "update")}
        r.update(act_x=ref_act / r["act_ms"], update_x=ref_upd / r["update_ms"], step_ms=step_ms,
                 step_x=ref_step / step_ms, act_pct=pct["act"], update_pct=pct["update"])
        print(f"{task:<17}{size:>4}{precision:>7}{r['gflops']:>9.1f}{r['act_ms']:>8.1f}{r['act_gflop']:>7.2f}{pct['act']:>5.0f}%"
              f"{ref_act:>6.0f}{r['act_x']:>6.2f}x{r['update_ms']:>8.1f}{r['update_gflop']:>7.2f}"
              f"{pct['update']:>5.0f}%{ref_upd:>6.0f}{r['update_x']:>6.2f}x{step_ms:>8.1f}{ref_step:>6.0f}"
              f"{r['step_x']:>6.2f}x", flush=True)
        rows.append(r)
    from tdmpc2.common import amx

    kernels = "on" if all(r["kernels"] for r in rows) else "off"
    tiles = "on" if amx.available() and args.threads == 1 and kernels == "on" else "off"
    print(f"fused CPU kernels: {kernels}; AMX bfloat16 matmuls in act() at medium: {tiles}. Targets: act >= {TARGETS['act']}x and update >= {TARGETS['update']}x "
          f"(sizes 1 and 5), step >= {TARGETS['step']}x (size 1); act at >= 70% (size 1) / 80% (size 5) of calibration")
    return rows


if __name__ == "__main__":
    main()
