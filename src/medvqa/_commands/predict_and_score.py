"""``medvqa predict-and-score`` (formerly ``evaluate``): answers, per-item scores and aggregates in one step."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from medvqa._commands._answering import ANSWER_OPTIONS, Job, load_job_model, prepare_job
from medvqa._commands._loading import print_as_run_note
from medvqa._commands._options import add_options

__all__ = ["register"]

_EPILOG = """\
examples:
  medvqa predict-and-score --model tiny --dataset vqa_rad --output runs/eval_tiny
      the tiny offline model on the bundled VQA-RAD test sample
  medvqa predict-and-score --model HuggingFaceM4/idefics2-8b --adapter runs/two_stage/stage2/adapter \\
      --dataset vqa_rad --data ../shared/data/vqa_rad --limit 400 --name two_stage --output runs/eval
      the paper's "two-stage" row (first 400 test questions)
  medvqa predict-and-score --model HuggingFaceM4/idefics2-8b --adapter runs/two_stage/stage2/adapter \\
      --prompt expert --dataset vqa_rad --data ../shared/data/vqa_rad --limit 400 --name expert --output runs/eval
  medvqa predict-and-score ... --transform swap --name swapped
      the swapped-images ablation (seeded; no question keeps an image with the same content;
      swap_index is the paper's rule, under which a question may keep the same image)
  medvqa predict-and-score --model HuggingFaceM4/idefics2-8b --adapter runs/two_stage/stage2/adapter \\
      --as-run --seed 42 --dataset vqa_rad --data data/vqa_rad_hf --limit 400 --name two_stage_as_run --output runs/eval
      the paper's evaluation as it was run, flaws included: LoRA dropout active (seeded by --seed),
      the fine-tuned model in float16 without quantization, one question at a time

Writes OUTPUT/NAME.predictions.jsonl (answers; rerunning resumes), OUTPUT/NAME.items.jsonl
(per-item scores) and OUTPUT/NAME.scores.json (aggregates with n and 95% bootstrap intervals).
The run's settings go to OUTPUT/NAME.predictions.run.json; resuming with other settings is
refused, and a predictions file without it needs --resume-unverified. A second run on the
same OUTPUT and NAME is refused while the first one runs (lock file beside the predictions).
The base model and adapters are loaded the same way (same quantization and dtype) and the
adapter is in eval mode, so that LoRA dropout is off.
"""


def register(subparsers: Any) -> None:
    """Add the ``predict-and-score`` command and its deprecated name ``evaluate``."""
    for name in ("predict-and-score", "evaluate"):
        # the former name works but is not listed (no help entry): it prints a deprecation line
        listed = {"help": "answer a dataset split and score the answers (predict + score)"}
        p = subparsers.add_parser(
            name,
            **(listed if name == "predict-and-score" else {}),
            description="Generate answers for a dataset split and score them under one or more profiles.",
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_options(
            p,
            (*ANSWER_OPTIONS, "transform", "profile", "n_boot", "report_to"),
            required=("model", "dataset", "output"),
            helps={"output": "output folder"},
            deprecated=("--precision", "--profiles"),
        )
        p.add_argument("--name", default="eval", help="file prefix of the outputs (default: eval)")
        p.set_defaults(func=_run, deprecated_command="predict-and-score" if name == "evaluate" else None)


def _run(args: argparse.Namespace) -> int:
    job = prepare_job(args)
    transform = _transform(args, job)
    from medvqa.training import predict_and_score

    if args.as_run:
        print_as_run_note(job.settings)
    model, processor = load_job_model(job)
    result = predict_and_score(
        model,
        processor,
        job.samples,
        output_dir=args.output,
        name=args.name,
        prompt=job.prompt,
        profiles=args.profile or ["paper", "strict"],
        max_new_tokens=args.max_new_tokens,
        batch_size=job.batch_size,
        seed=args.seed,
        n_boot=args.n_boot,
        progress=not args.no_progress,
        num_workers=args.num_workers,
        sort_by_length=args.sort_by_length,
        report_to=args.report_to or "none",
        as_run=args.as_run,
        dropout_seed=job.dropout_seed,
        resume_unverified=args.resume_unverified,
        on_bad_image=args.on_bad_image,
        info=_info(args, job, transform),
    )
    _print_scores(args, result)
    return 0


def _transform(args: argparse.Namespace, job: Job) -> str | None:
    """Apply ``--transform`` (one name, or several joined with '+') to the job's questions."""
    if not args.transform:
        return None
    if len(args.transform) > 1:
        raise ValueError(
            f"predict-and-score applies one transform (join names with '+' to compose them); got "
            f"{', '.join(args.transform)}; 'medvqa ablate' runs several"
        )
    from medvqa.ablations import parse_transforms

    ((name, transform),) = parse_transforms(args.transform[0], seed=args.seed).items()
    job.samples = list(transform(job.samples))
    return name


def _info(args: argparse.Namespace, job: Job, transform: str | None) -> dict[str, Any]:
    """Facts recorded with the scores and in the predictions' run record."""
    engine = job.engine
    return {
        **job.settings.record(),
        "dataset": args.dataset,
        "data": str(job.source),
        "split": args.split,
        "limit": args.limit,
        "skipped_rows": job.dataset.skipped,
        "transform": transform,
        "transform_seed": None if transform is None else args.seed,
        "prompt": None if job.prompt is None else job.prompt.to_dict(),
        "engine": args.engine,
        "server_model": None if engine is None else engine.model,
    }


def _print_scores(args: argparse.Namespace, result: Any) -> None:
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
