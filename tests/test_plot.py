"""tdmpc2.plot: seed aggregation with bootstrap intervals, grouping by task and method, the
figures (PNG + SVG, headless) and the packaged reference curves."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from tdmpc2 import plot
from tdmpc2.envs.tasks import DMCONTROL_TASKS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(root, task, seed, exp_name, hybrid, rewards, horizons=None, success=False):
    work_dir = root / task / str(seed) / exp_name
    os.makedirs(work_dir)
    (work_dir / "config.yaml").write_text(
        f"task: {task}\nseed: {seed}\nexp_name: {exp_name}\nhybrid_mpc: {str(hybrid).lower()}\n")
    metric = "episode_success" if success else "episode_reward"
    fields = ["step", "env_step", "episode_reward", "episode_success"]
    if hybrid:
        fields += [f"learned_{metric}", "classical_horizon"]
    with open(work_dir / "eval.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for i, value in enumerate(rewards):
            row = dict(step=100 * i, env_step=200 * i, episode_reward=0 if success else value,
                       episode_success=value if success else 0)
            if hybrid:
                row.update({f"learned_{metric}": value / 2, "classical_horizon": horizons[i]})
            writer.writerow(row)
    if hybrid:  # train.csv: one row per 50 agent steps
        with open(work_dir / "train.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", "env_step", "classical_horizon"])
            writer.writeheader()
            for step in range(50, 100 * len(rewards), 50):
                writer.writerow(dict(step=step, env_step=2 * step, classical_horizon=horizons[step // 100]))
    return work_dir


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_mean_and_bootstrap_interval():
    rng = np.random.default_rng(0)
    mean, low, high = plot.mean_and_ci([1.0, 3.0, 2.0, 6.0], rng)
    assert mean == 3.0 and 1.0 <= low < mean < high <= 6.0
    assert np.isnan(plot.mean_and_ci([5.0], rng)[1])  # one seed: no band
    agg = plot.aggregate([plot.pd.DataFrame({"x": [0, 10], "y": [1.0, 2.0]}),
                          plot.pd.DataFrame({"x": [0, 10, 20], "y": [3.0, 4.0, 9.0]})])
    assert agg["x"].tolist() == [0, 10, 20] and agg["mean"].tolist() == [2.0, 3.0, 9.0]
    assert agg["n"].tolist() == [2, 2, 1]


def test_plot_groups_runs_and_writes_png_svg_and_summary(tmp_path):
    logs = tmp_path / "logs"
    shared = "steps=600,transition_schedule="
    for seed, offset in ((1, 0.0), (2, 20.0)):
        write_run(logs, "cartpole-balance", seed, shared + "linear", True, [10 + offset, 50 + offset, 90 + offset],
                  horizons=[4, 2, 0])
        write_run(logs, "cartpole-balance", seed, shared + "step", True, [15, 55, 95], horizons=[4, 4, 0])
    write_run(logs, "cartpole-balance", 1, "default", False, [5, 30, 60])
    write_run(logs, "mw-reach", 1, "default", True, [0.0, 1.0, 1.0], horizons=[2, 1, 0], success=True)
    (logs / ".sweeps" / "x").mkdir(parents=True)  # hydra bookkeeping is not a run

    out = tmp_path / "plots"
    assert plot.main([str(logs), "--out", str(out)]) == 0
    for task in ("cartpole-balance", "mw-reach"):
        assert (out / f"{task}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (out / f"{task}.svg").read_bytes()[:500]
    rows = {(r["task"], r["curve"]): r for r in read_csv(out / "summary.csv")}
    # labels drop the parts all methods share ("steps=600"), keep what differs
    linear = rows[("cartpole-balance", "hybrid [transition_schedule=linear] - hybrid planner")]
    assert int(linear["seeds"]) == 2 and float(linear["mean"]) == 100.0 and int(linear["env_step"]) == 400
    assert float(linear["ci_low"]) <= 100.0 <= float(linear["ci_high"])
    learned = rows[("cartpole-balance", "hybrid [transition_schedule=linear] - learned-only eval")]
    assert float(learned["mean"]) == 50.0
    assert float(rows[("cartpole-balance", "TD-MPC2 (ours)")]["mean"]) == 60.0
    assert float(rows[("mw-reach", "hybrid - hybrid planner")]["mean"]) == 1.0
    assert {r["curve"] for r in rows.values() if r["source"] == "reference"} == {
        "TD-MPC2 (reference)", "SAC (reference)", "DreamerV3 (reference)"}

    # one glob selecting one method, one task, no references, as a headless subprocess
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    result = subprocess.run([sys.executable, "-m", "tdmpc2.plot", str(logs / "*" / "*" / "default"),
                             "--out", str(tmp_path / "only"), "--tasks", "cartpole-balance", "--references",
                             "--formats", "png"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "only")) == ["cartpole-balance.png", "summary.csv"]
    assert [r["curve"] for r in read_csv(tmp_path / "only" / "summary.csv")] == ["TD-MPC2 (ours)"]


def test_no_runs_is_a_one_line_error(tmp_path, capsys):
    assert plot.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: No run logs")


@pytest.mark.parametrize("method", ["tdmpc2", "sac", "dreamerv3"])
def test_reference_results_are_packaged(method):
    for task in list(DMCONTROL_TASKS) + ["mw-reach", "mw-push", "mw-pick-place"]:
        curves = plot.load_reference(method, task)
        assert curves and all(c["x"].min() >= 0 and len(c) > 1 for c in curves), (method, task)
    assert os.path.isfile(os.path.join(plot.REFERENCE_DIR, "README.md"))
