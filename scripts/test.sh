#!/usr/bin/env bash
# Set everything up and run the whole check: lint, types, docs (warnings are errors), tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export MPLBACKEND=Agg PYTHONHASHSEED=0
bash scripts/setup.sh dev
echo "== ruff"; .venv/bin/ruff check src tests benchmarks examples
.venv/bin/ruff format --check src tests benchmarks examples
echo "== mypy"; .venv/bin/mypy
echo "== docs"; .venv/bin/sphinx-build -q -W --keep-going -b html docs docs/_build/html
echo "== pytest"; .venv/bin/python -m pytest -q "$@"
