"""Resuming a killed run (tdmpc2/trainer.py, tdmpc2/train.py): a run killed with SIGKILL and
started again with the same command ends with the same buffer, step counter and CSV rows as an
uninterrupted run, and (CPU, one thread) with bit-identical returns and losses after the
resume point. Also: the CSV truncation on resume, the finished-run marker and the one-line
errors for a corrupt or foreign resume checkpoint."""
import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tdmpc2.common.logger import CsvLog

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 4 episodes of 20 steps; pre-training at step 20; resume checkpoints at steps 20, 40, 60.
SHORT = ["task=cartpole-balance", "model_size=1", "steps=80", "seed_steps=20", "eval_freq=20",
         "eval_episodes=1", "num_samples=32", "num_elites=8", "num_pi_trajs=4", "iterations=2",
         "batch_size=32", "episode_length=20", "checkpoint_freq=20", "device=cpu", "threads=1"]


def is_timing(column):  # wall-clock columns (elapsed time, planner timings) are never reproducible
    return column == "steps_per_second" or column.endswith("_time")


# the hybrid agent: H_c 3 -> 0 over the run (linear), so the schedule state matters
HYBRID = ["hybrid_mpc=true", "max_classical_horizon=3", "transition_steps=80", "ilqg_iterations=2",
          "hybrid_prefix_samples=4", "classical_plan_horizon=6"]
# every teaching mechanism on (tdmpc2/teaching.py): provenance and labels must come back too
TEACHING = HYBRID + ["seed_policy=classical", "distill_coef=1", "distill_q_filter=true", "distill_bc_updates=5",
                     "expert_fraction=0.5", "learner_episode_prob=0.5", "relabel_fraction=0.5", "branch_prob=0.5",
                     "return_bound=all"]
VARIANTS = {"tdmpc2": ("tdmpc2.train", []), "hybrid": ("tdmpc2.train_hybrid", HYBRID),
            "teaching": ("tdmpc2.train_hybrid", TEACHING)}


def command(log_dir, variant="tdmpc2"):
    module, extra = VARIANTS[variant]
    return [sys.executable, "-m", module, *SHORT, *extra, f"log_dir={log_dir}"]


def run(log_dir, extra=(), timeout=120, variant="tdmpc2"):
    return subprocess.run(command(log_dir, variant) + list(extra), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def comparable(rows):
    return [{k: v for k, v in row.items() if not is_timing(k)} for row in rows]


def work_dir(log_dir):
    return os.path.join(str(log_dir), "cartpole-balance", "1", "default")


def kill_after_train_row(log_dir, min_step, variant, timeout=120):
    """Start the run, SIGKILL it as soon as train.csv has a row at step >= min_step (a resume
    checkpoint exists by then); returns the step of the last train row seen."""
    proc = subprocess.Popen(command(log_dir, variant), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    path = os.path.join(work_dir(log_dir), "train.csv")
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before it was killed: {proc.stderr.read()[-2000:]}")
            if os.path.exists(path):
                steps = [int(r["step"]) for r in read_csv(path) if r.get("step")]
                if steps and steps[-1] >= min_step:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    return steps[-1]
            time.sleep(0.02)
        raise AssertionError("the run did not reach the kill point in time")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


@pytest.mark.parametrize("variant", ["tdmpc2", "hybrid", "teaching"])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, variant):
    full_dir, killed_dir = tmp_path / "full", tmp_path / "killed"
    # the uninterrupted run goes alongside the one that is killed (2 cores)
    full = subprocess.Popen(command(full_dir, variant), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        killed_at = kill_after_train_row(killed_dir, min_step=60, variant=variant)
        _, full_err = full.communicate(timeout=120)
    finally:
        if full.poll() is None:
            full.kill()
            full.communicate()
    assert full.returncode == 0, full_err[-2000:]
    assert killed_at >= 60
    state = torch.load(os.path.join(work_dir(killed_dir), "resume.pt"), weights_only=True)
    assert state["step"] in (40, 60) and not state["complete"] and state["pretrained"]
    if variant != "tdmpc2":
        assert state["agent"]["hybrid"]["training_step"] == state["step"] - 1  # last step acted on
    if variant == "teaching":  # the resume point holds every transition's source and label
        data = state["buffer"]["data"]
        seed_entries = data["source"][1:21]  # the classical seed episode
        assert (seed_entries == 1).all() and torch.isfinite(data["expert_action"][1:21]).all()
        assert torch.isfinite(data["return_to_go"][1:21]).all()  # the returns of return_bound
        assert set(data["source"].tolist()) >= {-1, 1, 2}

    resumed = run(killed_dir, variant=variant)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {os.path.join(work_dir(killed_dir), 'resume.pt')} at step {state['step']}" \
        in resumed.stdout
    assert "pretraining" not in resumed.stdout  # the pretrained flag came back

    for name in ("train.csv", "eval.csv"):
        a = read_csv(os.path.join(work_dir(full_dir), name))
        b = read_csv(os.path.join(work_dir(killed_dir), name))
        assert [r["step"] for r in b] == [r["step"] for r in a]  # no duplicated or missing rows
        # CPU, one thread: every return, success and loss after the resume point is bit-identical
        assert comparable(b) == comparable(a), name
    assert [int(r["step"]) for r in read_csv(os.path.join(work_dir(killed_dir), "eval.csv"))] == [0, 20, 40, 60, 80]

    # final agents: same step counter, buffer and weights
    final_full = torch.load(os.path.join(work_dir(full_dir), "models", "final.pt"), weights_only=True)
    final_resumed = torch.load(os.path.join(work_dir(killed_dir), "models", "final.pt"), weights_only=True)
    for key, value in final_full["model"].items():
        assert torch.equal(value, final_resumed["model"][key]), key
    marker_full = torch.load(os.path.join(work_dir(full_dir), "resume.pt"), weights_only=True)
    marker_resumed = torch.load(os.path.join(work_dir(killed_dir), "resume.pt"), weights_only=True)
    assert marker_full["complete"] and marker_resumed["complete"]
    assert marker_full["step"] == marker_resumed["step"] == 81
    assert marker_full["logs"] == marker_resumed["logs"] == {"train": 4, "eval": 5}
    assert not [f for f in os.listdir(work_dir(killed_dir)) if ".tmp" in f]


def test_bad_resume_checkpoints_fail_in_one_line_and_resume_false_starts_over(tmp_path):
    directory = work_dir(tmp_path)
    os.makedirs(directory)
    with open(os.path.join(directory, "resume.pt"), "wb") as f:
        f.write(b"\x00garbage")  # e.g. a file some other tool truncated
    corrupt = run(tmp_path, timeout=60)
    lines = corrupt.stderr.strip().splitlines()
    assert corrupt.returncode == 2 and len(lines) == 1 and "is corrupt" in lines[0], corrupt.stderr

    torch.save({"format": "hybrid-tdmpc2-resume/1", "complete": True, "step": 81,
                "config": {"task": "cartpole-balance", "steps": 999}}, os.path.join(directory, "resume.pt"))
    result = run(tmp_path, timeout=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "belongs to another run" in lines[0] and "resume=false" in lines[0]
    fresh = run(tmp_path, ["resume=false", "steps=20", "seed_steps=10", "eval_freq=20",
                           "episode_length=10"], timeout=60)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert "resuming" not in fresh.stdout
    assert torch.load(os.path.join(directory, "resume.pt"), weights_only=True)["config"]["steps"] == 20
    again = run(tmp_path, ["steps=20", "seed_steps=10", "eval_freq=20", "episode_length=10"], timeout=60)
    assert again.returncode == 0 and "holds a finished run (20 steps); nothing to do" in again.stdout


def test_csv_log_keeps_only_the_checkpointed_rows(tmp_path):
    path = str(tmp_path / "eval.csv")
    log = CsvLog(path)
    for step in range(5):
        log.write({"step": step, "episode_reward": float(step)})
    log.write({"step": 5, "episode_reward": 5.0, "late_field": 1})  # widens the header
    resumed = CsvLog(path, keep_rows=3)
    assert resumed.rows == 3 and resumed.missing_rows == 0
    resumed.write({"step": 3, "episode_reward": 30.0})
    rows = read_csv(path)
    assert [r["step"] for r in rows] == ["0", "1", "2", "3"] and rows[-1]["episode_reward"] == "30.0"
    assert "late_field" in rows[0]
    assert CsvLog(path, keep_rows=10).missing_rows == 6
    CsvLog(path)  # a fresh log removes the old file
    assert not os.path.exists(path)


def test_a_key_added_after_the_run_started_resumes_only_at_its_default(tmp_path):
    """resume.pt of a run started before a config key existed: resuming with that key at its
    default (the behaviour of the code that wrote it) continues; any other value is another run."""
    from tdmpc2.common.checkpoint import atomic_torch_save
    from tdmpc2.config import config_to_dict, load_config
    from tdmpc2.train import load_resume_state

    cfg = load_config(task="cartpole-balance", work_dir=str(tmp_path))
    saved = config_to_dict(cfg)
    saved.pop("distill_coef")  # as written by a version without planner distillation
    atomic_torch_save({"format": "hybrid-tdmpc2-resume/1", "complete": True, "step": 5, "config": saved,
                       "logs": {}}, str(tmp_path / "resume.pt"))
    assert load_resume_state(cfg)["step"] == 5
    cfg.distill_coef = 0.5
    from tdmpc2.tdmpc2 import CheckpointError
    with pytest.raises(CheckpointError, match="distill_coef"):
        load_resume_state(cfg)
