#!/usr/bin/env bash
# Reproduce every row of the paper's table and every figure with HuggingFaceM4/idefics2-8b on a GPU.
#
#   bash examples/run_all.sh            # the real thing: needs a CUDA GPU (~24 GB for QLoRA) and the
#                                       # data under ./data (vqa_rad, roco with images, pathvqa, medhalt)
#   bash examples/run_all.sh --tiny     # every recipe on the tiny model and the bundled sample (CI)
#
# Each step is resumable: rerunning skips what is finished. Outputs: medvqa-output/examples/ (or
# --output DIR). Order matters: the rows after two_stage evaluate its adapter. The last step prints
# one table of every evaluation that ran (medvqa report over the score files, strict profile: the
# one every recipe scores).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-0}" TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg
out=medvqa-output/examples  # the scripts' default --output
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --output) out="${args[i + 1]:-$out}" ;;
    --output=*) out="${args[i]#--output=}" ;;
  esac
done
for recipe in base base_ood single_stage two_stage two_stage_ood swapped_images expert_prompt \
              nonsense_questions loss_curves human_evaluation_sheet size_sweep; do
  echo "== ${recipe}"
  "$PY" "examples/${recipe}.py" --config "examples/${recipe}.yaml" "$@"
done
echo "== single_stage (as the paper ran it)"
"$PY" examples/single_stage.py --config examples/single_stage_as_run.yaml "$@"

echo "== every evaluation in one table"
runs=()
for f in "$out"/evaluations/*.scores.json; do
  [ -e "$f" ] && runs+=("$f")
done
while IFS= read -r f; do  # every size's run is called eval: label it by its size, smallest first
  [ -e "$f" ] && runs+=("sweep_$(basename "$(dirname "$f")")=$f")
done < <(printf '%s\n' "$out"/size_sweep/size_*/eval.scores.json | sort -V)
"$PY" -m medvqa report "${runs[@]}" --profile strict --title "examples/run_all.sh"
