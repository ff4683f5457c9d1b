#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite plus the hybrid smoke check on CPU.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
export MUJOCO_GL="${MUJOCO_GL:-egl}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
.venv/bin/python test_hybrid.py
.venv/bin/python -m pytest -q "$@"
