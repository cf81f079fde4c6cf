"""``medvqa predict``: generate answers with an Idefics2 model (optionally with a LoRA adapter)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from medvqa._commands._common import (
    DATASET_NAMES,
    add_engine_options,
    add_generation_loading_options,
    load_questions,
    positive_int,
    resolve_prompt,
    server_engine,
)
from medvqa._commands._run_options import add_run_options

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
      --dropout-seed 42 --dataset vqa_rad --data data/vqa_rad_hf --limit 400 --output as_run.jsonl
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
    p.add_argument(
        "--model",
        required=True,
        metavar="PATH|HUB_ID|tiny",
        help="base model: a folder written by save_pretrained (safetensors weights), a hub id such as "
        "HuggingFaceM4/idefics2-8b (needs network or the Hugging Face cache), or 'tiny' for the tiny "
        "random offline model",
    )
    from medvqa._commands.models import add_family_option

    add_family_option(p)
    p.add_argument(
        "--adapter",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="LoRA adapter folder (adapter_config.json + adapter_model.safetensors), for example the "
        "adapter/ folder of a training run; loaded in eval mode, so LoRA dropout is off",
    )
    p.add_argument(
        "--dataset",
        required=True,
        choices=DATASET_NAMES,
        help="which dataset format --data is in",
    )
    p.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        help="release folder or file of the dataset (default: the sample bundled with medvqa, which "
        "exists for vqa_rad, slake, roco and med_halt; path_vqa needs --data)",
    )
    p.add_argument(
        "--split",
        default="test",
        help="split to answer: train, validation or test, as the dataset has them (default: test)",
    )
    p.add_argument(
        "--prompt",
        default=None,
        metavar="NAME",
        help="built-in prompt: paper ('Answer briefly.', the default for VQA), expert (the paper's "
        "expert-radiologist instruction) or caption (the default for caption data)",
    )
    p.add_argument(
        "--instruction",
        default=None,
        metavar="TEXT",
        help="your own instruction in place of 'Answer briefly.' (layout: instruction, image, "
        "question; recorded as prompt 'custom'); not together with --prompt",
    )
    p.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="answer only the first N questions, in dataset order (the paper scored the first 400)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        metavar="N",
        help="questions per generate call (default: 8, 1 with --as-run; the paper used 1). Batch size 1 and 8 give "
        "identical answers on the tiny float32 model; in float16 on a GPU, padding can flip a rare "
        "near-tie",
    )
    p.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=20,
        metavar="N",
        help="longest answer in tokens (default: 20, as the paper; it used 50 for nonsense questions)",
    )
    p.add_argument(
        "--quantization",
        choices=("none", "nf4", "fp4", "int8"),
        default="none",
        help="load the base model quantized with bitsandbytes (default: none; nf4 is the paper's "
        "QLoRA base, lm_head kept in full precision); the compute dtype is --dtype, or float16 on "
        "a GPU and float32 on a CPU when --dtype is auto",
    )
    p.add_argument(
        "--dtype",
        choices=("auto", "float32", "float16", "bfloat16"),
        default="auto",
        help="dtype of the unquantized weights (default: auto, the checkpoint's own; float32 for tiny)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="weights seed of --model tiny (default: 0; ignored otherwise)"
    )
    p.add_argument(
        "--output",
        type=Path,
        required=True,
        metavar="FILE",
        help="JSON Lines file of predictions to write; if it exists, the run resumes (see below)",
    )
    add_generation_loading_options(p)
    add_engine_options(p)
    p.add_argument(
        "--as-run",
        action="store_true",
        help="reproduce the paper's evaluation FLAWS on purpose: LoRA dropout active at inference "
        "(seeded by --dropout-seed), an adapter on a float16 base without quantization (the base "
        "model alone: nf4), batch size 1; replaces --quantization and --dtype. Not a fair comparison",
    )
    p.add_argument(
        "--dropout-seed", type=int, default=0, help="seed of the dropout masks with --as-run (default: 0)"
    )
    add_run_options(p)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    restore: list[Any] = []
    try:
        return _predict(args, restore)
    finally:
        for undo in restore:
            undo()


def _predict(args: argparse.Namespace, restore: list[Any]) -> int:
    import tempfile

    from medvqa._distributed import default_device_map, is_main_process
    from medvqa._lock import RunLock
    from medvqa.generation import check_run_record, generate_answers, run_record_path
    from medvqa.models import (
        QuantizationSettings,
        check_adapter_folder,
        load_adapter,
        load_model,
        lora_report,
        save_tiny_model,
        tiny_model,
    )

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    if args.batch_size is None:
        args.batch_size = 1 if args.as_run else 8
    if args.as_run:
        _as_run_settings(args)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    if args.output.is_dir():
        raise ValueError(f"--output {args.output} is a folder; give a file name such as preds.jsonl")
    engine = server_engine(args)
    if args.adapter is not None:
        check_adapter_folder(args.adapter)  # fail before a large model is loaded
    prompt = resolve_prompt(args.prompt, args.instruction)
    dataset, source, samples = load_questions(args.dataset, args.data, args.split, args.limit)
    if is_main_process():
        # before the model loads; under a multi-process launch rank 0 holds it for the whole job
        # (generate_answers joins this hold) and every rank writes only its own part file
        lock = RunLock(args.output, folder=False, what="prediction file").acquire()
        restore.append(lock.release)

    quantization: QuantizationSettings | None = None
    if args.quantization != "none":
        compute = args.dtype
        if compute == "auto":  # the paper's float16 on a GPU; float32 on a CPU
            import torch

            compute = "float16" if torch.cuda.is_available() else "float32"
        quantization = QuantizationSettings(mode=args.quantization, compute_dtype=compute)
    run = _settings(args, dataset, source, samples, prompt, quantization, engine)
    if args.as_run:
        from medvqa.training import AS_RUN_NOTE

        run.update(as_run=True, dropout_seed=args.dropout_seed, as_run_note=AS_RUN_NOTE)
        print(AS_RUN_NOTE, file=sys.stderr)
    check_run_record(args.output, run, resume_unverified=args.resume_unverified)
    model: Any = engine  # the server engine stands in for the model
    processor: Any = None
    with tempfile.TemporaryDirectory(prefix="medvqa-tiny-") as tmp:
        if (
            engine is None
            and args.model == "tiny"
            and quantization is None
            and args.dtype in ("auto", "float32")
        ):
            model, processor = tiny_model(args.family or "idefics2", seed=args.seed)
        elif engine is None:
            tiny = args.model == "tiny"
            path = save_tiny_model(tmp, args.family or "idefics2", seed=args.seed) if tiny else args.model
            model, processor = load_model(
                path,
                family=args.family,
                quantization=quantization,
                dtype=args.dtype,
                device_map=default_device_map(),
            )
    adapter_modules = None
    if args.adapter is not None:
        model = load_adapter(model, args.adapter)
        adapter_modules = len(lora_report(model).adapted_modules)

    run["adapted_modules"] = adapter_modules
    guard: Any = contextlib.nullcontext()
    if args.as_run:
        from medvqa.models import active_dropout

        guard = active_dropout(model, args.dropout_seed)
    with guard:
        preds = generate_answers(
            model,
            processor,
            samples,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            prompt=prompt,
            output=args.output,
            progress=not args.no_progress,
            run=run,
            resume_unverified=args.resume_unverified,
            on_bad_image=args.on_bad_image,
            num_workers=args.num_workers,
            sort_by_length=args.sort_by_length,
        )
    if not is_main_process():
        return 0
    print(f"wrote {len(preds)} predictions to {args.output}", file=sys.stderr)
    skipped = len(samples) - len(preds)
    if skipped:
        print(
            f"skipped {skipped} questions whose image cannot be decoded; they are listed under "
            f"'bad_images' in {run_record_path(args.output)}",
            file=sys.stderr,
        )
    return 0


def _settings(
    args: argparse.Namespace,
    dataset: Any,
    source: Any,
    samples: list[Any],
    prompt: Any,
    quantization: Any,
    engine: Any,
) -> dict[str, Any]:
    """The run record of this prediction run (written beside the output as OUTPUT.run.json)."""
    from medvqa._commands.models import known_family

    family = engine.family_name if engine is not None else known_family(args.model, args.family)
    return {
        "command": "predict",
        "model": args.model,
        "family": family,
        "seed": args.seed if args.model == "tiny" else None,
        "adapter": None if args.adapter is None else str(args.adapter),
        "adapted_modules": None,
        "dataset": args.dataset,
        "data": str(source),
        "split": args.split,
        "skipped_rows": dataset.skipped,
        "limit": args.limit,
        "n": len(samples),
        "prompt": None if prompt is None else prompt.to_dict(),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "quantization": None if quantization is None else quantization.to_dict(),
        "dtype": args.dtype,
        "decoding": "greedy",
        "engine": args.engine,
        "server_url": None if engine is None else args.server_url,
        "server_model": None if engine is None else engine.model,
        "on_bad_image": args.on_bad_image,
    }


def _as_run_settings(args: argparse.Namespace) -> None:
    """Apply ``--as-run``: the paper's precision, one question at a time, no resuming."""
    import torch

    from medvqa._distributed import launch_shard
    from medvqa.training import as_run_loading

    if args.batch_size != 1:
        raise ValueError(
            f"--as-run answers one question at a time, as the paper did; got --batch-size {args.batch_size}"
        )
    if launch_shard().world_size > 1:
        raise ValueError(
            "--as-run runs in one process: its dropout draws depend on every question answered before, "
            "which a shard of a torchrun/accelerate launch does not see"
        )
    if args.sort_by_length:
        raise ValueError("--as-run answers the questions in input order (the dropout draws depend on it)")
    if getattr(args, "engine", "hf") != "hf":
        raise ValueError("--as-run keeps the model's LoRA dropout active in this process; use --engine hf")
    if args.output.is_file() and args.output.stat().st_size > 0:
        raise ValueError(
            f"{args.output}: exists; an --as-run run cannot resume (its dropout draws depend on everything "
            "generated before): remove the file or choose another --output"
        )
    quantization, _ = as_run_loading(args.adapter)
    args.quantization = quantization
    args.dtype = "float16" if torch.cuda.is_available() else "float32"
