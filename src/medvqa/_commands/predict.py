"""``medvqa predict``: generate answers with an Idefics2 model (optionally with a LoRA adapter)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from medvqa._commands._answering import ANSWER_OPTIONS, Job, load_job_model, prepare_job
from medvqa._commands._loading import print_as_run_note
from medvqa._commands._options import add_options

__all__ = ["register"]

_EPILOG = """\
examples:
  medvqa predict --model tiny --dataset vqa_rad --split test --limit 8 --output preds.jsonl
      the tiny offline model on the bundled VQA-RAD sample (a smoke test, no download)
  medvqa predict --model /models/idefics2-8b --adapter runs/two_stage/adapter \\
      --dataset vqa_rad --data ../shared/data/vqa_rad --split test --output two_stage.jsonl
      a fine-tuned adapter on the full VQA-RAD test split
  medvqa predict --model /models/idefics2-8b --quantization nf4 --prompt expert \\
      --dataset vqa_rad --data ../shared/data/vqa_rad --split test --output base_expert.jsonl
      the 4-bit base model with the paper's expert-radiologist prompt
  medvqa predict --model /models/idefics2-8b --adapter runs/two_stage/adapter --limit 400 \\
      --batch-size 1 --dataset path_vqa --data ../shared/data/pathvqa --output pathvqa.jsonl
      the paper's protocol on PathVQA: the first 400 test questions, one at a time
  medvqa predict --model tiny --dataset vqa_rad --instruction "Reply with one word." \\
      --max-new-tokens 5 --output one_word.jsonl
      a custom instruction in place of "Answer briefly."
  medvqa predict --model /models/idefics2-8b --adapter runs/two_stage/adapter --as-run \\
      --seed 42 --dataset vqa_rad --data data/vqa_rad_hf --limit 400 --output as_run.jsonl
      the paper's evaluation as it was run, flaws included (LoRA dropout active, fp16 base)

The output is JSON Lines of predictions, what 'medvqa score' reads by default; the run's
settings are written beside it as OUTPUT.run.json (OUTPUT with its suffix replaced). Running
again with the same output file resumes: items already written are kept and not generated
again. Resuming with another model, adapter, dataset, split, prompt, decoding budget,
quantization or dtype is refused; a larger --limit or another --batch-size is allowed.
An output file without its OUTPUT.run.json is not resumed unless --resume-unverified is
given (its rows are then recorded as unverified). While a run writes OUTPUT, the lock file
OUTPUT.lock names it, and a second run on the same file is refused.

An image that cannot be decoded stops the run with an error naming the question id and
the file; with --on-bad-image skip, such questions are left out of OUTPUT and listed under
'bad_images' in OUTPUT.run.json (a rerun tries them again).
"""


def register(subparsers: Any) -> None:
    """Add the ``predict`` command."""
    p = subparsers.add_parser(
        "predict",
        help="generate answers for a dataset split with a vision-language model (+ optional LoRA adapter)",
        description=(
            "Generate one answer per question, greedily and in batches, and stream the predictions "
            "to a JSON Lines file (resumable)."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(
        p,
        ANSWER_OPTIONS,
        required=("model", "dataset", "output"),
        helps={
            "output": "JSON Lines file of predictions to write; if it exists, the run resumes (see below)"
        },
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from medvqa._distributed import is_main_process
    from medvqa._lock import RunLock

    if args.output.is_dir():
        raise ValueError(f"--output {args.output} is a folder; give a file name such as preds.jsonl")
    job = prepare_job(args)
    if args.as_run and args.output.is_file() and args.output.stat().st_size > 0:
        raise ValueError(
            f"{args.output}: exists; an --as-run run cannot resume (its dropout draws depend on everything "
            "generated before): remove the file or choose another --output"
        )
    if not is_main_process():
        return _predict(args, job)
    # before the model loads; under a multi-process launch rank 0 holds it for the whole job
    # (generate_answers joins this hold) and every rank writes only its own part file
    with RunLock(args.output, folder=False, what="prediction file"):
        return _predict(args, job)


def _predict(args: argparse.Namespace, job: Job) -> int:
    from medvqa._distributed import is_main_process
    from medvqa.generation import check_run_record

    run = _settings(args, job)
    if args.as_run:
        run.update(as_run=True, dropout_seed=job.dropout_seed, as_run_note=print_as_run_note(job.settings))
    check_run_record(args.output, run, resume_unverified=args.resume_unverified)
    model, processor = load_job_model(job)
    if args.adapter is not None:
        from medvqa.models import lora_report

        run["adapted_modules"] = len(lora_report(model).adapted_modules)
    preds = _generate(args, job, model, processor, run)
    if is_main_process():
        _summary(args, len(job.samples), len(preds))
    return 0


def _generate(
    args: argparse.Namespace, job: Job, model: Any, processor: Any, run: dict[str, Any]
) -> list[Any]:
    from medvqa.generation import generate_answers

    guard: Any = contextlib.nullcontext()
    if args.as_run:
        from medvqa.models import active_dropout

        guard = active_dropout(model, job.dropout_seed)
    with guard:
        return generate_answers(
            model,
            processor,
            job.samples,
            batch_size=job.batch_size,
            max_new_tokens=args.max_new_tokens,
            prompt=job.prompt,
            output=args.output,
            progress=not args.no_progress,
            run=run,
            resume_unverified=args.resume_unverified,
            on_bad_image=args.on_bad_image,
            num_workers=args.num_workers,
            sort_by_length=args.sort_by_length,
        )


def _summary(args: argparse.Namespace, asked: int, written: int) -> None:
    from medvqa.generation import run_record_path

    print(f"wrote {written} predictions to {args.output}", file=sys.stderr)
    if asked > written:
        print(
            f"skipped {asked - written} questions whose image cannot be decoded; they are listed under "
            f"'bad_images' in {run_record_path(args.output)}",
            file=sys.stderr,
        )


def _settings(args: argparse.Namespace, job: Job) -> dict[str, Any]:
    """The run record of this prediction run (written beside the output as OUTPUT.run.json)."""
    from medvqa._commands.models import known_family

    engine = job.engine
    family = engine.family_name if engine is not None else known_family(args.model, args.family)
    quantization = None
    if engine is None and job.settings.quantization != "none":
        from medvqa.models import QuantizationSettings

        quantization = QuantizationSettings(
            mode=job.settings.quantization,  # type: ignore[arg-type]
            compute_dtype=job.settings.dtype,  # type: ignore[arg-type]
        ).to_dict()
    return {
        "command": "predict",
        **job.settings.record(),
        "family": family,
        "adapted_modules": None,
        "dataset": args.dataset,
        "data": str(job.source),
        "split": args.split,
        "skipped_rows": job.dataset.skipped,
        "limit": args.limit,
        "n": len(job.samples),
        "prompt": None if job.prompt is None else job.prompt.to_dict(),
        "batch_size": job.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "quantization": quantization,
        "dtype": None if engine is not None else job.settings.dtype,
        "decoding": "greedy",
        "engine": args.engine,
        "server_url": None if engine is None else args.server_url,
        "server_model": None if engine is None else engine.model,
        "on_bad_image": args.on_bad_image,
    }
