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
    colour, dotted, square markers). Plain
    TD-MPC2 runs give one. Reference curves (TD-MPC2, SAC, DreamerV3 from
    `tdmpc2/reference_results/`) are dashed. The x-axis ends at the longest of our runs
    (`--xmax` to change).
  * right, the classical horizon H_c of the hybrid runs over training (train.csv, one row per
    episode; eval.csv when train.csv lacks it).
Curves are the mean over seeds at each evaluation step; the band is the 95% percentile
bootstrap confidence interval of that mean (2,000 resamples of the seeds, fixed RNG, so plots
are reproducible); a step with a single seed has no band. `<out>/summary.csv` lists, per task and
curve, the last evaluation inside the plotted range: env_step, number of seeds, mean and the
interval (for a reference curve: its last evaluation at or before the right end of the x-axis).

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


# ---------------------------------------------------------------- plotting
def plot_task(task: str, runs: list[Run], out_dir: str, references: list[str],
              xmax: float | None = None, formats=("png", "svg")) -> tuple[list[str], list[dict]]:
    """Draw one task's figure; returns the files written and the summary rows."""
    success = is_metaworld(task)
    metric = "episode_success" if success else "episode_reward"
    fig, (ax, ax_h) = plt.subplots(1, 2, figsize=(12.5, 4.6), gridspec_kw=dict(width_ratios=[2.2, 1]))
    colors = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4)
    summary = []

    def draw(label, agg, color, dashed=False, source="ours", summary_until=None, dotted=False):
        if agg.empty:
            return
        style = "--" if dashed else ":" if dotted else "-"
        marker = None if dashed or len(agg) > 30 else "s" if dotted else "o"
        ax.plot(agg["x"], agg["mean"], style, color=color, marker=marker, markersize=3.5, lw=1.8,
                label=f"{label} (n={int(agg['n'].max())})")
        band = agg.dropna(subset=["low", "high"])
        if not band.empty:
            ax.fill_between(band["x"], band["low"], band["high"], color=color, alpha=0.18 if not dashed else 0.1,
                            lw=0)
        shown = agg[agg["x"] <= summary_until] if summary_until is not None else agg
        if shown.empty:
            return
        last = shown.iloc[-1]
        summary.append(dict(task=task, curve=label, source=source, env_step=int(last["x"]), seeds=int(last["n"]),
                            mean=last["mean"], ci_low=last["low"], ci_high=last["high"]))

    groups: dict[tuple[str, bool], list[Run]] = {}
    for run in sorted(runs, key=lambda r: (r.exp_name, r.hybrid, r.seed)):
        groups.setdefault(run.method, []).append(run)
    labels = method_labels(list(groups))
    horizon_drawn = False
    for method, members in groups.items():
        label = labels[method]
        color = next(colors)
        draw(label + (" - hybrid planner" if method[1] else ""),
             aggregate([c for r in members if (c := curve(r.eval, "env_step", metric)) is not None]), color)
        if method[1]:
            learned = [c for r in members if (c := curve(r.eval, "env_step", f"learned_{metric}")) is not None]
            draw(label + " - learned-only eval", aggregate(learned), color, dotted=True)
            horizons = []
            for r in members:  # eval rows (from step 0) and train rows (one per episode)
                parts = [c for c in (curve(r.eval, "env_step", "classical_horizon"),
                                     curve(r.train, "env_step", "classical_horizon")) if c is not None]
                if parts:
                    horizons.append(pd.concat(parts).drop_duplicates("x").sort_values("x"))
            agg = aggregate(horizons)
            if not agg.empty:
                ax_h.step(agg["x"], agg["mean"], where="post", color=color, lw=1.8, label=label)
                band = agg.dropna(subset=["low", "high"])
                if not band.empty:
                    ax_h.fill_between(band["x"], band["low"], band["high"], step="post", color=color,
                                      alpha=0.18, lw=0)
                horizon_drawn = True

    our_max = max((float(r.eval["env_step"].max()) for r in runs), default=None)
    right = xmax if xmax is not None else our_max
    for method in references:
        ref = aggregate(load_reference(method, task))
        if xmax is None and our_max is not None and not ref.empty:  # keep one point past the range
            beyond = ref[ref["x"] > our_max]
            ref = pd.concat([ref[ref["x"] <= our_max], beyond.head(1)])
        draw(REFERENCE_NAMES.get(method, method), ref, REFERENCE_COLORS.get(method, "0.5"), dashed=True,
             source="reference", summary_until=right)

    if right:
        ax.set_xlim(0, right)
        ax_h.set_xlim(0, right)
    for axis in (ax, ax_h):
        axis.xaxis.set_major_formatter(EngFormatter(sep=""))
        axis.set_xlabel("environment steps")
        axis.grid(alpha=0.3)
    ax.set_ylabel("success rate" if success else "episode return")
    if success:
        ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{task}: mean over seeds, band = 95% bootstrap CI of the mean", fontsize=10)
    if ax.lines:
        ax.legend(fontsize=7.5, loc="best")
    ax_h.set_title("classical horizon H_c (hybrid runs)", fontsize=10)
    ax_h.set_ylabel("H_c (agent steps)")
    if horizon_drawn:
        ax_h.legend(fontsize=7.5, loc="best")
        ax_h.set_ylim(bottom=0)
    else:
        ax_h.text(0.5, 0.5, "no hybrid runs", ha="center", va="center", transform=ax_h.transAxes, color="0.4")
    fig.tight_layout()
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for fmt in formats:
        path = os.path.join(out_dir, f"{task}.{fmt}")
        fig.savefig(path, dpi=130)
        paths.append(path)
    plt.close(fig)
    return paths, summary


def make_plots(patterns: list[str], out_dir: str = "plots", tasks: list[str] | None = None,
               references: list[str] | None = None, xmax: float | None = None,
               formats=("png", "svg")) -> list[str]:
    """Plot every task found under `patterns` (or only `tasks`); returns the files written."""
    runs = load_runs(patterns) if patterns else []
    if references is None:
        references = [m for m in ("tdmpc2", "sac", "dreamerv3") if m in reference_methods()]
    unknown = [m for m in references if m not in reference_methods()]
    if unknown:
        raise PlotError(f"No reference results for '{unknown[0]}'; available: {', '.join(reference_methods())}.")
    wanted = tasks or sorted({r.task for r in runs})
    if not wanted:
        raise PlotError(f"No run logs (eval.csv with rows) found under {' '.join(patterns) or 'the given paths'}.")
    written, summary = [], []
    for task in wanted:
        task_runs = [r for r in runs if r.task == task]
        has_reference = any(os.path.isfile(os.path.join(REFERENCE_DIR, m, f"{task}.csv")) for m in references)
        if not task_runs and not has_reference:
            print(f"skipping {task}: no runs and no reference curves", file=sys.stderr)
            continue
        paths, rows = plot_task(task, task_runs, out_dir, references, xmax, formats)
        written += paths
        summary += rows
    if summary:
        path = os.path.join(out_dir, "summary.csv")
        pd.DataFrame(summary).to_csv(path, index=False)
        written.append(path)
    return written


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
    args = parser.parse_args(argv)
    try:
        written = make_plots(args.paths, args.out, args.tasks, args.references, args.xmax, tuple(args.formats))
    except PlotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
