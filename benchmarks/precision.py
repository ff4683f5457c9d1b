"""Learning check for `matmul_precision=medium`: does TD-MPC2 learn the same with bfloat16 matmuls?

`medium` rounds the inputs of every float32 matmul in act() and update() to bfloat16 and sums in
float32 (oneDNN on AMX / AVX512-BF16 CPUs): act and update run 1.6-2x faster at model size 1
(`benchmarks/speed.py --precision medium`). Issue 12 allows a lower precision only where a learning
check shows the same returns; this is that check.

Both arms are plain TD-MPC2 with the teaching study's settings (`benchmarks/teaching.py`: model
size 1, 128 samples x 3 iterations, 16 elites, 24 policy trajectories, evaluation every 1k agent
steps on 5 seeded episodes), 10k agent steps, differing only in `matmul_precision`:
  high     float32 matmuls (the default; on CPU the same as highest). These are the teaching
           study's TD-MPC2 runs: same work dirs, so each run is trained once for both studies.
  medium   bfloat16 inputs, float32 accumulation.

    python benchmarks/precision.py --jobs 1                       # cartpole-swingup, seeds 1-3
    python benchmarks/precision.py --summarise-only

Runs resume after a kill (resume.pt every 1k steps). Printed and written to results/precision/:
the learned planner's return per evaluation (IQM over seeds with a 95% bootstrap interval), the
area under each curve, and each run's training wall time (a noisy figure on a shared machine).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _runs import ROOT, aligned, launch, read_eval, work_dir  # noqa: E402
from teaching import COMMON, area, iqm_interval  # noqa: E402

STEPS = 10000
ARMS = {"high": ("tdmpc2", dict(hybrid_mpc=False)),
        "medium": ("tdmpc2-medium", dict(hybrid_mpc=False, matmul_precision="medium"))}


def runs_for(tasks, seeds, arms) -> list[dict]:
    return [dict(name=ARMS[arm][0], task=task, seed=seed, steps=STEPS, **COMMON, **ARMS[arm][1])
            for task in tasks for seed in seeds for arm in arms]


def summarise(log_dir, tasks, seeds, out_dir):
    import pandas as pd

    rows, auc_rows = [], []
    for task in tasks:
        for arm, (name, _) in ARMS.items():
            frames = [read_eval(work_dir(log_dir, task, seed, name)) for seed in seeds]
            frames = [(s, f) for s, f in zip(seeds, frames) if f is not None]
            if not frames:
                continue
            found = aligned([f for _, f in frames], "learned_episode_reward")
            if found is None:
                continue
            common, values = found
            point, low, high = iqm_interval(values)
            for i, step in enumerate(common):
                rows.append(dict(task=task, precision=arm, step=int(step), env_step=2 * int(step), iqm=point[i],
                                 ci_low=low[i], ci_high=high[i], seeds=" ".join(str(s) for s, _ in frames),
                                 per_seed=" ".join(f"{v:.1f}" for v in values[:, i])))
            if len(common) > 1:
                a_point, a_low, a_high = iqm_interval(area(np.asarray(common), values)[:, None])
                hours = [float(f.elapsed_time.iloc[-1]) / 3600 for _, f in frames]
                auc_rows.append(dict(task=task, precision=arm, up_to_step=int(common[-1]), auc=a_point[0],
                                     ci_low=a_low[0], ci_high=a_high[0], seeds=len(frames),
                                     wall_hours=" ".join(f"{h:.2f}" for h in hours)))
    if not rows:
        print("no evaluations yet (see the runs' .log files)")
        return
    os.makedirs(out_dir, exist_ok=True)
    table, auc = pd.DataFrame(rows), pd.DataFrame(auc_rows)
    table.to_csv(os.path.join(out_dir, "precision.csv"), index=False)
    auc.to_csv(os.path.join(out_dir, "precision_auc.csv"), index=False)
    print("learned planner return, IQM over seeds [95% CI] (per seed)")
    for r in rows:
        print(f"  {r['task']:<18}{r['precision']:<8}{r['step']:>6}: {r['iqm']:7.1f} [{r['ci_low']:.1f}, "
              f"{r['ci_high']:.1f}]  ({r['per_seed']}; seeds {r['seeds']})")
    print("area under the curve (mean return over training), IQM [95% CI]; training wall hours per seed")
    for r in auc_rows:
        print(f"  {r['task']:<18}{r['precision']:<8} up to {r['up_to_step']:>6}: {r['auc']:7.1f} "
              f"[{r['ci_low']:.1f}, {r['ci_high']:.1f}]  {r['wall_hours']} h")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["cartpole-swingup"])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=["medium"],
                   help="arms to train (the high arm is the teaching study's TD-MPC2 runs)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--log-dir", default=os.path.join(ROOT, "logs", "teaching"))
    p.add_argument("--out", default=os.path.join(ROOT, "results", "precision"))
    p.add_argument("--summarise-only", action="store_true", help="read the logs, launch nothing")
    a = p.parse_args()
    if not a.summarise_only:
        launch(runs_for(a.tasks, a.seeds, a.arms), a.log_dir, a.jobs, checkpoint_freq=1000)
    summarise(a.log_dir, a.tasks, a.seeds, a.out)


if __name__ == "__main__":
    main()
