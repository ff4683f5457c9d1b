"""The online trainer's schedule (spec 7.1/7.2, with a stub env and agent), the training CLI
end to end (CPU, tiny settings) and its handling of bad input."""
import csv
import os
import subprocess
import sys

import pytest
import torch

from tdmpc2.common.buffer import Buffer
from tdmpc2.common.logger import Logger
from tdmpc2.config import load_config
from tdmpc2.trainer import OnlineTrainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["task=cartpole-balance", "model_size=1", "steps=400", "seed_steps=200", "eval_freq=200",
        "eval_episodes=1", "num_samples=64", "iterations=2", "batch_size=32", "episode_length=100",
        "checkpoint_freq=200", "device=cpu"]


def run_cli(args, cwd=REPO, module=False, timeout=300):
    cmd = [sys.executable, "-m", "tdmpc2.train"] if module else [sys.executable, os.path.join(REPO, "tdmpc2", "train.py")]
    env = {**os.environ, "PYTHONPATH": ""}  # the script must find the package by itself
    return subprocess.run(cmd + list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class CountingEnv:
    """Observation = step within the episode; reward 1 per step; episodes of `length` steps."""

    def __init__(self, length: int, terminate: bool = False):
        self.length, self.terminate, self.t, self.random_actions = length, terminate, 0, 0

    def reset(self):
        self.t = 0
        return torch.zeros(2)

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        info = {"terminated": torch.tensor(float(done and self.terminate)), "success": 0.5}
        return torch.full((2,), float(self.t)), torch.tensor(1.0), done, info

    def rand_act(self):
        self.random_actions += 1
        return torch.zeros(1)


class RecordingAgent:
    """Records how the trainer calls it; implements the hybrid hooks."""

    device = torch.device("cpu")

    def __init__(self):
        self.train_acts, self.eval_acts, self.updates, self.notified = [], [], 0, []

    def act(self, obs, t0=False, eval_mode=False, task=None):
        (self.eval_acts if eval_mode else self.train_acts).append((int(obs[0]), t0))
        return torch.zeros(1)

    def update(self, buffer):
        buffer.sample()
        self.updates += 1
        return {"total_loss": torch.tensor(float(self.updates))}

    def update_training_step(self, step):
        self.notified.append(step)

    def get_hybrid_info(self):
        return {"classical_horizon": 3}

    def save(self, path):
        torch.save({"updates": self.updates}, path)


def make_trainer(tmp_path, env, **overrides):
    settings = dict(task="cartpole-balance", steps=60, seed_steps=25, eval_freq=25, eval_episodes=1,
                    episode_length=10, horizon=3, batch_size=4, checkpoint_freq=20,
                    work_dir=str(tmp_path))
    cfg = load_config(**{**settings, **overrides})
    agent = RecordingAgent()
    return OnlineTrainer(cfg, env, agent, Buffer.from_config(cfg, "cpu"), Logger(cfg)), agent


def test_seed_steps_shorter_than_an_episode_defer_pretraining(tmp_path):
    """seed_steps=5 with 10-step episodes: pre-training waits for the first whole episode
    (added at n = 10), actions stay random until then, then one update per step."""
    env = CountingEnv(length=10)
    trainer, agent = make_trainer(tmp_path, env, steps=30, seed_steps=5)
    trainer.train()
    assert env.random_actions == 11 and len(agent.train_acts) == 20
    assert agent.updates == 5 + 20


def test_trainer_schedule_follows_spec(tmp_path):
    env = CountingEnv(length=10)
    trainer, agent = make_trainer(tmp_path, env)
    final = trainer.train()
    # random actions for n = 0..seed_steps inclusive, then the planner for n = 26..60
    assert env.random_actions == 26 and len(agent.train_acts) == 35
    assert [t0 for obs, t0 in agent.train_acts] == [obs == 0 for obs, _ in agent.train_acts]
    assert agent.updates == 25 + 35  # seed_steps updates at n = 25, then one per step
    assert agent.notified == list(range(61))
    # evaluations at the first episode boundary at/after 0, 25, 50
    evals = read_csv(tmp_path / "eval.csv")
    assert [int(r["step"]) for r in evals] == [0, 30, 50]
    assert all(float(r["episode_reward"]) == 10 and float(r["episode_success"]) == 0.5 for r in evals)
    assert len(agent.eval_acts) == 3 * 10 and evals[0]["classical_horizon"] == "3"
    train = read_csv(tmp_path / "train.csv")
    assert [int(r["step"]) for r in train] == [10, 20, 30, 40, 50, 60]
    assert [r["total_loss"] for r in train][:2] == ["", ""] and float(train[2]["total_loss"]) == 25 + 4
    assert all(int(r["episode_length"]) == 11 and r["classical_horizon"] == "3" for r in train)
    assert sorted(os.listdir(tmp_path / "models")) == ["final.pt", "step_20.pt", "step_40.pt"]
    assert final == str(tmp_path / "models" / "final.pt")
    # capacity = min(buffer_size, steps) = 60 entries: the oldest of six 11-entry episodes went
    assert trainer.buffer.num_eps == 6 and trainer.buffer.num_stored_eps == 5 and len(trainer.buffer) == 55


def test_updates_per_step_multiplies_the_updates_after_pretraining(tmp_path):
    """updates_per_step=3: the pre-training burst stays seed_steps updates, then three per step;
    the acting schedule is unchanged."""
    env = CountingEnv(length=10)
    trainer, agent = make_trainer(tmp_path, env, updates_per_step=3)
    trainer.train()
    assert env.random_actions == 26 and len(agent.train_acts) == 35
    assert agent.updates == 25 + 3 * 35
    with pytest.raises(Exception, match="updates_per_step"):
        load_config(task="cartpole-balance", updates_per_step=0)


def test_termination_without_episodic_is_an_error(tmp_path):
    trainer, _ = make_trainer(tmp_path, CountingEnv(length=10, terminate=True))
    with pytest.raises(RuntimeError, match="episodic=false"):
        trainer.train()


def test_short_run_writes_logs_and_checkpoints(tmp_path):
    result = run_cli(TINY + [f"log_dir={tmp_path}"])
    assert result.returncode == 0, result.stderr[-2000:]
    work_dir = tmp_path / "cartpole-balance" / "1" / "default"

    evals = read_csv(work_dir / "eval.csv")
    assert list(evals[0])[:4] == ["step", "env_step", "episode_reward", "episode_success"]
    assert [int(r["step"]) for r in evals] == [0, 200, 400]  # incl. step 0 and step == steps
    assert all(int(r["env_step"]) == 2 * int(r["step"]) for r in evals)
    assert all(0 <= float(r["episode_reward"]) <= 2 * 100 for r in evals)

    train = read_csv(work_dir / "train.csv")
    assert [int(r["step"]) for r in train] == [100, 200, 300, 400]
    assert [int(r["episode"]) for r in train] == [1, 2, 3, 4]
    assert all(int(float(r["episode_length"])) == 101 for r in train)
    assert train[0]["total_loss"] == "" and float(train[-1]["total_loss"]) > 0  # updates from step 200

    models = sorted(os.listdir(work_dir / "models"))
    assert models == ["final.pt", "step_200.pt"]
    assert "pretraining" in result.stdout and "Traceback" not in result.stderr


def test_run_from_inside_the_package_directory_and_as_module(tmp_path):
    """`python train.py` from tdmpc2/ must import the package, not the module tdmpc2/tdmpc2.py."""
    by_path = run_cli(["task=cartpole-blance"], cwd=os.path.join(REPO, "tdmpc2"))
    as_module = run_cli(["task=cartpole-blance"], module=True)
    for result in (by_path, as_module):
        assert result.returncode == 2 and "Unknown task 'cartpole-blance'" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["task=cartpole-blance"], "Did you mean cartpole-balance"),
    (["tsak=cartpole-balance"], "Unknown config key 'tsak'; did you mean 'task'?"),
    (["+foo=1"], "Unknown config key 'foo'"),
    (["model_size=3"], "Config key 'model_size' must be one of 1, 5, 19, 48, 317"),
    (["steps=abc"], "Config key 'steps' must be a number"),
    (["checkpoint=/nonexistent/model.pt"], "does not exist"),
])
def test_bad_input_fails_with_one_line(args, message, tmp_path):
    result = run_cli(args + [f"log_dir={tmp_path}"])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_checkpoint_of_another_architecture_is_rejected(tmp_path):
    from tdmpc2.config import load_config
    from tdmpc2.tdmpc2 import TDMPC2

    path = tmp_path / "small.pt"
    TDMPC2(load_config(task="cartpole-balance", model_size=1, device="cpu")).save(str(path))
    result = run_cli([f"checkpoint={path}", "model_size=5", f"log_dir={tmp_path}"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "different architecture" in lines[0], result.stderr
