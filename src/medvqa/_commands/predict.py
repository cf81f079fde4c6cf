"""``medvqa predict``: generate answers with an Idefics2 model (optionally with a LoRA adapter)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

_NAMES = ("vqa_rad", "slake", "path_vqa", "roco", "med_halt")
_SAMPLE_DIRS = {"vqa_rad": "vqa_rad", "slake": "slake", "roco": "captions", "med_halt": "med_halt"}

_EPILOG = """\
examples:
  medvqa predict --model tiny --dataset vqa_rad --split test --limit 8 --output preds.jsonl
      the tiny offline model on the bundled VQA-RAD sample (a smoke test)
  medvqa predict --model /models/idefics2-8b --adapter runs/two_stage/adapter \\
      --dataset vqa_rad --data ../shared/data/vqa_rad --split test --output two_stage.jsonl
  medvqa predict --model /models/idefics2-8b --quantization nf4 --prompt expert \\
      --dataset vqa_rad --data ../shared/data/vqa_rad --split test --output base_expert.jsonl

The output is JSON Lines of predictions, what 'medvqa score' reads by default; the run's
settings are written beside it as OUTPUT.run.json. Running again with the same output file
resumes: items already written are kept and not generated again.
"""


def register(subparsers: Any) -> None:
    """Add the ``predict`` command."""
    p = subparsers.add_parser(
        "predict",
        help="generate answers for a dataset split with Idefics2 (+ optional LoRA adapter)",
        description=(
            "Generate one answer per question, greedily and in batches, and stream the predictions "
            "to a JSON Lines file (resumable)."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", required=True, help="model folder or hub id, or 'tiny' for the tiny offline model"
    )
    p.add_argument("--adapter", type=Path, default=None, help="LoRA adapter folder (safetensors)")
    p.add_argument("--dataset", required=True, choices=_NAMES, help="dataset name")
    p.add_argument(
        "--data", default=None, help="release folder or file of the dataset (default: the bundled sample)"
    )
    p.add_argument("--split", default="test", help="split to answer (default: test)")
    p.add_argument(
        "--prompt",
        default=None,
        help="built-in prompt: paper (default for VQA), expert, caption (default for captions)",
    )
    p.add_argument(
        "--instruction",
        default=None,
        help="custom instruction text replacing 'Answer briefly.' (layout: instruction, image, question)",
    )
    p.add_argument(
        "--limit", type=int, default=None, help="answer only the first N questions, in dataset order"
    )
    p.add_argument("--batch-size", type=int, default=8, help="questions per generate call (default: 8)")
    p.add_argument("--max-new-tokens", type=int, default=20, help="longest answer in tokens (default: 20)")
    p.add_argument(
        "--quantization",
        choices=("none", "nf4", "fp4", "int8"),
        default="none",
        help="load the base model quantized with bitsandbytes (default: none); the compute dtype is "
        "--dtype, or float16 on a GPU and float32 on a CPU when --dtype is auto",
    )
    p.add_argument(
        "--dtype",
        choices=("auto", "float32", "float16", "bfloat16"),
        default="auto",
        help="dtype of the unquantized weights (default: the checkpoint's)",
    )
    p.add_argument("--seed", type=int, default=0, help="weights seed of --model tiny (default: 0)")
    p.add_argument("--output", type=Path, required=True, help="JSON Lines file to write (resumed if present)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import tempfile

    from medvqa._io import atomic_write_json
    from medvqa.chat import PromptTemplate, get_prompt
    from medvqa.data import load, sample_root
    from medvqa.generation import generate_answers
    from medvqa.models import (
        QuantizationSettings,
        load_adapter,
        load_idefics2,
        lora_report,
        save_tiny_idefics2,
        tiny_idefics2,
    )

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    if args.prompt is not None and args.instruction is not None:
        raise ValueError("give either --prompt or --instruction, not both")
    prompt: PromptTemplate | None = None
    if args.instruction is not None:
        prompt = PromptTemplate(name="custom", instruction=args.instruction)
    elif args.prompt is not None:
        prompt = get_prompt(args.prompt)

    source = args.data
    if source is None:
        if args.dataset not in _SAMPLE_DIRS:
            raise ValueError(f"--data is required for {args.dataset!r} (no bundled sample)")
        source = sample_root() / _SAMPLE_DIRS[args.dataset]
    dataset = load(args.dataset, source, split=args.split)
    samples = list(dataset)
    if args.limit is not None:
        samples = samples[: args.limit]
    if not samples:
        raise ValueError(f"{args.dataset} {args.split} at {source} has no questions")

    quantization: QuantizationSettings | None = None
    if args.quantization != "none":
        compute = args.dtype
        if compute == "auto":  # the paper's float16 on a GPU; float32 on a CPU
            import torch

            compute = "float16" if torch.cuda.is_available() else "float32"
        quantization = QuantizationSettings(mode=args.quantization, compute_dtype=compute)
    with tempfile.TemporaryDirectory(prefix="medvqa-tiny-") as tmp:
        if args.model == "tiny" and quantization is None:
            model, processor = tiny_idefics2(args.seed)
        else:
            path = save_tiny_idefics2(tmp, seed=args.seed) if args.model == "tiny" else args.model
            model, processor = load_idefics2(path, quantization=quantization, dtype=args.dtype)
    adapter_modules = None
    if args.adapter is not None:
        model = load_adapter(model, args.adapter)
        adapter_modules = len(lora_report(model).adapted_modules)

    run = {
        "command": "predict",
        "model": args.model,
        "seed": args.seed if args.model == "tiny" else None,
        "adapter": None if args.adapter is None else str(args.adapter),
        "adapted_modules": adapter_modules,
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
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output.with_suffix(".run.json"), run)
    preds = generate_answers(
        model,
        processor,
        samples,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        prompt=prompt,
        output=args.output,
        progress=not args.no_progress,
    )
    print(f"wrote {len(preds)} predictions to {args.output}", file=sys.stderr)
    return 0
