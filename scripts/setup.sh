#!/usr/bin/env bash
# Create ./.venv and install medvqa into it.
#   bash scripts/setup.sh            # the library and its training stack
#   bash scripts/setup.sh dev        # + test, docs and lint tools
# torch is installed first, pinned, so that pip never resolves an unpinned (multi-GB) build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="train"
[ "${1:-}" = "dev" ] && extras="dev"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==${MEDVQA_TORCH_VERSION:-2.13.0}"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[${extras}]"
