"""Aggregate performance over tasks and seeds (Agarwal et al., NeurIPS 2021), with `rliable`.

Notation: a score is one run's normalised result at one env step, in [0, 1] for sane runs
(DMControl: episode return / 1000; Meta-World: success rate). Scores of one curve at one step
come as `columns`: one array per task, of shape (n_t, 1, S) = (runs of that task, 1, steps),
so tasks may have different numbers of runs. Statistics (one value per step):

  * IQM: the mean of the middle 50% of all scores pooled over tasks and runs (25% trimmed mean);
  * mean: the mean over tasks of each task's mean over runs;
  * optimality gap: 1 - the mean over tasks of each task's mean of min(score, 1).

With the same number of runs on every task these are exactly rliable's `aggregate_iqm`,
`aggregate_mean` and `aggregate_optimality_gap` (tests/test_plot.py checks it). Confidence
intervals are rliable's stratified bootstrap (`get_interval_estimates`: runs are resampled with
replacement within each task, percentile intervals). rliable draws its resamples from numpy's
global RNG; `_seeded` fixes and then restores it, so results are reproducible.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.stats

STATISTICS = ("IQM", "mean", "optimality gap")
DMCONTROL_MAX_RETURN = 1000.0
PROFILE_TAUS = np.linspace(0.0, 1.0, 21)


def normalise(task: str, values) -> np.ndarray:
    """Scores in [0, 1]: Meta-World success as it is, DMControl returns / 1000."""
    values = np.asarray(values, dtype=float)
    return values if task.startswith("mw-") else values / DMCONTROL_MAX_RETURN


# ---------------------------------------------------------------- statistics over columns
def aggregate_statistics(*columns: np.ndarray) -> np.ndarray:
    """IQM, mean and optimality gap (rows) at every step (columns): shape (3, S)."""
    steps = columns[0].shape[-1]
    pooled = np.concatenate([c.reshape(-1, steps) for c in columns], axis=0)
    iqm = scipy.stats.trim_mean(pooled, proportiontocut=0.25, axis=0)
    mean = np.mean([c.reshape(-1, steps).mean(axis=0) for c in columns], axis=0)
    gap = 1.0 - np.mean([np.minimum(c.reshape(-1, steps), 1.0).mean(axis=0) for c in columns], axis=0)
    return np.stack([iqm, mean, gap])


def score_distribution(taus: np.ndarray) -> Callable[..., np.ndarray]:
    """Performance profile: for each tau, the mean over tasks of the fraction of runs scoring
    above tau (rliable's run-score distribution); columns of one step, (n_t, 1, 1) each."""
    def profile(*columns: np.ndarray) -> np.ndarray:
        return np.mean([(c.reshape(-1, 1) > taus[None, :]).mean(axis=0) for c in columns], axis=0)
    return profile


@contextlib.contextmanager
def _seeded(seed: int):
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def interval_estimates(columns: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], reps: int = 2000,
                       level: float = 0.95, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point estimate, lower and upper percentile bound of `statistic(*columns)`, each with the
    statistic's shape; stratified bootstrap over runs within tasks (rliable)."""
    from rliable import library as rly  # imported here: it pulls in arch and statsmodels (seconds)

    shape = statistic(*columns).shape
    flat = lambda *cols: np.ravel(statistic(*cols))  # noqa: E731  (rliable wants 1-D outputs)
    with _seeded(seed):
        point, interval = rly.get_interval_estimates({"scores": list(columns)}, flat, reps=reps,
                                                     confidence_interval_size=level)
    low, high = interval["scores"]
    return point["scores"].reshape(shape), low.reshape(shape), high.reshape(shape)


# ---------------------------------------------------------------- from per-run curves
def scores_by_step(runs_by_task: Mapping[str, Sequence[pd.DataFrame]]) -> dict[float, list[np.ndarray]]:
    """env step -> per-task arrays of the normalised scores of every run evaluated there, for
    the steps at which every task has at least one run. Runs are frames with columns x, y."""
    per_task: dict[str, dict[float, list[float]]] = {}
    for task, runs in runs_by_task.items():
        steps: dict[float, list[float]] = {}
        for run in runs:
            for x, y in run.groupby("x")["y"].mean().items():
                if np.isfinite(y):
                    steps.setdefault(float(x), []).append(float(y))
        per_task[task] = steps
    if not per_task:
        return {}
    common = set.intersection(*(set(steps) for steps in per_task.values()))
    return {x: [normalise(task, per_task[task][x]) for task in runs_by_task] for x in sorted(common)}


def aggregate_curve(runs_by_task: Mapping[str, Sequence[pd.DataFrame]], reps: int = 2000,
                    seed: int = 0) -> pd.DataFrame:
    """Long table (env_step, statistic, value, ci_low, ci_high, tasks, runs) of the three
    statistics at every step where all tasks were evaluated. Steps with the same run count per
    task share one bootstrap (each step is still resampled on its own)."""
    table = scores_by_step(runs_by_task)
    groups: dict[tuple[int, ...], list[float]] = {}
    for x, columns in table.items():
        groups.setdefault(tuple(len(c) for c in columns), []).append(x)
    rows = []
    for counts, steps in groups.items():
        columns = [np.stack([table[x][t] for x in steps], axis=-1).reshape(n, 1, len(steps))
                   for t, n in enumerate(counts)]
        point, low, high = interval_estimates(columns, aggregate_statistics, reps, seed=seed)
        for k, name in enumerate(STATISTICS):
            for s, x in enumerate(steps):
                rows.append(dict(env_step=x, statistic=name, value=point[k, s], ci_low=low[k, s],
                                 ci_high=high[k, s], tasks=len(counts), runs=sum(counts)))
    columns = ["env_step", "statistic", "value", "ci_low", "ci_high", "tasks", "runs"]
    return pd.DataFrame(rows, columns=columns).sort_values(["statistic", "env_step"], ignore_index=True)


def performance_profile(runs_by_task: Mapping[str, Sequence[pd.DataFrame]], env_step: float,
                        taus: np.ndarray = PROFILE_TAUS, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Fraction of runs above each tau at `env_step` (mean over tasks) with 95% intervals;
    empty when some task has no run evaluated there."""
    columns = scores_by_step(runs_by_task).get(float(env_step))
    if columns is None:
        return pd.DataFrame(columns=["tau", "value", "ci_low", "ci_high"])
    point, low, high = interval_estimates([c.reshape(-1, 1, 1) for c in columns], score_distribution(taus), reps,
                                          seed=seed)
    return pd.DataFrame(dict(tau=taus, value=point, ci_low=low, ci_high=high))
