"""tdmpc2/evaluate.py: a released (upstream-format) checkpoint evaluated with and without hybrid
planning on the same episodes, with videos; bad input fails in one line with exit code 2."""
import csv
import os
import subprocess
import sys

import pytest
import torch

from tdmpc2.config import load_config
from tdmpc2.evaluate import evaluate
from tdmpc2.tdmpc2 import TDMPC2, CheckpointError
from test_upstream_checkpoint import upstream_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(task="cartpole-balance", model_size=1, episode_length=15, num_samples=32, num_elites=8,
            num_pi_trajs=4, iterations=2, device="cpu", threads=1)
HYBRID = dict(hybrid_mpc=True, max_classical_horizon=2, ilqg_iterations=2, hybrid_prefix_samples=4)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def save_upstream(path, task="cartpole-balance"):
    torch.manual_seed(0)
    agent = TDMPC2(load_config(**{**TINY, "task": task}))
    torch.save(upstream_state(agent.model.state_dict()), path)
    return str(path)


def test_evaluate_released_checkpoint_with_and_without_hybrid_planning(tmp_path):
    checkpoint = save_upstream(tmp_path / "released.pt")
    args = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in {**TINY, **HYBRID}.items()]
    cmd = [sys.executable, "-m", "tdmpc2.evaluate", *args, f"checkpoint={checkpoint}", "eval_episodes=2",
           "save_video=true", f"log_dir={tmp_path / 'logs'}"]
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    out_dir = tmp_path / "logs" / "cartpole-balance" / "1" / "default" / "evaluate"
    hybrid, learned = read_csv(out_dir / "hybrid.csv"), read_csv(out_dir / "learned_only.csv")
    assert [r["episode"] for r in hybrid] == [r["episode"] for r in learned] == ["0", "1"]
    assert [r["seed"] for r in hybrid] == [r["seed"] for r in learned] and hybrid[0]["seed"] != hybrid[1]["seed"]
    assert all(r["episode_length"] == "15" for r in hybrid + learned)
    for name in ("hybrid", "learned_only"):
        assert (out_dir / f"{name}.mp4").stat().st_size > 1000, name
    assert "hybrid planner (H_c=2)" in result.stdout and "learned_only planner (H_c=0)" in result.stdout


def test_evaluate_bad_input_is_one_line_with_exit_code_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tdmpc2.evaluate", "task=cartpole-balance", "model_size=1",
                             f"log_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: evaluate needs checkpoint="), \
        result.stderr
    # a released checkpoint of another task, in-process: the same one-sentence CheckpointError
    checkpoint = save_upstream(tmp_path / "walker.pt", task="walker-walk")
    with pytest.raises(CheckpointError, match="has shape .* but this agent needs"):
        evaluate(load_config(**TINY, checkpoint=checkpoint, eval_episodes=1, log_dir=str(tmp_path)))
