"""The cluster path, run locally: a 2-job hydra multirun through the submitit launcher with its
local executor (`hydra/launcher=submitit_local`: the same pickled job, submission folder and result
collection as `submitit_slurm`, without sbatch). Each job gets its own work dir and finishes its
CSVs; a sweep SIGKILLed mid-run (launcher and jobs) and launched again with the same command
resumes the killed job from its resume.pt instead of starting over."""
import csv
import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tdmpc2.train import exp_name_from_overrides

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 4 episodes of 10 steps; resume checkpoints at steps 10, 20, 30
TINY = ["task=cartpole-balance", "model_size=1", "steps=40", "seed_steps=10", "eval_freq=20", "eval_episodes=1",
        "num_samples=32", "num_elites=8", "num_pi_trajs=4", "iterations=2", "batch_size=16", "episode_length=10",
        "checkpoint_freq=10", "device=cpu", "threads=1"]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def last_train_step(work_dir):
    path = os.path.join(work_dir, "train.csv")
    try:
        steps = [int(r["step"]) for r in read_csv(path) if r.get("step")]
    except (FileNotFoundError, ValueError):
        return -1
    return steps[-1] if steps else -1


def kill_sweep_mid_run(cmd, work_dirs, min_step, timeout=120):
    """Start the sweep in its own process group and SIGKILL the group (launcher, submitit and both
    jobs) once some job logged a train row at step >= min_step; returns that job's work dir."""
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"the sweep ended before it was killed: {proc.stderr.read()[-2000:]}")
            for work_dir in work_dirs:
                if last_train_step(work_dir) >= min_step and os.path.exists(os.path.join(work_dir, "resume.pt")):
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return work_dir
            time.sleep(0.05)
        raise AssertionError("no job reached the kill point in time")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()


@pytest.mark.slow
def test_submitit_local_sweep_runs_two_jobs_and_resumes_after_a_kill(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cmd = [sys.executable, "-m", "tdmpc2.train", "-m", "seed=1,2", "hydra/launcher=submitit_local",
           "hydra.launcher.timeout_min=10", *TINY, f"log_dir={tmp_path}"]
    name = exp_name_from_overrides(TINY)
    work_dirs = {seed: str(tmp_path / "cartpole-balance" / str(seed) / name) for seed in (1, 2)}

    killed = kill_sweep_mid_run(cmd, list(work_dirs.values()), min_step=10)
    state = torch.load(os.path.join(killed, "resume.pt"), weights_only=True)
    assert not state["complete"] and state["step"] in (10, 20, 30)

    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    for seed, work_dir in work_dirs.items():
        assert f"seed: {seed}\n" in open(os.path.join(work_dir, "config.yaml")).read()
        assert [int(r["step"]) for r in read_csv(os.path.join(work_dir, "eval.csv"))] == [0, 20, 40]
        assert [int(r["step"]) for r in read_csv(os.path.join(work_dir, "train.csv"))] == [10, 20, 30, 40]
        assert os.path.isfile(os.path.join(work_dir, "models", "final.pt"))
        assert torch.load(os.path.join(work_dir, "resume.pt"), weights_only=True)["complete"]
    # the killed job continued from its checkpoint: its submitit log says so
    job_logs = glob.glob(str(tmp_path / ".sweeps" / "*" / ".submitit" / "*" / "*_log.out"))
    logs = "".join(open(path).read() for path in job_logs)
    assert f"resuming from {os.path.join(killed, 'resume.pt')} at step {state['step']}" in logs
    assert sorted(os.listdir(tmp_path)) == [".sweeps", "cartpole-balance"]
