"""The hybrid planner against its two halves, planner only (no training), full episodes.

    python benchmarks/hybrid_planner.py                          # untrained agent, 5 tasks x 2 seeds
    python benchmarks/hybrid_planner.py --checkpoint logs/cartpole-balance/1/bench_ckpt/models/final.pt \\
        --tasks cartpole-balance --out results/hybrid_planner_trained.csv

One full episode (eval mode, the same seeded reset for every arm) per task, seed and arm:

  classical         the classical solver alone in receding horizon over T_c (per-task defaults),
                    warm-started by shifting: exactly the hybrid's classical half
  learned           TD-MPC2's MPPI over the learned model (H_c = 0)
  hybrid-<H_c>      the hybrid planner at H_c with the bridge at w = 1 (default: H_c in 1, 3, 10)
  hybrid-<H_c>-w0   the hybrid planner at H_c without the bridge (w = 0, the first version's value)
With --checkpoint (a trained agent) the arms are classical, learned, hybrid-3-w0 and
hybrid-3-adaptive: w = 1 - trust, the trust computed by tdmpc2.hand_over's ramp (no smoothing)
from this benchmark's own learned-only / classical returns on the same task and seed.

Model size 1, an untrained agent seeded by the benchmark seed (or the checkpoint's weights); every
arm uses the same lighter planner (--num-samples x --iterations, default 128 x 3, 24 policy
trajectories, num_samples / 8 simulated prefixes per iteration). Rows are appended to --out as soon as an episode ends and rows already
there are skipped, so a killed run continues where it stopped. Targets (untrained): hybrid >=
0.95 x classical on every task and hybrid >= learned.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

TASKS = ["cartpole-balance", "cartpole-swingup", "pendulum-swingup", "reacher-easy", "walker-stand"]
FIELDS = ["task", "seed", "arm", "classical_horizon", "bridge_weight", "plan_horizon", "solver", "return",
          "ms_per_step", "chose_nominal", "num_samples", "iterations", "model_size", "agent", "load"]


def make_agent(task, seed, args, checkpoint=None, **overrides):
    from tdmpc2.config import load_config
    from tdmpc2.envs import make_env
    from tdmpc2.hybrid_tdmpc2 import HybridTDMPC2

    cfg = load_config(task=task, seed=seed, model_size=1, device="cpu", num_samples=args.num_samples,
                      iterations=args.iterations, hybrid_prefix_samples=max(args.num_samples // 8, 1), mujoco_threads=1,
                      transition_schedule="constant", **overrides)
    env = make_env(cfg)
    torch.manual_seed(seed)
    agent = HybridTDMPC2(cfg, env)
    if checkpoint:
        agent.load(checkpoint)
    return agent, env


def run_episode(agent, env, seed, act):
    """Return, ms per step and the share of steps at which the nominal was executed."""
    obs, done, total, times, nominal, t = env.reset(seed=seed), False, 0.0, [], 0, 0
    torch.manual_seed(seed)
    while not done:
        start = time.perf_counter()
        action = act(obs, t)
        times.append(time.perf_counter() - start)
        info = agent.hybrid.last_info if agent.hybrid is not None else None
        nominal += int(bool(info is not None and info.chose_nominal))
        obs, reward, done, _ = env.step(action)
        total, t = total + float(reward), t + 1
    return total, 1e3 * float(np.median(times)), nominal / t


def classical_arm(task, seed, args, checkpoint):
    from tdmpc2.classical.receding import RecedingHorizon

    agent, env = make_agent(task, seed, args, checkpoint, hybrid_mpc=True, max_classical_horizon=1)
    hm = agent.hybrid
    controller = RecedingHorizon(hm.solver, hm.interface, hm.plan_horizon)

    def act(obs, t):
        if t == 0:
            controller.reset()
        return torch.as_tensor(controller.plan().actions[0], dtype=torch.float32)

    ret, ms, _ = run_episode(agent, env, seed, act)
    return dict(classical_horizon=0, bridge_weight=float("nan"), plan_horizon=hm.plan_horizon,
                solver=agent.cfg.classical_algorithm, ret=ret, ms=ms, nominal=float("nan"))


def planner_arm(task, seed, args, checkpoint, Hc, weight):
    hybrid = Hc > 0
    agent, env = make_agent(task, seed, args, checkpoint, hybrid_mpc=hybrid, max_classical_horizon=max(Hc, 1),
                            bridge_weight=weight)
    ret, ms, nominal = run_episode(agent, env, seed, lambda obs, t: agent.act(obs, t0=t == 0, eval_mode=True))
    return dict(classical_horizon=Hc, bridge_weight=weight if hybrid else 0.0,
                plan_horizon=agent.cfg.classical_plan_horizon if hybrid else 0,
                solver=agent.cfg.classical_algorithm if hybrid else "", ret=ret, ms=ms,
                nominal=nominal if hybrid else float("nan"))


def adaptive_weight(done, task, seed, cfg_low=0.5, cfg_high=0.9):
    from tdmpc2.hand_over import trust_ratio, trust_target

    learned, classical = done.get((task, seed, "learned")), done.get((task, seed, "classical"))
    if learned is None or classical is None:
        raise RuntimeError("the adaptive arm needs the learned and classical arms of the same task and seed first")
    return round(1.0 - trust_target(trust_ratio(learned, classical), cfg_low, cfg_high), 3)


def arms(args):
    if args.checkpoint:
        return ["classical", "learned", "hybrid-3-w0", "hybrid-3-adaptive"]
    return ["classical", "learned"] + [f"hybrid-{h}" for h in args.horizons] + [f"hybrid-{max(args.horizons)}-w0"]


def read_done(path):
    if not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        return {(r["task"], int(r["seed"]), r["arm"]): float(r["return"]) for r in csv.DictReader(f)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--horizons", nargs="+", type=int, default=[1, 3, 10])
    parser.add_argument("--num-samples", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--checkpoint", default=None, help="a trained agent's checkpoint (model size 1)")
    parser.add_argument("--out", default="results/hybrid_planner.csv")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    done = read_done(args.out)
    new_file = not os.path.exists(args.out)
    with open(args.out, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new_file:
            writer.writeheader()
        for seed in args.seeds:
            for task in args.tasks:
                for arm in arms(args):
                    if (task, seed, arm) in done:
                        continue
                    if arm == "classical":
                        row = classical_arm(task, seed, args, args.checkpoint)
                    elif arm == "learned":
                        row = planner_arm(task, seed, args, args.checkpoint, 0, 0.0)
                    else:
                        parts = arm.split("-")
                        weight = (0.0 if parts[-1] == "w0" else adaptive_weight(done, task, seed)
                                  if parts[-1] == "adaptive" else 1.0)
                        row = planner_arm(task, seed, args, args.checkpoint, int(parts[1]), weight)
                    done[(task, seed, arm)] = row["ret"]
                    writer.writerow(dict(task=task, seed=seed, arm=arm, classical_horizon=row["classical_horizon"],
                                         bridge_weight=row["bridge_weight"], plan_horizon=row["plan_horizon"],
                                         solver=row["solver"], **{"return": round(row["ret"], 2)},
                                         ms_per_step=round(row["ms"], 1), chose_nominal=round(row["nominal"], 3),
                                         num_samples=args.num_samples, iterations=args.iterations, model_size=1,
                                         agent="trained" if args.checkpoint else "untrained",
                                         load=round(os.getloadavg()[0], 1)))
                    f.flush()
                    print(f"{task:20s} seed {seed} {arm:18s} return {row['ret']:7.1f}  {row['ms']:7.1f} ms/step  "
                          f"w={row['bridge_weight']}", flush=True)
    summarize(args.out)


def summarize(path):
    """Mean return per task and arm, and the targets."""
    import pandas as pd

    df = pd.read_csv(path)
    table = df.pivot_table(index="task", columns="arm", values="return", aggfunc="mean")
    print(table.round(1).to_string())
    if "classical" in table:
        hybrid_cols = [c for c in table.columns if c.startswith("hybrid-") and not c.endswith("w0")]
        for col in hybrid_cols:
            ratio = table[col] / table["classical"].clip(lower=1e-9)
            print(f"{col}: hybrid / classical min {ratio.min():.3f}; >= learned on "
                  f"{int((table[col] >= table['learned']).sum())}/{len(table)} tasks")


if __name__ == "__main__":
    main()
