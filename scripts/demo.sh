#!/usr/bin/env bash
# Set everything up and run the demo on the data bundled with the package.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
bash scripts/setup.sh
.venv/bin/medvqa demo "$@"
