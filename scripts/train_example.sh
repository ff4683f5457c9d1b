#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run a short hybrid training run on cartpole-balance on the CPU:
# model size 1, a lighter planner (128 samples x 3 iterations, batch 128), H_c moving linearly
# from 5 to 0 over 1,500 agent steps, evaluated at the start and the end (both planners). Extra arguments
# are passed on as config overrides, e.g. `bash scripts/train_example.sh steps=20000 seed=2`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
export MUJOCO_GL="${MUJOCO_GL:-egl}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/python -m tdmpc2.train_hybrid task=cartpole-balance hybrid_mpc=true model_size=1 \
  steps=1500 seed_steps=500 eval_freq=1500 eval_episodes=1 num_samples=128 iterations=3 batch_size=128 \
  max_classical_horizon=5 transition_steps=1500 hybrid_prefix_samples=16 exp_name=quickstart "$@"
