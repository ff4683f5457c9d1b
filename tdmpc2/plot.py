"""Learning curves of many runs, aggregated over seeds, next to the published reference curves.

    python -m tdmpc2.plot logs/                                   # every run under logs/
    python -m tdmpc2.plot 'logs/walker-walk/*/hyb*' logs/walker-walk/*/default --out plots
    python -m tdmpc2.plot logs/ --tasks walker-walk mw-reach --references tdmpc2 sac

Arguments are log dirs or globs; every directory below them holding an `eval.csv` is a run (its
`config.yaml` gives task, seed, exp_name and hybrid_mpc; without one they come from the path
`<log_dir>/<task>/<seed>/<exp_name>`). Runs are grouped by task and by method = (exp_name,
hybrid_mpc); a group's seeds are averaged.

One figure per task, `<out>/<task>.png` and `.svg` (default out: `plots/`), two panels:
  * left, the return (DMControl: `episode_reward`) or success rate (Meta-World `mw-*`:
    `episode_success`) against ENV steps (`env_step` = 2 x agent steps, the unit of the
    reference curves). Hybrid runs give two curves: the hybrid planner (`episode_reward`) and
    the learned-only planner evaluated on the same episodes (`learned_episode_reward`, same
    colour, dotted, square markers). Plain TD-MPC2 runs give one. Curves are the mean over seeds
    at each evaluation step; the band is the 95% percentile bootstrap confidence interval of that
    mean (2,000 resamples of the seeds, fixed RNG, so plots are reproducible); a step with a
    single seed has no band. Reference results (TD-MPC2, SAC, DreamerV3 from
    `tdmpc2/reference_results/`) are drawn where they were measured: a marker with a 95% CI error
    bar at each of their own evaluation steps inside the plotted range, joined only between
    measured points, never extended to the edge; the legend says so. The x-axis ends at the
    longest of our runs (`--xmax` to change).
  * right, the classical horizon H_c of the hybrid runs over training (train.csv, one row per
    episode; eval.csv when train.csv lacks it).

One aggregate figure over all plotted tasks, `<out>/aggregate.png` and `.svg`
(tdmpc2/aggregate_metrics.py, with rliable; Agarwal et al., NeurIPS 2021). Scores are normalised
to [0, 1] (DMControl return / 1000, Meta-World success). Panels: the IQM against env steps with
95% stratified-bootstrap confidence bands (reference methods as markers with error bars at their
own steps), and at the last env step every curve of ours shares: IQM, mean and optimality gap
with their intervals, and the performance profile (fraction of runs above each score). A curve is
aggregated at the steps where every task was evaluated; a method missing a task is left out (note
on stderr). `--reps` sets the bootstrap resamples (default 2,000). Files: `aggregate.csv` (the
three statistics at every step, per curve), `aggregate_profile.csv` (the profiles).

`<out>/summary.csv` has one row per (task, curve, statistic): for each task and curve the mean
over seeds at the last evaluation of our runs (for a reference curve: its last evaluation at or
before the right end of the x-axis), and for task `aggregate` the IQM, mean and optimality gap at
the step of the aggregate panels. Columns: task, curve, source (ours or reference), statistic,
env_step, tasks, seeds (runs, over all tasks for the aggregate), value, ci_low, ci_high.

Method labels: "hybrid" or "TD-MPC2 (ours)", followed by the exp_name in brackets when it is not
"default"; `key=value` parts shared by every non-default exp_name of a task (e.g. a sweep's fixed
settings) are left out of the labels. No display needed (Agg backend), no wandb.
"""
from __future__ import annotations

import argparse
import glob
import math
import os
import sys
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # headless: must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402

from tdmpc2 import aggregate_metrics as am  # noqa: E402

REFERENCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference_results")
REFERENCE_NAMES = {"tdmpc2": "TD-MPC2 (reference)", "sac": "SAC (reference)",
                   "dreamerv3": "DreamerV3 (reference)", "tdmpc": "TD-MPC (reference)"}
REFERENCE_COLORS = {"tdmpc2": "0.25", "sac": "tab:brown", "dreamerv3": "tab:olive", "tdmpc": "tab:pink"}
RESAMPLES, LEVEL = 2000, 0.95


class PlotError(ValueError):
    """Bad input to the plot command; the message is one sentence."""


@dataclass
class Run:
    work_dir: str
    task: str
    seed: int
    exp_name: str
    hybrid: bool
    eval: pd.DataFrame
    train: pd.DataFrame | None

    @property
    def method(self) -> tuple[str, bool]:
        return self.exp_name, self.hybrid


# ---------------------------------------------------------------- reading runs
def find_run_dirs(patterns: list[str]) -> list[str]:
    """Directories holding an eval.csv at or below the given paths/globs (hidden dirs skipped)."""
    found = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) or [pattern]
        for path in matches:
            if os.path.isfile(path) and os.path.basename(path) == "eval.csv":
                found.append(os.path.dirname(os.path.abspath(path)))
                continue
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                if "eval.csv" in files:
                    found.append(os.path.abspath(root))
    return sorted(set(found))


def load_run(work_dir: str) -> Run | None:
    """The run in `work_dir`, or None when its eval.csv has no rows."""
    try:
        evals = pd.read_csv(os.path.join(work_dir, "eval.csv"))
    except (pd.errors.EmptyDataError, FileNotFoundError):
        return None
    if evals.empty or "env_step" not in evals:
        return None
    parts = os.path.normpath(work_dir).split(os.sep)
    info = dict(task=parts[-3] if len(parts) >= 3 else "unknown", seed=parts[-2] if len(parts) >= 2 else 0,
                exp_name=parts[-1], hybrid_mpc=False)
    config_path = os.path.join(work_dir, "config.yaml")
    if os.path.isfile(config_path):
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(OmegaConf.load(config_path))
        info.update({k: config[k] for k in info if config.get(k) is not None})
    train = None
    train_path = os.path.join(work_dir, "train.csv")
    if os.path.isfile(train_path):
        try:
            train = pd.read_csv(train_path)
        except pd.errors.EmptyDataError:
            train = None
    try:
        seed = int(info["seed"])
    except (TypeError, ValueError):
        seed = 0
    return Run(work_dir, str(info["task"]), seed, str(info["exp_name"]), bool(info["hybrid_mpc"]),
               evals, train)


def load_runs(patterns: list[str]) -> list[Run]:
    return [run for run in map(load_run, find_run_dirs(patterns)) if run is not None]


def is_metaworld(task: str) -> bool:
    return task.startswith("mw-")


# ---------------------------------------------------------------- statistics
def mean_and_ci(values, rng: np.random.Generator, resamples: int = RESAMPLES,
                level: float = LEVEL) -> tuple[float, float, float]:
    """Mean of `values` and the percentile bootstrap interval of the mean (NaN for one value)."""
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if values.size == 1:
        return mean, math.nan, math.nan
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return mean, float(low), float(high)


def aggregate(curves: list[pd.DataFrame], seed: int = 0) -> pd.DataFrame:
    """Per-seed curves (columns x, y) -> per-x mean, low, high and number of seeds."""
    if not curves:
        return pd.DataFrame(columns=["x", "mean", "low", "high", "n"])
    data = pd.concat([c[["x", "y"]].assign(seed=i) for i, c in enumerate(curves)])
    data = data[np.isfinite(data["y"].astype(float))]
    rng = np.random.default_rng(seed)
    rows = []
    for x, group in data.groupby("x", sort=True):
        ys = group.groupby("seed")["y"].mean().to_numpy(float)  # one value per seed and x
        mean, low, high = mean_and_ci(ys, rng)
        rows.append(dict(x=x, mean=mean, low=low, high=high, n=len(ys)))
    return pd.DataFrame(rows, columns=["x", "mean", "low", "high", "n"])


def curve(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame | None:
    if frame is None or x not in frame or y not in frame:
        return None
    out = pd.DataFrame({"x": pd.to_numeric(frame[x], errors="coerce"),
                        "y": pd.to_numeric(frame[y], errors="coerce")}).dropna()
    return out if not out.empty else None


# ---------------------------------------------------------------- reference curves
def reference_methods() -> list[str]:
    if not os.path.isdir(REFERENCE_DIR):
        return []
    return sorted(d for d in os.listdir(REFERENCE_DIR) if os.path.isdir(os.path.join(REFERENCE_DIR, d)))


def load_reference(method: str, task: str) -> list[pd.DataFrame]:
    """Per-seed curves (x = env steps, y = return or success) of a reference method, or []."""
    path = os.path.join(REFERENCE_DIR, method, f"{task}.csv")
    if not os.path.isfile(path):
        return []
    frame = pd.read_csv(path)
    value = "success" if "success" in frame else "reward"
    return [c for _, group in frame.groupby("seed") if (c := curve(group, "step", value)) is not None]


# ---------------------------------------------------------------- labels
def method_labels(methods: list[tuple[str, bool]]) -> dict[tuple[str, bool], str]:
    """Display names. `key=value` parts shared by every non-default exp_name of the task (e.g.
    the fixed settings of a sweep) are dropped, unless that would make two labels equal."""
    parts = {m: [] if m[0] == "default" else m[0].split(",") for m in methods}
    named = [set(p) for p in parts.values() if p]
    common = set.intersection(*named) if len(named) > 1 else set()
    common = {p for p in common if "=" in p}

    def labels_without(drop):
        out = {}
        for m, ps in parts.items():
            rest = ",".join(p for p in ps if p not in drop)
            base = "hybrid" if m[1] else "TD-MPC2 (ours)"
            out[m] = f"{base} [{rest}]" if rest else base
        return out

    labels = labels_without(common)
    return labels if len(set(labels.values())) == len(labels) else labels_without(set())


# ---------------------------------------------------------------- curves of one method
def method_groups(runs: list[Run]) -> dict[tuple[str, bool], list[Run]]:
    """Runs grouped by method, in a stable order (exp_name, hybrid, seed)."""
    groups: dict[tuple[str, bool], list[Run]] = {}
    for run in sorted(runs, key=lambda r: (r.exp_name, r.hybrid, r.seed)):
        groups.setdefault(run.method, []).append(run)
    return groups


def metric_of(task: str) -> str:
    return "episode_success" if is_metaworld(task) else "episode_reward"


def method_series(method: tuple[str, bool], label: str) -> list[tuple[str, str, bool]]:
    """(curve label, eval.csv column prefix, dotted) of a method: a hybrid method gives the hybrid
    planner and the learned-only planner evaluated on the same episodes."""
    if not method[1]:
        return [(label, "", False)]
    return [(label + " - hybrid planner", "", False), (label + " - learned-only eval", "learned_", True)]


def run_curves(members: list[Run], column: str) -> list[pd.DataFrame]:
    return [c for r in members if (c := curve(r.eval, "env_step", column)) is not None]


# ---------------------------------------------------------------- reference curves as measured
def reference_points(agg: pd.DataFrame, right: float | None) -> pd.DataFrame:
    """The evaluations of a reference curve that lie on the plotted range [0, right]: nothing
    is interpolated or extended, so a curve is only drawn between steps that were measured."""
    return agg if right is None else agg[agg["x"] <= right]


def grid_text(steps) -> str:
    """'every 100k env steps' for a regular evaluation grid, else 'at its own evaluation steps'."""
    gaps = np.diff(np.unique(np.asarray(steps, dtype=float)))
    if gaps.size and np.allclose(gaps, gaps[0]):
        return f"every {EngFormatter(sep='').format_eng(gaps[0])} env steps"
    return "at its own evaluation steps"


def draw_reference(ax, name: str, points: pd.DataFrame, color: str, grid: str, n: int) -> None:
    """Markers with 95% CI error bars at the measured steps, joined by a thin dashed line."""
    if points.empty:
        return
    below = (points["mean"] - points["low"]).fillna(0.0).clip(lower=0.0).to_numpy(float)
    above = (points["high"] - points["mean"]).fillna(0.0).clip(lower=0.0).to_numpy(float)
    ax.errorbar(points["x"].to_numpy(float), points["mean"].to_numpy(float), yerr=np.stack([below, above]),
                fmt="D", ls=(0, (4, 3)), lw=0.9, ms=4, capsize=2.5, color=color,
                label=f"{name} (n={n}): measured {grid}, bars = 95% CI")


def summary_row(task: str, label: str, source: str, statistic: str, x, n, value, low, high, tasks=1) -> dict:
    return dict(task=task, curve=label, source=source, statistic=statistic, env_step=int(x), tasks=tasks,
                seeds=int(n), value=float(value), ci_low=float(low), ci_high=float(high))


# ---------------------------------------------------------------- one figure per task
def task_figure(task: str, runs: list[Run], references: list[str], xmax: float | None = None):
    """One task's figure (curves and the H_c panel) and its summary rows; nothing is written."""
    success = is_metaworld(task)
    metric = metric_of(task)
    fig, (ax, ax_h) = plt.subplots(1, 2, figsize=(12.5, 4.6), gridspec_kw=dict(width_ratios=[2.2, 1]))
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    our_max = max((float(r.eval["env_step"].max()) for r in runs), default=None)
    right = xmax if xmax is not None else our_max
    summary = []

    def add_reference_summary(label, agg):  # its last evaluation at or before the right end
        shown = reference_points(agg, right)
        if not shown.empty:
            last = shown.iloc[-1]
            summary.append(summary_row(task, label, "reference", "mean", last["x"], last["n"], last["mean"],
                                       last["low"], last["high"]))

    groups = method_groups(runs)
    labels = method_labels(list(groups))
    horizon_drawn = False
    for method, members in groups.items():
        color = next(colors)
        for label, prefix, dotted in method_series(method, labels[method]):
            agg = aggregate(run_curves(members, prefix + metric))
            if agg.empty:
                continue
            marker = None if len(agg) > 30 else "s" if dotted else "o"
            ax.plot(agg["x"], agg["mean"], ":" if dotted else "-", color=color, marker=marker, markersize=3.5,
                    lw=1.8, label=f"{label} (n={int(agg['n'].max())})")
            band = agg.dropna(subset=["low", "high"])
            if not band.empty:
                ax.fill_between(band["x"], band["low"], band["high"], color=color, alpha=0.18, lw=0)
            last = agg.iloc[-1]  # our runs: their last evaluation
            summary.append(summary_row(task, label, "ours", "mean", last["x"], last["n"], last["mean"], last["low"],
                                       last["high"]))
        if method[1]:
            horizon_drawn |= draw_horizon(ax_h, members, color, labels[method])

    for method in references:
        agg = aggregate(load_reference(method, task))
        if agg.empty:
            continue
        name = REFERENCE_NAMES.get(method, method)
        draw_reference(ax, name, reference_points(agg, right), REFERENCE_COLORS.get(method, "0.5"),
                       grid_text(agg["x"]), int(agg["n"].max()))
        add_reference_summary(name, agg)

    if right:
        ax.set_xlim(0, right * 1.02)
        ax_h.set_xlim(0, right * 1.02)
    for axis in (ax, ax_h):
        axis.xaxis.set_major_formatter(EngFormatter(sep=""))
        axis.set_xlabel("environment steps")
        axis.grid(alpha=0.3)
    ax.set_ylabel("success rate" if success else "episode return")
    if success:
        ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{task}: mean over seeds, band/bars = 95% bootstrap CI of the mean", fontsize=10)
    if ax.lines or ax.containers:
        ax.legend(fontsize=7, loc="best")
    ax_h.set_title("classical horizon H_c (hybrid runs)", fontsize=10)
    ax_h.set_ylabel("H_c (agent steps)")
    if horizon_drawn:
        ax_h.legend(fontsize=7.5, loc="best")
        ax_h.set_ylim(bottom=0)
    else:
        ax_h.text(0.5, 0.5, "no hybrid runs", ha="center", va="center", transform=ax_h.transAxes, color="0.4")
    fig.tight_layout()
    return fig, summary


def draw_horizon(ax_h, members: list[Run], color: str, label: str) -> bool:
    """H_c of a hybrid method over training (eval rows from step 0, train rows once per episode)."""
    horizons = []
    for r in members:
        parts = [c for c in (curve(r.eval, "env_step", "classical_horizon"),
                             curve(r.train, "env_step", "classical_horizon")) if c is not None]
        if parts:
            horizons.append(pd.concat(parts).drop_duplicates("x").sort_values("x"))
    agg = aggregate(horizons)
    if agg.empty:
        return False
    ax_h.step(agg["x"], agg["mean"], where="post", color=color, lw=1.8, label=label)
    band = agg.dropna(subset=["low", "high"])
    if not band.empty:
        ax_h.fill_between(band["x"], band["low"], band["high"], step="post", color=color, alpha=0.18, lw=0)
    return True


def save_figure(fig, out_dir: str, name: str, formats) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for fmt in formats:
        path = os.path.join(out_dir, f"{name}.{fmt}")
        fig.savefig(path, dpi=130)
        paths.append(path)
    plt.close(fig)
    return paths


def plot_task(task: str, runs: list[Run], out_dir: str, references: list[str],
              xmax: float | None = None, formats=("png", "svg")) -> tuple[list[str], list[dict]]:
    """Draw and save one task's figure; returns the files written and the summary rows."""
    fig, summary = task_figure(task, runs, references, xmax)
    return save_figure(fig, out_dir, task, formats), summary


# ---------------------------------------------------------------- aggregate over tasks (rliable)
@dataclass
class AggregateInput:
    label: str
    source: str  # "ours" or "reference"
    runs_by_task: dict[str, list[pd.DataFrame]]
    dotted: bool = False
    color: str | None = None


def aggregate_inputs(runs: list[Run], tasks: list[str], references: list[str]) -> list[AggregateInput]:
    """Every curve that has runs on all `tasks`: each method of ours (hybrid methods twice: the
    hybrid and the learned-only planner) and each reference method. Methods missing a task are
    left out, with a note on stderr."""
    groups = method_groups([r for r in runs if r.task in tasks])
    labels = method_labels(list(groups))
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    inputs = []
    for method, members in groups.items():
        color = next(colors)
        by_task = {t: [r for r in members if r.task == t] for t in tasks}
        missing = [t for t, rs in by_task.items() if not rs]
        if missing:
            print(f"aggregate: {labels[method]} left out (no runs on {', '.join(missing)})", file=sys.stderr)
            continue
        for label, prefix, dotted in method_series(method, labels[method]):
            series = {t: run_curves(rs, prefix + metric_of(t)) for t, rs in by_task.items()}
            if all(series.values()):
                inputs.append(AggregateInput(label, "ours", series, dotted, color))
    for method in references:
        series = {t: load_reference(method, t) for t in tasks}
        if all(series.values()):
            inputs.append(AggregateInput(REFERENCE_NAMES.get(method, method), "reference", series,
                                         color=REFERENCE_COLORS.get(method, "0.5")))
    return inputs


def final_step(tables: dict[str, pd.DataFrame], inputs: list[AggregateInput], right: float | None):
    """The last env step (within the plotted range) at which every curve of ours has aggregate
    values; None when they share none."""
    steps = [set(tables[i.label]["env_step"]) for i in inputs if i.source == "ours"]
    if not steps:
        return None
    common = [x for x in set.intersection(*steps) if right is None or x <= right]
    return max(common) if common else None


def aggregate_figure(inputs: list[AggregateInput], tasks: list[str], xmax: float | None = None,
                     reps: int = RESAMPLES):
    """IQM against env steps, the three statistics and the performance profile at the last
    common step. Returns the figure, the summary rows and the full tables (curves, profiles)."""
    tables = {i.label: am.aggregate_curve(i.runs_by_task, reps=reps) for i in inputs}
    ours = [float(t["env_step"].max()) for i in inputs if i.source == "ours" and not (t := tables[i.label]).empty]
    right = xmax if xmax is not None else max(ours, default=None)
    step = final_step(tables, inputs, right)
    at_step = [i for i in inputs if step is not None and step in set(tables[i.label]["env_step"])]
    finals = {i.label: tables[i.label][tables[i.label]["env_step"] == step].set_index("statistic") for i in at_step}
    profiles = {i.label: am.performance_profile(i.runs_by_task, step, reps=reps) for i in at_step}

    fig = plt.figure(figsize=(14, 8.2))
    grid = fig.add_gridspec(2, 3, height_ratios=[1.25, 1])
    draw_iqm_curves(fig.add_subplot(grid[0, :2]), inputs, tables, right, tasks)
    draw_profiles(fig.add_subplot(grid[0, 2]), at_step, profiles, step)
    for k, name in enumerate(am.STATISTICS):
        draw_intervals(fig.add_subplot(grid[1, k]), at_step, finals, name, with_labels=k == 0)
    fig.suptitle(f"{len(tasks)} task(s): scores = DMControl return / 1000, Meta-World success; statistics "
                 f"{step_text(step)} (rliable)", fontsize=10)
    fig.tight_layout()

    summary = [summary_row("aggregate", i.label, i.source, name, step, r["runs"], r["value"], r["ci_low"],
                           r["ci_high"], tasks=len(tasks))
               for i in at_step for name, r in finals[i.label].loc[list(am.STATISTICS)].iterrows()]
    curves = pd.concat([tables[i.label].assign(curve=i.label, source=i.source) for i in inputs], ignore_index=True)
    profile_table = pd.concat([profiles[i.label].assign(curve=i.label, source=i.source, env_step=step)
                               for i in at_step], ignore_index=True) if at_step else None
    return fig, summary, curves, profile_table


def step_text(step) -> str:
    return f"at {EngFormatter(sep='').format_eng(step)} env steps" if step is not None else "(no common step)"


def draw_iqm_curves(ax, inputs: list[AggregateInput], tables: dict[str, pd.DataFrame], right, tasks) -> None:
    """IQM against env steps: ours as lines with CI bands, references as markers at their steps."""
    for item in inputs:
        iqm = tables[item.label].query("statistic == 'IQM'")
        if item.source == "reference":
            points = iqm.rename(columns=dict(env_step="x", value="mean", ci_low="low", ci_high="high"))
            draw_reference(ax, item.label, reference_points(points, right), item.color, grid_text(iqm["env_step"]),
                           int(iqm["runs"].max()))
            continue
        ax.plot(iqm["env_step"], iqm["value"], ":" if item.dotted else "-", color=item.color, lw=1.8,
                marker=None if len(iqm) > 30 else "s" if item.dotted else "o", markersize=3.5,
                label=f"{item.label} ({int(iqm['runs'].max())} runs)")
        ax.fill_between(iqm["env_step"], iqm["ci_low"], iqm["ci_high"], color=item.color, alpha=0.18, lw=0)
    if right:
        ax.set_xlim(0, right * 1.02)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set(xlabel="environment steps", ylabel="IQM of normalised score")
    ax.set_title(f"IQM over {len(tasks)} task(s) ({', '.join(tasks)}), band/bars = 95% stratified-bootstrap "
                 "CI", fontsize=9.5)
    ax.grid(alpha=0.3)
    if ax.lines or ax.containers:
        ax.legend(fontsize=7, loc="best")


def draw_intervals(ax, items: list[AggregateInput], finals: dict[str, pd.DataFrame], statistic: str,
                   with_labels: bool) -> None:
    """One statistic at the common step: a bar over the 95% CI and a tick at the estimate per curve."""
    for row, item in enumerate(items):
        r = finals[item.label].loc[statistic]
        ax.hlines(row, r["ci_low"], r["ci_high"], color=item.color, lw=9, alpha=0.55)
        ax.plot([r["value"]], [row], "|", color="k", ms=16, mew=1.8)
    ax.set_yticks(range(len(items)), [i.label for i in items] if with_labels else [""] * len(items), fontsize=7)
    ax.set_title(statistic + (" (lower is better)" if statistic == "optimality gap" else ""), fontsize=9.5)
    ax.set_xlabel("normalised score")
    ax.grid(alpha=0.3, axis="x")
    ax.set_ylim(-0.7, len(items) - 0.3)


def draw_profiles(ax, items: list[AggregateInput], profiles: dict[str, pd.DataFrame], step) -> None:
    for item in items:
        profile = profiles[item.label]
        ax.plot(profile["tau"], profile["value"], ":" if item.dotted else "-", color=item.color, lw=1.6)
        ax.fill_between(profile["tau"], profile["ci_low"], profile["ci_high"], color=item.color, alpha=0.15, lw=0)
    ax.set_title(f"performance profile {step_text(step)}", fontsize=9.5)
    ax.set(xlabel="normalised score tau", ylabel="fraction of runs with score > tau", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)


# ---------------------------------------------------------------- command
def make_plots(patterns: list[str], out_dir: str = "plots", tasks: list[str] | None = None,
               references: list[str] | None = None, xmax: float | None = None,
               formats=("png", "svg"), reps: int = RESAMPLES) -> list[str]:
    """Plot every task found under `patterns` (or only `tasks`) and their aggregate; returns the
    files written."""
    runs = load_runs(patterns) if patterns else []
    if references is None:
        references = [m for m in ("tdmpc2", "sac", "dreamerv3") if m in reference_methods()]
    unknown = [m for m in references if m not in reference_methods()]
    if unknown:
        raise PlotError(f"No reference results for '{unknown[0]}'; available: {', '.join(reference_methods())}.")
    if reps < 1:
        raise PlotError(f"--reps must be at least 1, got {reps}.")
    wanted = tasks or sorted({r.task for r in runs})
    if not wanted:
        raise PlotError(f"No run logs (eval.csv with rows) found under {' '.join(patterns) or 'the given paths'}.")
    written, summary, plotted = [], [], []
    for task in wanted:
        task_runs = [r for r in runs if r.task == task]
        has_reference = any(os.path.isfile(os.path.join(REFERENCE_DIR, m, f"{task}.csv")) for m in references)
        if not task_runs and not has_reference:
            print(f"skipping {task}: no runs and no reference curves", file=sys.stderr)
            continue
        paths, rows = plot_task(task, task_runs, out_dir, references, xmax, formats)
        written += paths
        summary += rows
        plotted.append(task)
    inputs = aggregate_inputs(runs, plotted, references)
    if any(i.source == "ours" for i in inputs):
        fig, rows, curves, profiles = aggregate_figure(inputs, plotted, xmax, reps)
        written += save_figure(fig, out_dir, "aggregate", formats)
        summary += rows
        written.append(write_csv(curves, os.path.join(out_dir, "aggregate.csv")))
        if profiles is not None:
            written.append(write_csv(profiles, os.path.join(out_dir, "aggregate_profile.csv")))
    if summary:
        written.append(write_csv(pd.DataFrame(summary), os.path.join(out_dir, "summary.csv")))
    return written


def write_csv(frame: pd.DataFrame, path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tdmpc2.plot", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="log dirs or globs (runs are found below them)")
    parser.add_argument("--out", default="plots", help="output directory (default: plots)")
    parser.add_argument("--tasks", nargs="+", help="only these tasks (default: every task with runs)")
    parser.add_argument("--references", nargs="*", default=None,
                        help="reference methods to overlay (default: tdmpc2 sac dreamerv3; none: --references)")
    parser.add_argument("--xmax", type=float, default=None, help="right end of the x-axis in env steps")
    parser.add_argument("--formats", nargs="+", default=["png", "svg"], help="figure formats (default: png svg)")
    parser.add_argument("--reps", type=int, default=RESAMPLES,
                        help=f"bootstrap resamples of the aggregate statistics (default: {RESAMPLES})")
    args = parser.parse_args(argv)
    try:
        written = make_plots(args.paths, args.out, args.tasks, args.references, args.xmax, tuple(args.formats),
                             args.reps)
    except PlotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
