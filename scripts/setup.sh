#!/usr/bin/env bash
# Create .venv (once) and install hybrid-tdmpc2 into it with the CPU build of torch 2.13.0.
# Idempotent: a second run only checks what is installed. For a CUDA machine, install the CUDA
# build of torch into the venv first (see README); this script then leaves it alone.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=(pip_install)
pip_install() {  # quiet, minus the notices about this machine's missing local index folders
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}
FIND_LINKS=()
if [ -d /opt/wheels ]; then FIND_LINKS=(--find-links /opt/wheels); fi  # local CPU torch wheel

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch==2.13.0 (CPU)"
  "${PIP[@]}" "${FIND_LINKS[@]}" "torch==2.13.0"
fi
# (re)install when the venv has not seen this pyproject.toml yet (new or changed dependencies)
STAMP="$VENV/.hybrid-tdmpc2-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ] || ! "$VENV/bin/python" -c "import tdmpc2" >/dev/null 2>&1; then
  echo "setup: installing hybrid-tdmpc2 and its dependencies"
  "${PIP[@]}" "${FIND_LINKS[@]}" -e "$ROOT[dev]"
  echo "$WANT" > "$STAMP"
fi
echo "setup: ready ($("$VENV/bin/python" -c 'import torch, mujoco; print(f"torch {torch.__version__}, mujoco {mujoco.__version__}")'))"
