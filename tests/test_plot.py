"""tdmpc2.plot: seed aggregation with bootstrap intervals, grouping by task and method, the
figures (PNG + SVG, headless) and the packaged reference curves."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from tdmpc2 import aggregate_metrics, plot
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
    assert plot.main([str(logs), "--out", str(out), "--reps", "200"]) == 0
    for task in ("cartpole-balance", "mw-reach"):
        assert (out / f"{task}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"<svg" in (out / f"{task}.svg").read_bytes()[:500]
    rows = {(r["task"], r["curve"], r["statistic"]): r for r in read_csv(out / "summary.csv")}
    # labels drop the parts all methods share ("steps=600"), keep what differs
    linear = rows[("cartpole-balance", "hybrid [transition_schedule=linear] - hybrid planner", "mean")]
    assert int(linear["seeds"]) == 2 and float(linear["value"]) == 100.0 and int(linear["env_step"]) == 400
    assert float(linear["ci_low"]) <= 100.0 <= float(linear["ci_high"])
    learned = rows[("cartpole-balance", "hybrid [transition_schedule=linear] - learned-only eval", "mean")]
    assert float(learned["value"]) == 50.0
    assert float(rows[("cartpole-balance", "TD-MPC2 (ours)", "mean")]["value"]) == 60.0
    assert float(rows[("mw-reach", "hybrid - hybrid planner", "mean")]["value"]) == 1.0
    assert {r["curve"] for r in rows.values() if r["source"] == "reference"} == {
        "TD-MPC2 (reference)", "SAC (reference)", "DreamerV3 (reference)"}
    # no method ran on both tasks, so none is aggregated over them
    assert not [k for k in rows if k[0] == "aggregate"] and not (out / "aggregate.png").exists()

    # one glob selecting one method, one task, no references, as a headless subprocess
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    result = subprocess.run([sys.executable, "-m", "tdmpc2.plot", str(logs / "*" / "*" / "default"),
                             "--out", str(tmp_path / "only"), "--tasks", "cartpole-balance", "--references",
                             "--formats", "png"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "only")) == ["aggregate.csv", "aggregate.png", "aggregate_profile.csv",
                                                     "cartpole-balance.png", "summary.csv"]
    assert [(r["task"], r["curve"]) for r in read_csv(tmp_path / "only" / "summary.csv")] == [
        ("cartpole-balance", "TD-MPC2 (ours)")] + [("aggregate", "TD-MPC2 (ours)")] * 3


def test_no_runs_is_a_one_line_error(tmp_path, capsys):
    assert plot.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: No run logs")
    assert plot.main([str(tmp_path), "--reps", "0"]) == 2
    assert capsys.readouterr().err == "error: --reps must be at least 1, got 0.\n"


@pytest.mark.parametrize("method", ["tdmpc2", "sac", "dreamerv3"])
def test_reference_results_are_packaged(method):
    for task in list(DMCONTROL_TASKS) + ["mw-reach", "mw-push", "mw-pick-place"]:
        curves = plot.load_reference(method, task)
        assert curves and all(c["x"].min() >= 0 and len(c) > 1 for c in curves), (method, task)
    assert os.path.isfile(os.path.join(plot.REFERENCE_DIR, "README.md"))


# ---------------------------------------------------------------- aggregate (rliable)
def test_aggregate_statistics_are_rliables_on_equal_run_counts():
    from rliable import library as rly
    from rliable import metrics

    scores = np.random.default_rng(0).random((4, 3, 5))  # runs x tasks x steps
    columns = [scores[:, t:t + 1, :] for t in range(3)]
    stats = aggregate_metrics.aggregate_statistics(*columns)
    for s in range(5):
        matrix = scores[:, :, s]
        assert np.allclose(stats[:, s], [metrics.aggregate_iqm(matrix), metrics.aggregate_mean(matrix),
                                         metrics.aggregate_optimality_gap(matrix)])
    taus = aggregate_metrics.PROFILE_TAUS
    profile = aggregate_metrics.score_distribution(taus)(*[c[..., :1] for c in columns])
    expected, _ = rly.create_performance_profile({"m": scores[:, :, 0]}, taus, reps=5)
    assert np.allclose(profile, expected["m"])


def test_aggregate_iqm_matches_a_hand_computation(tmp_path):
    logs = tmp_path / "logs"
    # final evaluation (env_step 400) of method "TD-MPC2 (ours)": cartpole returns / 1000 and
    # mw-reach success rates, 4 seeds each
    for seed, (reward, success) in enumerate([(100, 0.0), (200, 0.5), (300, 1.0), (900, 1.0)], start=1):
        write_run(logs, "cartpole-balance", seed, "default", False, [0, 50, reward])
        write_run(logs, "mw-reach", seed, "default", False, [0.0, 0.0, success], success=True)
    # a second method with 3 seeds on cartpole and 2 on mw-reach (unequal run counts), and a 4th
    # cartpole seed that stopped after env step 200
    for seed, reward in enumerate([400, 600, 1000], start=1):
        write_run(logs, "cartpole-balance", seed, "abl", False, [0, reward / 2, reward])
    write_run(logs, "cartpole-balance", 4, "abl", False, [0, 800])
    for seed, success in enumerate([0.0, 1.0], start=1):
        write_run(logs, "mw-reach", seed, "abl", False, [0.0, 0.0, success], success=True)
    out = tmp_path / "plots"
    assert plot.main([str(logs), "--out", str(out), "--references", "--reps", "500", "--formats", "png"]) == 0
    rows = {(r["curve"], r["statistic"]): r for r in read_csv(out / "summary.csv") if r["task"] == "aggregate"}
    ours, abl = "TD-MPC2 (ours)", "TD-MPC2 (ours) [abl]"
    # pooled scores 0 .1 .2 .3 .5 .9 1 1; IQM drops 2 at each end: (.2 + .3 + .5 + .9) / 4
    assert float(rows[(ours, "IQM")]["value"]) == pytest.approx(0.475)
    assert float(rows[(ours, "mean")]["value"]) == pytest.approx((0.375 + 0.625) / 2)  # mean of task means
    assert float(rows[(ours, "optimality gap")]["value"]) == pytest.approx(0.5)
    # pooled 0 .4 .6 1 1; IQM drops 1 at each end: (.4 + .6 + 1) / 3; mean of task means (2/3 + 1/2) / 2
    assert float(rows[(abl, "IQM")]["value"]) == pytest.approx(2.0 / 3.0)
    assert float(rows[(abl, "mean")]["value"]) == pytest.approx((2 / 3 + 0.5) / 2)
    for row in rows.values():
        assert int(row["env_step"]) == 400 and int(row["tasks"]) == 2
        assert float(row["ci_low"]) <= float(row["value"]) <= float(row["ci_high"])
    iqm = rows[(ours, "IQM")]
    assert int(iqm["seeds"]) == 8 and float(iqm["ci_low"]) < 0.475 < float(iqm["ci_high"])  # a real interval
    curves = read_csv(out / "aggregate.csv")
    steps = [int(float(r["env_step"])) for r in curves if r["curve"] == ours and r["statistic"] == "IQM"]
    assert steps == [0, 200, 400]
    # abl at env step 200: pooled 0 0 .2 .3 .5 .8 -> IQM (0 + .2 + .3 + .5) / 4; 6 runs there, 5 at 400
    abl_200 = {r["statistic"]: r for r in curves if r["curve"] == abl and int(float(r["env_step"])) == 200}
    assert float(abl_200["IQM"]["value"]) == pytest.approx(0.25) and int(abl_200["IQM"]["runs"]) == 6
    assert float(abl_200["mean"]["value"]) == pytest.approx((0.45 + 0.0) / 2)
    assert int(rows[(abl, "IQM")]["seeds"]) == 5
    # the same inputs give the same intervals (rliable's resampling is seeded)
    assert plot.main([str(logs), "--out", str(tmp_path / "again"), "--references", "--reps", "500",
                      "--formats", "png"]) == 0
    again = {(r["curve"], r["statistic"]): r for r in read_csv(tmp_path / "again" / "summary.csv")
             if r["task"] == "aggregate"}
    assert again[(ours, "IQM")]["ci_low"] == iqm["ci_low"] and again[(ours, "IQM")]["ci_high"] == iqm["ci_high"]


def write_reference(directory, task, steps, values):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{task}.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "reward", "seed"])
        for seed in (1, 2):
            for step, value in zip(steps, values):
                writer.writerow([step, value + seed, seed])


def reference_marker_steps(ax, label):
    """x of the markers of the reference curve whose legend entry starts with `label`."""
    for container in ax.containers:
        if container.get_label().startswith(label):
            return [float(x) for x in container.lines[0].get_xdata()]
    return None


def test_reference_curves_are_drawn_only_at_measured_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(plot, "REFERENCE_DIR", str(tmp_path / "refs"))
    for task in ("cartpole-balance", "walker-walk"):  # an irregular grid; our runs end at env step 400
        write_reference(tmp_path / "refs" / "fake", task, [0, 150, 400, 1000], [10, 500, 700, 900])
        write_run(tmp_path / "logs", task, 1, "default", False, [5, 30, 60])
        write_run(tmp_path / "logs", task, 2, "default", False, [6, 31, 61])
    runs = plot.load_runs([str(tmp_path / "logs")])
    fig, summary = plot.task_figure("cartpole-balance", [r for r in runs if r.task == "cartpole-balance"], ["fake"])
    ax = fig.axes[0]
    assert reference_marker_steps(ax, "fake (n=2): measured at its own evaluation steps") == [0, 150, 400]
    ref_lines = [line for line in ax.lines if line.get_color() == "0.5"]
    assert ref_lines and max(max(line.get_xdata()) for line in ref_lines) == 400  # nothing beyond the last point
    row = next(r for r in summary if r["curve"] == "fake")
    assert row["env_step"] == 400 and row["value"] == 701.5
    plot.plt.close(fig)
    fig, _ = plot.task_figure("cartpole-balance", [], ["fake"], xmax=200)
    assert reference_marker_steps(fig.axes[0], "fake") == [0, 150]
    plot.plt.close(fig)

    inputs = plot.aggregate_inputs(runs, ["cartpole-balance", "walker-walk"], ["fake"])
    assert [i.label for i in inputs] == ["TD-MPC2 (ours)", "fake"]
    fig, rows, curves, _ = plot.aggregate_figure(inputs, ["cartpole-balance", "walker-walk"], reps=100)
    assert reference_marker_steps(fig.axes[0], "fake") == [0, 150, 400]
    assert {r["curve"] for r in rows} == {"TD-MPC2 (ours)", "fake"}  # both were evaluated at 400
    plot.plt.close(fig)
