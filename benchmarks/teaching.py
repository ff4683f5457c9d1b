"""Does the simulator teach the learner? An ablation of `tdmpc2.teaching` against plain TD-MPC2.

Every arm trains at model size 1 with one lighter planner for all (128 samples x 3 iterations,
16 elites, 24 policy trajectories, 16 simulated prefixes per iteration), evaluates every 1,000
agent steps on 5 seeded episodes (the same episodes for every arm of a seed) and logs three
returns: the arm's own planner, the learned-only planner (H_c = 0) and the policy prior alone.
Hybrid arms hand over linearly from H_c = 10 to 0 over the first 5,000 agent steps.

Arms (each adds to the one before, except `tdmpc2` and `hybrid`):
  tdmpc2    plain TD-MPC2 (hybrid_mpc=false)
  hybrid    hybrid planning as before issue 10
  seeding   + classical seed episodes + expert oversampling (expert_fraction 0.5, decaying with trust)
  distill   + planner distillation into the policy prior (distill_coef 1, decaying with trust)
            and 250 behaviour-cloning updates after the pre-training burst
  handover  + learner hand-over episodes (p = 0.5) with 20% of their states relabelled
  branches  + simulated branches (tdmpc2.branches): every step, 3 uniform-random actions simulated
            from the live state; a quarter of every batch comes from these branches
  bound     + return lower bounds on every stored transition's Q target (return_bound=all)
  utd3      + three gradient updates per agent step after pre-training (updates_per_step=3)
  tdmpc2-utd3  plain TD-MPC2 with three updates per agent step (the control of utd3)
  elites       utd3 + elite branches: after pre-training, one more branch a step, an elite of the
               learned-only planner's MPPI at the live state simulated on the simulator

Stage 1 (screening): 1 seed, cartpole-swingup, 5k agent steps, the arms up to bound (SCREENED).
Stage 2 (confirmation): 3 seeds, cartpole-swingup and pendulum-swingup, 10k agent steps,
TD-MPC2 and the best arm of stage 1 (--arms).
Stage 3 (screening of later arms against the target): stage 2's tasks and seeds, 5k agent steps
(the target's step). Its summary reads the references from their stage-2 runs, never launching
them: TD-MPC2 to 10k (the bar) and the branches arm to 5k; areas are over 0-5k for every arm
(and 0-10k for TD-MPC2).
Stage 4 (the update-to-data ratio): as stage 3, with the arms utd3 (the bound arm with three
updates per agent step) and tdmpc2-utd3 (plain TD-MPC2 with three); the references are TD-MPC2
to 10k and the bound arm's stage-3 runs.
Stage 5 (elite branches): as stage 4, the arm elites against TD-MPC2 to 10k and utd3 to 5k.
Every summary also reports the gated learned agent (tdmpc2.gate: the planner or the prior alone,
whichever the previous evaluation scored higher), recomputed from each run's logged returns.

    python benchmarks/teaching.py --stage 1 --jobs 2
    python benchmarks/teaching.py --stage 2 --arms tdmpc2 distill --jobs 2
    python benchmarks/teaching.py --stage 3 --jobs 2
    python benchmarks/teaching.py --stage 2 --arms tdmpc2 distill --summarise-only

Runs write resume.pt every 1,000 steps: the same command continues killed runs and skips
finished ones, so a study can span sessions. Logs go to --log-dir (not in git); the summary
(IQM over seeds with a 95% stratified-bootstrap interval at every evaluation, and the area under
each curve) is written to results/teaching/ as CSV and PNG. Every summary first copies each run's
evaluations (eval.csv's step and return columns) to <archive>/<task>/<seed>/<run>.csv (default
results/teaching/curves/), which is committed: a run whose log is absent (a new checkout) is read
from there, so a later stage's summary can still use an earlier session's runs.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _runs import ROOT, aligned, cli_args, launch, read_eval, work_dir  # noqa: E402

COMMON = dict(model_size=1, num_samples=128, iterations=3, num_elites=16, num_pi_trajs=24,
              hybrid_prefix_samples=16, mujoco_threads=1, eval_freq=1000, eval_episodes=5, device="cpu")
HYBRID = dict(hybrid_mpc=True, transition_schedule="linear", transition_steps=5000, max_classical_horizon=10)
SEEDING = dict(HYBRID, seed_policy="classical", expert_fraction=0.5, expert_schedule="trust")
DISTILL = dict(SEEDING, distill_coef=1.0, distill_schedule="trust", distill_bc_updates=250)
ARMS = {
    "tdmpc2": dict(hybrid_mpc=False),
    "hybrid": HYBRID,
    "seeding": SEEDING,
    "distill": DISTILL,
    "handover": dict(DISTILL, learner_episode_prob=0.5, relabel_fraction=0.2),
}
ARMS["branches"] = dict(ARMS["handover"], branch_prob=1.0, branch_share=0.25)
ARMS["bound"] = dict(ARMS["branches"], return_bound="all")
# three updates per agent step after pre-training: by 5k agent steps (2,500 seed steps, 2,500
# updates of pre-training, then 2,500 steps) as many gradient updates as TD-MPC2's 10k (7,500
# steps after the same pre-training); the plain TD-MPC2 control asks whether the updates alone do it
ARMS["utd3"] = dict(ARMS["bound"], updates_per_step=3)
ARMS["tdmpc2-utd3"] = dict(hybrid_mpc=False, updates_per_step=3)
# utd3 plus one elite branch a step after pre-training: the learned-only planner's own elite
# candidates simulated from the live state (tdmpc2.branches), beside the uniform branches
ARMS["elites"] = dict(ARMS["utd3"], branch_elite_prob=1.0)
SCREENED = ["tdmpc2", "hybrid", "seeding", "distill", "handover", "branches", "bound"]  # stage 1's arms; later
# arms are screened by the later stages, on three seeds
STAGES = {1: dict(tasks=["cartpole-swingup"], seeds=[1], steps=5000, arms=SCREENED),
          2: dict(tasks=["cartpole-swingup", "pendulum-swingup"], seeds=[1, 2, 3], steps=10000,
                  arms=["tdmpc2"], summary_arms=["tdmpc2", "branches"]),
          3: dict(tasks=["cartpole-swingup", "pendulum-swingup"], seeds=[1, 2, 3], steps=5000,
                  arms=["bound"], references={"tdmpc2": 10000, "branches": 10000}),
          4: dict(tasks=["cartpole-swingup", "pendulum-swingup"], seeds=[1, 2, 3], steps=5000,
                  arms=["utd3", "tdmpc2-utd3"], references={"tdmpc2": 10000, "bound": 5000}),
          5: dict(tasks=["cartpole-swingup", "pendulum-swingup"], seeds=[1, 2, 3], steps=5000,
                  arms=["elites"], references={"tdmpc2": 10000, "utd3": 5000})}
METRICS = {"learned": "learned_episode_reward", "prior": "prior_episode_reward", "own": "episode_reward",
           "gated": "gated_episode_reward"}
SUMMARY_METRICS = ("learned", "prior", "gated")
TITLES = {"learned": "learned-only planner", "prior": "policy prior", "gated": "gated learned agent"}


def run_name(arm: str, steps: int) -> str:
    """The work dir's exp_name. The TD-MPC2 arm always trains the stage-2 budget (10k): its first
    5k steps are those of a 5k run, so stage 1 reads them from the same run. Other arms: the arm
    (stage 1, 5k) or arm-10k (stage 2)."""
    if arm == "tdmpc2" or steps == STAGES[1]["steps"]:
        return arm
    return f"{arm}-{steps // 1000}k"


def runs_for(tasks, seeds, arms, steps) -> list[dict]:
    """One run per (task, seed, arm)."""
    out = []
    for task in tasks:
        for seed in seeds:
            for arm in arms:
                budget = max(steps, STAGES[2]["steps"]) if arm == "tdmpc2" else steps
                out.append(dict(name=run_name(arm, steps), task=task, seed=seed, steps=budget, **COMMON, **ARMS[arm]))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", type=int, choices=sorted(STAGES), default=1)
    p.add_argument("--arms", nargs="+", choices=list(ARMS), help="default: the stage's arms")
    p.add_argument("--tasks", nargs="+", help="default: the stage's tasks")
    p.add_argument("--seeds", type=int, nargs="+", help="default: the stage's seeds")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--log-dir", default=os.path.join(ROOT, "logs", "teaching"))
    p.add_argument("--out", default=os.path.join(ROOT, "results", "teaching"))
    p.add_argument("--archive", default=os.path.join(ROOT, "results", "teaching", "curves"),
                   help="every run's evaluations, committed; read where a run's log is absent")
    p.add_argument("--summarise-only", action="store_true", help="read the logs, launch nothing")
    p.add_argument("--show", choices=list(ARMS), help="print the training command of this arm and exit")
    a = p.parse_args()
    if a.show:
        print(command_for(a.show))
        return
    stage = STAGES[a.stage]
    tasks, seeds, arms = a.tasks or stage["tasks"], a.seeds or stage["seeds"], a.arms or stage["arms"]
    references = stage.get("references", {})
    if not a.summarise_only:
        launched = [arm for arm in arms if arm not in references]
        launch(runs_for(tasks, seeds, launched, stage["steps"]), a.log_dir, a.jobs, checkpoint_freq=1000)
        # after a launch, summarise the stage's whole set: launching a subset must not narrow the
        # committed summary files to it
        tasks, seeds = _union(stage["tasks"], tasks), _union(stage["seeds"], seeds)
        arms = _union(stage.get("summary_arms", stage["arms"]), arms)
    summarise(a.log_dir, tasks, seeds, list(references) + [arm for arm in arms if arm not in references],
              stage["steps"], a.out, f"stage{a.stage}", references=references, archive=a.archive)


def command_for(arm: str, task: str = "cartpole-swingup") -> str:
    """The CLI command that trains one run of `arm` as the study does (its overrides and the
    common planner settings, without the study's logging keys)."""
    overrides = dict(task=task, steps=STAGES[3]["steps"], **COMMON, **ARMS[arm])
    return " ".join(["python -m tdmpc2.train_hybrid", *cli_args(overrides)])


def _union(first: list, second: list) -> list:
    return list(first) + [x for x in second if x not in first]


class Runs:
    """Where a study's evaluations are read: a run's log (<log_dir>/<task>/<seed>/<run>/eval.csv),
    else its archived copy (<archive>/<task>/<seed>/<run>.csv, committed under results/)."""

    def __init__(self, log_dir: str, archive: str | None = None):
        self.log_dir, self.archive = log_dir, archive

    def _archived(self, task, seed, name) -> str | None:
        return None if self.archive is None else os.path.join(self.archive, task, str(seed), f"{name}.csv")

    def eval(self, task, seed, name) -> pd.DataFrame | None:
        """The log's evaluations, or the archived ones where they reach further (no log, or a run
        restarted from scratch in a new checkout)."""
        frame = read_eval(work_dir(self.log_dir, task, seed, name))
        path = self._archived(task, seed, name)
        if path is not None and os.path.exists(path):
            archived = pd.read_csv(path)
            if frame is None or "step" not in frame or archived.step.max() > frame.step.max():
                return archived
        return frame

    def keep(self, task, seed, name) -> bool:
        """Copy a run's logged evaluations (step and return columns) to the archive, unless the
        archive already holds a curve that reaches further (a restarted run must not shorten it)."""
        frame, path = read_eval(work_dir(self.log_dir, task, seed, name)), self._archived(task, seed, name)
        if frame is None or path is None or "step" not in frame:
            return False
        frame = frame.drop_duplicates("step", keep="last").sort_values("step")
        if os.path.exists(path) and pd.read_csv(path).step.max() > frame.step.max():
            return False
        os.makedirs(os.path.dirname(path), exist_ok=True)
        frame[["step", *[c for c in METRICS.values() if c in frame]]].assign(origin="log").to_csv(path, index=False)
        return True


def curves(runs: Runs, task, seeds, arm, metric, max_step, run_steps=None) -> tuple[np.ndarray, np.ndarray] | None:
    """(steps (S,), returns (seeds, S)) at the evaluations every listed seed reached, <= max_step,
    from the runs of `run_steps` agent steps (default max_step)."""
    frames = [with_gated(runs.eval(task, seed, run_name(arm, run_steps or max_step))) for seed in seeds]
    frames = [f for f in frames if f is not None and METRICS[metric] in f]
    if len(frames) < len(seeds):
        return None
    found = aligned(frames, METRICS[metric], max_step)
    return None if found is None else (np.asarray(found[0]), found[1])


def with_gated(frame):
    """A run's evaluations with the gated learned agent's return (tdmpc2.gate): the logged column
    of a run with learned_gate=prior, else the gate's rule (margin 0) over its logged planner and
    prior returns. The gate changes no training, so both are the same agent's curve."""
    if frame is None or METRICS["gated"] in frame or METRICS["prior"] not in frame:
        return frame
    from tdmpc2.gate import gated_returns

    frame = frame.drop_duplicates("step", keep="last").sort_values("step").copy()
    frame[METRICS["gated"]] = gated_returns(frame[METRICS["learned"]], frame[METRICS["prior"]])
    return frame


def iqm_interval(values: np.ndarray, reps: int = 2000):
    """IQM over seeds (rows) per column with a 95% stratified-bootstrap interval (rliable)."""
    import scipy.stats

    from tdmpc2.aggregate_metrics import interval_estimates

    stat = lambda col: scipy.stats.trim_mean(col, 0.25, axis=0)  # noqa: E731
    if len(values) == 1:
        return values[0], values[0], values[0]
    return interval_estimates([values], stat, reps=reps)


def area(steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-seed area under the curve over [0, last step], divided by its length: the mean return
    over training (trapezoids between evaluations)."""
    width = np.diff(steps)
    return ((values[:, 1:] + values[:, :-1]) / 2 * width).sum(axis=1) / (steps[-1] - steps[0])


def summarise(log_dir, tasks, seeds, arms, steps, out_dir, tag, references=None, archive=None):
    """The IQM table, areas, target check and plot. Arms in `references` (arm -> the agent steps
    of the runs to read) come from an earlier stage's runs: TD-MPC2 to 10k (the target's bar), the
    others to `steps`; every area is over 0-`steps`, plus TD-MPC2's over its whole curve. The
    logged runs' evaluations are archived first, under `archive` (default <out_dir>/curves; class Runs)."""
    references = references or {}
    runs = Runs(log_dir, archive or os.path.join(out_dir, "curves"))
    kept = sum(runs.keep(task, seed, run_name(arm, references.get(arm) or steps))
               for task in tasks for seed in seeds for arm in arms)
    if kept:
        print(f"archived the evaluations of {kept} logged runs under {runs.archive}")
    rows, auc_rows = tabulate(runs, tasks, seeds, arms, steps, references)
    report_partial(runs, tasks, seeds, arms, steps)
    if not rows:
        print("no evaluations yet (see the runs' .log files)")
        return
    os.makedirs(out_dir, exist_ok=True)
    table, auc = pd.DataFrame(rows), pd.DataFrame(auc_rows)
    table.to_csv(os.path.join(out_dir, f"{tag}.csv"), index=False)
    auc.to_csv(os.path.join(out_dir, f"{tag}_auc.csv"), index=False)
    for metric in ("learned", "gated"):
        pivot = table[table.metric == metric].pivot_table(index=["task", "step"], columns="arm", values="iqm")
        print(f"\n{TITLES[metric]}, IQM over seeds {seeds} (agent steps; env steps = 2x)")
        print(pivot.round(1).to_string())
    print("\narea under the curve (mean return over training), IQM [95% CI]")
    for r in auc_rows:
        print(f"  {r['task']:<18}{r['arm']:<13}{r['metric']:<8} up to {r['up_to_step']:>6}: "
              f"{r['auc']:7.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}]")
    target_check(table, tasks, arms)
    plot(table, tasks, arms, os.path.join(out_dir, f"{tag}.png"))


def tabulate(runs: Runs, tasks, seeds, arms, steps, references) -> tuple[list[dict], list[dict]]:
    """The rows of the IQM table (every evaluation every seed reached) and of the area table."""
    rows, auc_rows = [], []
    for task in tasks:
        for arm in arms:
            for metric in SUMMARY_METRICS:
                max_step = references.get(arm, steps) if arm == "tdmpc2" else steps  # the bar runs to its own end
                found = curves(runs, task, seeds, arm, metric, max_step, references.get(arm))
                if found is None:
                    continue
                x, values = found
                point, low, high = iqm_interval(values)
                for i, step in enumerate(x):
                    rows.append(dict(task=task, arm=arm, metric=metric, step=int(step), env_step=2 * int(step),
                                     iqm=point[i], ci_low=low[i], ci_high=high[i], seeds=len(values),
                                     per_seed=" ".join(f"{v:.1f}" for v in values[:, i])))
                ends = sorted({int(x[-1]), *([steps] if references and x[-1] > steps else [])})
                for end in ends:
                    keep = x <= end
                    if keep.sum() < 2:
                        continue
                    a_point, a_low, a_high = iqm_interval(area(x[keep], values[:, keep])[:, None])
                    auc_rows.append(dict(task=task, arm=arm, metric=metric, up_to_step=end, auc=a_point[0],
                                         ci_low=a_low[0], ci_high=a_high[0], seeds=len(values)))
    return rows, auc_rows


def report_partial(runs: Runs, tasks, seeds, arms, steps):
    """Per-seed learned-only returns of the arms that not every seed has reached yet (they get no
    IQM row), so a study in progress can be read from its logs."""
    for task in tasks:
        for arm in arms:
            if curves(runs, task, seeds, arm, "learned", steps) is not None:
                continue
            for seed in seeds:
                frame = runs.eval(task, seed, run_name(arm, steps))
                if frame is None or METRICS["learned"] not in frame:
                    continue
                frame = frame.drop_duplicates("step", keep="last")
                values = " ".join(f"{int(s) // 1000}k:{v:.0f}" for s, v in zip(frame.step, frame[METRICS["learned"]]))
                print(f"  partial {task} {arm} seed {seed}: {values}")


def target_check(table, tasks, arms):
    """The issue's target: the learned-only planner of an arm at 5k >= TD-MPC2's at 10k; and the
    same for the gated learned agents (against TD-MPC2's own gated agent at 10k)."""
    for metric in ("learned", "gated"):
        rows = table[table.metric == metric]
        for task in tasks:
            ref = rows[(rows.task == task) & (rows.arm == "tdmpc2") & (rows.step == 10000)]
            if ref.empty:
                continue
            for arm in arms:
                row = rows[(rows.task == task) & (rows.arm == arm) & (rows.step == 5000)]
                if arm != "tdmpc2" and not row.empty:
                    a, b = float(row.iqm.iloc[0]), float(ref.iqm.iloc[0])
                    print(f"  target {task} ({TITLES[metric]}): {arm} at 5k {a:.1f} vs TD-MPC2 at 10k {b:.1f}: "
                          f"{'met' if a >= b else 'not met'}")


def plot(table, tasks, arms, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(SUMMARY_METRICS), len(tasks), figsize=(5 * len(tasks), 10), squeeze=False,
                             sharex=True)
    for col, task in enumerate(tasks):
        for row, metric in enumerate(SUMMARY_METRICS):
            ax = axes[row, col]
            for arm in arms:
                d = table[(table.task == task) & (table.arm == arm) & (table.metric == metric)]
                if d.empty:
                    continue
                color = f"C{arms.index(arm) % 10}"  # one colour per arm in every panel, present or not elsewhere
                ax.plot(d.env_step, d.iqm, marker="o", ms=3, label=arm, color=color)
                ax.fill_between(d.env_step, d.ci_low, d.ci_high, color=color, alpha=0.15)
            ax.set_title(f"{task}: {TITLES[metric]}")
            ax.set_ylabel("return (IQM over seeds, 95% CI)")
            ax.grid(alpha=0.3)
        axes[-1, col].set_xlabel("env steps")
    for ax in axes[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
