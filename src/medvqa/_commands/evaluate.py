"""``medvqa evaluate``: predict and score in one step (answers, per-item scores, aggregates)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from medvqa._commands._common import (
    DATASET_NAMES,
    add_engine_options,
    add_generation_loading_options,
    add_report_to_option,
    load_questions,
    positive_int,
    resolve_prompt,
    server_engine,
)
from medvqa._commands._run_options import add_run_options

__all__ = ["register"]

_EPILOG = """\
examples:
  medvqa evaluate --model tiny --quantization none --dataset vqa_rad --output runs/eval_tiny
      the tiny offline model on the bundled VQA-RAD test sample
  medvqa evaluate --model HuggingFaceM4/idefics2-8b --adapter runs/two_stage/stage2/adapter \\
      --dataset vqa_rad --data ../shared/data/vqa_rad --limit 400 --name two_stage --output runs/eval
      the paper's "two-stage" row (first 400 test questions)
  medvqa evaluate --model HuggingFaceM4/idefics2-8b --adapter runs/two_stage/stage2/adapter \\
      --prompt expert --dataset vqa_rad --data ../shared/data/vqa_rad --limit 400 --name expert --output runs/eval
  medvqa evaluate ... --transform swap_images --name swapped
      the swapped-images ablation (seeded; no question keeps an image with the same content)
  medvqa evaluate --model HuggingFaceM4/idefics2-8b --adapter runs/two_stage/stage2/adapter \
      --as-run --seed 42 --dataset vqa_rad --data data/vqa_rad_hf --limit 400 --name two_stage_as_run --output runs/eval
      the paper's evaluation as it was run, flaws included: LoRA dropout active (seeded by --seed),
      the fine-tuned model in fp16 without quantization, one question at a time

Writes OUTPUT/NAME.predictions.jsonl (answers; rerunning resumes), OUTPUT/NAME.items.jsonl
(per-item scores) and OUTPUT/NAME.scores.json (aggregates with n and 95% bootstrap intervals).
The run's settings go to OUTPUT/NAME.predictions.run.json; resuming with other settings is
refused, and a predictions file without it needs --resume-unverified. A second run on the
same OUTPUT and NAME is refused while the first one runs (lock file beside the predictions).
The base model and adapters are loaded the same way (same quantization and dtype) and the
adapter is in eval mode, so that LoRA dropout is off.
"""


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` command."""
    p = subparsers.add_parser(
        "evaluate",
        help="answer a dataset split and score the answers (predict + score)",
        description="Generate answers for a dataset split and score them under one or more profiles.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from medvqa._commands.models import add_family_option

    p.add_argument("--model", required=True, help="base model folder or hub id, or 'tiny'")
    add_family_option(p)
    p.add_argument("--adapter", type=Path, default=None, help="LoRA adapter folder (default: the base model)")
    p.add_argument(
        "--quantization",
        choices=("nf4", "fp4", "int8", "none"),
        default="nf4",
        help="load the base model quantized (default: nf4, the paper's QLoRA base)",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "fp16", "bf16"),
        default="auto",
        help="compute dtype (default: auto = bf16 where supported, fp16 on other GPUs, fp32 on CPU)",
    )
    p.add_argument("--dataset", required=True, choices=DATASET_NAMES, help="dataset name")
    p.add_argument("--data", default=None, help="dataset folder (default: the bundled sample)")
    p.add_argument("--split", default="test", help="split to answer (default: test)")
    p.add_argument(
        "--limit", type=positive_int, default=None, help="answer only the first N questions in dataset order"
    )
    p.add_argument("--prompt", choices=("paper", "expert", "caption"), default=None, help="built-in prompt")
    p.add_argument("--instruction", default=None, help="custom instruction text replacing 'Answer briefly.'")
    p.add_argument(
        "--transform",
        choices=("swap_images", "blank_image", "no_image"),
        default=None,
        help="apply an ablation to the questions first (seeded by --seed)",
    )
    p.add_argument(
        "--profiles", default="paper,strict", help="scoring profiles, comma-separated (default: paper,strict)"
    )
    p.add_argument(
        "--max-new-tokens", type=positive_int, default=20, help="longest answer in tokens (paper: 20)"
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="generation batch size (default: 8; 1 with --as-run)",
    )
    p.add_argument(
        "--as-run",
        action="store_true",
        help="reproduce the paper's evaluation FLAWS on purpose: LoRA dropout active at inference "
        "(seeded by --seed), an adapter on an fp16 base without quantization (the base model alone: "
        "nf4), batch size 1; replaces --quantization and --precision. Not a fair comparison",
    )
    p.add_argument(
        "--n-boot", type=int, default=1000, help="bootstrap replicates (default: 1000; 0: no intervals)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the transform, the bootstrap and (--as-run) the dropout masks (default: 0)",
    )
    p.add_argument("--name", default="eval", help="file prefix of the outputs (default: eval)")
    p.add_argument("--output", type=Path, required=True, help="output folder")
    add_generation_loading_options(p)
    add_engine_options(p)
    add_report_to_option(p, training=False)
    add_run_options(p)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    prompt = resolve_prompt(args.prompt, args.instruction)
    engine = server_engine(args)
    dataset, source, samples = load_questions(args.dataset, args.data, args.split, args.limit)
    if args.transform is not None:
        from medvqa import transforms

        make = {
            "swap_images": transforms.SwapImages,
            "blank_image": transforms.BlankImage,
            "no_image": transforms.NoImage,
        }
        t = make[args.transform]
        samples = list(t(seed=args.seed)(samples) if args.transform == "swap_images" else t()(samples))

    from medvqa.training import AS_RUN_NOTE, as_run_loading, load_trained_model, predict_and_score

    batch_size = args.batch_size if args.batch_size is not None else (1 if args.as_run else 8)
    quantization, precision = args.quantization, args.precision
    model: Any = engine  # the server engine stands in for the model
    processor: Any = None
    if args.as_run:
        if engine is not None:
            raise ValueError(
                "--as-run keeps the model's LoRA dropout active in this process; use --engine hf"
            )
        quantization, precision = as_run_loading(args.adapter)
        print(f"{AS_RUN_NOTE} (quantization {quantization}, precision {precision})", file=sys.stderr)
    if engine is None:
        model, processor = load_trained_model(
            args.model, args.adapter, quantization=quantization, precision=precision, family=args.family
        )
    result = predict_and_score(
        model,
        processor,
        samples,
        output_dir=args.output,
        name=args.name,
        prompt=prompt,
        profiles=[p for p in args.profiles.split(",") if p],
        max_new_tokens=args.max_new_tokens,
        batch_size=batch_size,
        seed=args.seed,
        n_boot=args.n_boot,
        progress=not args.no_progress,
        num_workers=args.num_workers,
        sort_by_length=args.sort_by_length,
        report_to=args.report_to or "none",
        as_run=args.as_run,
        dropout_seed=args.seed,
        resume_unverified=args.resume_unverified,
        on_bad_image=args.on_bad_image,
        info={
            "model": args.model,
            "adapter": None if args.adapter is None else str(args.adapter),
            "quantization": quantization,
            "precision": precision,
            "dataset": args.dataset,
            "data": str(source),
            "split": args.split,
            "limit": args.limit,
            "skipped_rows": dataset.skipped,
            "transform": args.transform,
            "transform_seed": None if args.transform is None else args.seed,
            "prompt": None if prompt is None else prompt.to_dict(),
            "engine": args.engine,
            "server_model": None if engine is None else engine.model,
        },
    )
    for profile, aggs in result.scores.items():
        for key, agg in aggs.items():
            if agg.get("subset", "all") == "all":
                v = agg["value"]
                print(
                    f"{profile}/{key}: {'n/a' if v is None else f'{v:.4f}'} (n={agg['denominator']})",
                    file=sys.stderr,
                )
    skipped = result.info.get("skipped_bad_images")
    if skipped:
        print(
            f"skipped {skipped} questions whose image cannot be decoded (not scored); they are listed "
            f"under 'bad_images' in {Path(args.output) / f'{args.name}.predictions.run.json'}",
            file=sys.stderr,
        )
    print(Path(args.output) / f"{args.name}.scores.json")
    return 0
