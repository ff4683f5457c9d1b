#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run a short hybrid training run on cartpole-balance on the CPU:
# model size 1, a lighter planner, H_c moving linearly from 5 to 0 over the run. Extra arguments
# are passed on as config overrides, e.g. `bash scripts/train_example.sh steps=20000 seed=2`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
export MUJOCO_GL="${MUJOCO_GL:-egl}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/python -m tdmpc2.train_hybrid task=cartpole-balance hybrid_mpc=true model_size=1 \
  steps=3000 seed_steps=1000 eval_freq=1500 eval_episodes=1 num_samples=256 iterations=4 \
  max_classical_horizon=5 transition_steps=3000 hybrid_prefix_samples=32 exp_name=quickstart "$@"
