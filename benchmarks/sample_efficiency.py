"""Sample efficiency of hybrid planning against plain TD-MPC2 on the same seeds and budget.

Trains, for every task and seed, HybridTDMPC2 (linear schedule from max_classical_horizon to 0
over the whole budget) and plain TD-MPC2 (hybrid_mpc=false) with identical settings, then prints
the eval return at fixed step counts: the hybrid planner, the hybrid agent's learned-only planner
(H_c = 0, same episodes) and TD-MPC2, in agent steps and env steps (x2), next to TD-MPC2's
published reference at 100k env steps (shared spec, table 11.1).

CPU default: model size 1, cartpole-balance and pendulum-swingup, 10k agent steps, 1 seed.
GPU (more): --tasks cartpole-swingup walker-walk cheetah-run --steps 50000 --size 5 --device cuda

    python benchmarks/sample_efficiency.py --jobs 2
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _runs import launch, read_eval, work_dir  # noqa: E402

REFERENCE_100K = {"cartpole-balance": 997.8, "cartpole-swingup": 839.4, "pendulum-swingup": 724.0,
                  "walker-walk": 961.9, "cheetah-run": 519.1, "walker-stand": 981.2, "mw-reach": 0.633}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["cartpole-balance", "pendulum-swingup"])
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--steps", type=int, default=10_000, help="agent steps per run")
    p.add_argument("--size", type=int, default=1)
    p.add_argument("--eval-freq", type=int, default=2_500)
    p.add_argument("--eval-episodes", type=int, default=3)
    p.add_argument("--max-classical-horizon", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--log-dir", default="logs/sample_efficiency")
    p.add_argument("--extra", nargs="*", default=[], help="more key=value overrides for every run")
    a = p.parse_args()
    extra = dict(kv.split("=", 1) for kv in a.extra)
    runs = []
    for task in a.tasks:
        for seed in a.seeds:
            common = dict(task=task, seed=seed, steps=a.steps, model_size=a.size, eval_freq=a.eval_freq,
                          eval_episodes=a.eval_episodes, device=a.device, **extra)
            runs.append(dict(name=f"hybrid-s{seed}", hybrid_mpc=True, transition_schedule="linear",
                             transition_steps=a.steps, max_classical_horizon=a.max_classical_horizon, **common))
            runs.append(dict(name=f"tdmpc2-s{seed}", hybrid_mpc=False, **common))
    launch(runs, a.log_dir, a.jobs)

    print(f"\neval return (mean over seeds {a.seeds}); steps in agent steps (env steps = 2x)")
    for task in a.tasks:
        print(f"\n{task}  (TD-MPC2 reference at 100k env steps: {REFERENCE_100K.get(task, 'n/a')})")
        print(f"{'step':>8}{'env_step':>10}{'H_c':>5}{'hybrid':>10}{'learned-only':>14}{'TD-MPC2':>10}")
        frames = {kind: mean_over_seeds(a.log_dir, task, a.seeds, kind) for kind in ("hybrid", "tdmpc2")}
        h, t = frames["hybrid"], frames["tdmpc2"]
        if h is None and t is None:
            print("  no results (see the runs' .log files)")
            continue
        steps = sorted(set(h.index if h is not None else []) | set(t.index if t is not None else []))
        for step in steps:
            hc = int(h.loc[step, "classical_horizon"]) if h is not None and step in h.index else 0
            print(f"{step:>8}{2 * step:>10}{hc:>5}{cell(h, step, 'episode_reward'):>10}"
                  f"{cell(h, step, 'learned_episode_reward'):>14}{cell(t, step, 'episode_reward'):>10}")


def mean_over_seeds(log_dir, task, seeds, kind):
    tables = [read_eval(work_dir(log_dir, task, s, f"{kind}-s{s}")) for s in seeds]
    tables = [t.set_index("step") for t in tables if t is not None]
    if not tables:
        return None
    return sum(t.select_dtypes("number") for t in tables) / len(tables)


def cell(df, step, column) -> str:
    if df is None or step not in df.index or column not in df:
        return "-"
    return f"{df.loc[step, column]:.1f}"


if __name__ == "__main__":
    main()
