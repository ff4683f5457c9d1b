"""Short learning check of plain TD-MPC2: trains and prints the eval curve.

CPU default: cartpole-balance, model size 1, 10k agent steps (20k env steps), evaluated every
1k steps. On a GPU: --tasks cartpole-swingup walker-walk --steps 100000 --size 5 --device cuda,
compared with the spec's reference table (TD-MPC2 at 100k and 200k env steps).

    python benchmarks/learning.py
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _runs import launch, read_eval  # noqa: E402

REFERENCE = {  # TD-MPC2 5M, mean of 3 seeds, env steps (spec 11.1): 100k, 200k
    "cartpole-balance": (997.8, 995.6), "cartpole-swingup": (839.4, 871.9), "walker-walk": (961.9, 973.4),
    "pendulum-swingup": (724.0, 824.5), "cheetah-run": (519.1, 614.4)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["cartpole-balance"])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--size", type=int, default=1)
    p.add_argument("--eval-freq", type=int, default=1_000)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--log-dir", default="logs/learning")
    a = p.parse_args()
    runs = [dict(name="tdmpc2", task=t, seed=a.seed, steps=a.steps, model_size=a.size, eval_freq=a.eval_freq,
                 eval_episodes=a.eval_episodes, device=a.device, hybrid_mpc=False) for t in a.tasks]
    launch(runs, a.log_dir, a.jobs)
    for task in a.tasks:
        df = read_eval(os.path.join(a.log_dir, task, str(a.seed), "tdmpc2"))
        ref = REFERENCE.get(task)
        print(f"\n{task}: reference TD-MPC2 at 100k / 200k env steps: {ref}")
        if df is None:
            print("  no eval.csv (see the run's .log)")
            continue
        for _, r in df.iterrows():
            print(f"  step {int(r['step']):>7}  env_step {int(r['env_step']):>7}  return {r['episode_reward']:8.1f}")


if __name__ == "__main__":
    main()
