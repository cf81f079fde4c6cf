"""``medvqa two-stage``: stage 1 then stage 2 on the same LoRA adapter, then (optionally) evaluation."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from medvqa._commands._options import add_options
from medvqa._commands._stage_options import (
    resolve_two_stages,
    two_stage_parser,
)

__all__ = ["register"]

_EPILOG = """\
examples:
  medvqa two-stage --output runs/two_stage
      the paper's presets (paper_stage1, paper_stage2) on Idefics2-8B with QLoRA
  medvqa two-stage --model tiny --set quantization=none --stage1-set max_steps=3 \\
      --stage2-set max_steps=3 --output runs/tiny
      a smoke run on the tiny offline model and the bundled sample
  medvqa two-stage --stage1-config examples/two_stage.yaml \\
      --stage2-config examples/two_stage.yaml --output runs/two_stage --evaluate
      the recipe's stage1 and stage2 sections, then the VQA-RAD test split scored
  medvqa two-stage --stage1-preset recommended_stage1 --stage2-preset recommended \\
      --stage1-data /data/roco --stage2-data ../shared/data/vqa_rad --output runs/recommended

Stage 2 continues stage 1's adapter (no merge, no second adapter) with a fresh optimizer and
schedule. Folders: OUTPUT/<stage1 name>/, OUTPUT/<stage2 name>/, OUTPUT/two_stage.json and
OUTPUT/loss_curves.png (+ .json). Rerunning resumes. --stage1-size 0 skips stage 1.
"""


def register(subparsers: Any) -> None:
    """Add the ``two-stage`` command."""
    p = two_stage_parser(
        subparsers,
        "two-stage",
        help="train stage 1 (captions) then stage 2 (VQA) on one adapter",
        description="The paper's two-stage fine-tuning: stage 1 then stage 2, continuing the same LoRA adapter.",
        epilog=_EPILOG,
    )
    add_options(
        p,
        (
            "stage1_size",
            "report_to",
            "no_resume",
            "on_bad_image",
            "eval_limit",
            "profile",
            "output",
            "no_progress",
        ),
        required=("output",),
        helps={"output": "output folder of the run"},
        deprecated=("--profiles",),
    )
    p.add_argument(
        "--evaluate", action="store_true", help="then answer and score the stage-2 dataset's test split"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    size = args.stage1_size
    s1, s2 = resolve_two_stages(args, subset_size=size or None)
    from medvqa.training import run_two_stage

    result = run_two_stage(
        None if size == 0 else s1,
        s2,
        output_dir=args.output,
        resume=not args.no_resume,
        progress=not args.no_progress,
        on_bad_image=args.on_bad_image,
    )
    for r in (result.stage1, result.stage2):
        if r is not None:
            loss = "n/a" if r.train_loss is None else f"{r.train_loss:.4f}"
            print(f"{r.name}: {r.global_step} steps, mean train loss {loss}", file=sys.stderr)
            if r.bad_images:
                print(
                    f"{r.name}: left out {len(r.bad_images)} samples whose image cannot be decoded "
                    f"(listed in {Path(r.output_dir) / 'result.json'})",
                    file=sys.stderr,
                )
    if args.evaluate:
        _evaluate(args, s2, result.adapter_dir)
    print(result.adapter_dir)
    return 0


def _evaluate(args: argparse.Namespace, s2: Any, adapter_dir: str) -> None:
    """``--evaluate``: answer and score the stage-2 dataset's test split with the trained adapter."""
    from medvqa.training import load_stage_samples, load_trained_model, predict_and_score

    test = load_stage_samples(s2.replace(subset_size=None), split="test")[: args.eval_limit]
    model, processor = load_trained_model(
        s2.model, adapter_dir, quantization=s2.quantization, precision=s2.precision
    )
    ev = predict_and_score(
        model,
        processor,
        test,
        output_dir=args.output,
        name="eval",
        report_to=s2.report_to,
        profiles=args.profile or ["paper", "strict"],
        progress=not args.no_progress,
        on_bad_image=args.on_bad_image,
        info={"model": s2.model, "adapter": adapter_dir, "quantization": s2.quantization},
    )
    for profile, aggs in ev.scores.items():
        for key, agg in aggs.items():
            if agg.get("subset", "all") == "all":
                print(f"{profile}/{key}: {agg['value']} (n={agg['denominator']})", file=sys.stderr)
