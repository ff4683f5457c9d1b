"""Hydra multirun (tdmpc2/train.py): the command line passes validation, every job gets its own
work dir, and a 2-job local sweep with the joblib launcher runs both seeds."""
import csv
import os
import subprocess
import sys

import pytest

from tdmpc2.train import exp_name_from_overrides, hydra_argv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["task=cartpole-balance", "model_size=1", "steps=20", "seed_steps=10", "eval_freq=10",
        "eval_episodes=1", "num_samples=32", "num_elites=8", "num_pi_trajs=4", "iterations=2",
        "batch_size=8", "episode_length=10", "device=cpu", "threads=1"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_exp_name_comes_from_the_job_overrides():
    linear = exp_name_from_overrides(["seed=1", "task=walker-walk", "transition_schedule=linear",
                                      "hybrid_mpc=true", "device=cpu", "hydra.launcher.n_jobs=2"])
    step = exp_name_from_overrides(["transition_schedule=step", "seed=1", "task=walker-walk",
                                    "hybrid_mpc=True", "hydra/launcher=joblib"])  # as a sweep expands it
    assert linear == "hybrid_mpc=true,transition_schedule=linear"  # sorted; seed/task/device left out
    assert step == "hybrid_mpc=true,transition_schedule=step" != linear
    assert exp_name_from_overrides(["seed=3", "task=cartpole-balance"]) == "default"
    assert exp_name_from_overrides(["seed=3", "exp_name=abl", "horizon=5"], "abl") == "abl,horizon=5"
    assert exp_name_from_overrides(["checkpoint=/a/b.pt", "data_dir=x/y"]) == "default"
    long_a = exp_name_from_overrides([f"key{i}=value" for i in range(30)] + ["lr=1"])
    long_b = exp_name_from_overrides([f"key{i}=value" for i in range(30)] + ["lr=2"])
    assert len(long_a) == len(long_b) == 200 and long_a != long_b  # cut, with a hash of the whole


def test_multirun_arguments_pass_validation():
    argv = ["train.py", "-m", "seed=1,2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            "transition_schedule=linear,exponential"]
    assert hydra_argv(argv) == [*argv, "hydra/job_logging=disabled"]
    assert hydra_argv(["train.py", "--multirun", "seed=1"])[-1] == "hydra/job_logging=disabled"


def test_joblib_multirun_runs_two_seeds_in_their_own_dirs(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    cmd = [sys.executable, "-m", "tdmpc2.train", "-m", "seed=1,2", "hydra/launcher=joblib",
           "hydra.launcher.n_jobs=2", *TINY, "transition_schedule=step", f"log_dir={tmp_path}"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    name = exp_name_from_overrides(TINY + ["transition_schedule=step"])
    runs = {}
    for seed in (1, 2):
        work_dir = tmp_path / "cartpole-balance" / str(seed) / name
        assert (work_dir / "models" / "final.pt").is_file()
        config = (work_dir / "config.yaml").read_text()
        assert f"seed: {seed}\n" in config and f"work_dir: {work_dir}\n" in config
        runs[seed] = read_csv(work_dir / "eval.csv")
        assert [int(r["step"]) for r in runs[seed]] == [0, 10, 20]
    # different seeds: different initial states, hence different returns
    assert [r["episode_reward"] for r in runs[1]] != [r["episode_reward"] for r in runs[2]]
    # hydra's sweep bookkeeping stays in <log_dir>/.sweeps, nothing lands in the working directory
    assert sorted(os.listdir(tmp_path)) == [".sweeps", "cartpole-balance"]
