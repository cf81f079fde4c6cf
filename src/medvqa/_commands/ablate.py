"""``medvqa ablate``: run a model under ablation transforms and write one prediction file per run plus a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from medvqa._commands._common import (
    DATASET_NAMES,
    add_generation_loading_options,
    bundled_sample,
    positive_int,
)
from medvqa._commands._run_options import add_run_options

__all__ = ["register"]
_NONSENSE = {"nonsense": True, "nonsense_plain": False}

_EPILOG = """\
transforms (join names with '+' to compose them, e.g. noimage+expert):
  swap            every question gets another question's image, never one with the same content
  swap_index      the paper's rule: another row's image, which may be the same image
  blank           a black 378x378 image        noise     seeded grey noise
  noimage         text-only prompt             expert    the expert-radiologist instruction
  expert_prepend  the expert instruction before "Answer briefly."
  nonsense        Med-HALT reasoning_fake questions with their options, on images of the dataset
  nonsense_plain  the same questions without options

examples:
  medvqa ablate --model tiny --dataset vqa_rad --transforms swap,blank,noimage,expert --output runs/abl
      the tiny offline model on the bundled VQA-RAD sample (a smoke test of the pipeline)
  medvqa ablate --model models/idefics2-8b --quantization nf4 --adapter runs/two_stage/adapter \\
      --dataset vqa_rad --data ../shared/data/vqa_rad --split test --limit 400 \\
      --transforms swap,swap_index,noimage,expert,nonsense --nonsense-data ../shared/data/medhalt \\
      --output runs/ablations
      the paper's ablations (first 400 test questions), seeded, with intervals and abstention

Writes OUTPUT/predictions/baseline.jsonl and OUTPUT/predictions/<transform>.jsonl, OUTPUT/ablations.json,
OUTPUT/report.md + report.json, and OUTPUT/scores.json (every run's scores; 'medvqa report
OUTPUT/scores.json --profile PROFILE' puts them in one table). Running again with the same
OUTPUT resumes unfinished files (each prediction file has its settings beside it as <file>.run.json; other settings are
refused). While a run writes OUTPUT, OUTPUT/medvqa.lock names it and a second run is refused.
"""


def register(subparsers: Any) -> None:
    """Add the ``ablate`` command."""
    p = subparsers.add_parser(
        "ablate",
        help="run a model under ablations (swapped/blank/no image, prompts, nonsense questions) and report",
        description=(
            "Generate answers for a dataset split as it is and under each ablation transform, then "
            "report the paired drop of every metric with a bootstrap interval and the share of answers "
            "that changed (closed and open separately), and the abstention rate on nonsense questions."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model", required=True, help="model folder or hub id, or 'tiny' for the tiny offline model"
    )
    from medvqa._commands.models import add_family_option

    add_family_option(p)
    p.add_argument("--adapter", type=Path, default=None, help="LoRA adapter folder to attach (eval mode)")
    p.add_argument(
        "--quantization",
        choices=("none", "nf4", "fp4", "int8"),
        default="none",
        help="load the base model quantized (default: none)",
    )
    p.add_argument(
        "--dtype", default="auto", help="dtype of unquantized weights: auto, float32, float16, bfloat16"
    )
    p.add_argument("--device-map", default=None, help="device map passed to from_pretrained (e.g. auto, cpu)")
    p.add_argument("--dataset", required=True, choices=DATASET_NAMES, help="dataset name")
    p.add_argument(
        "--data", type=Path, default=None, help="release folder or file (default: the bundled sample)"
    )
    p.add_argument("--split", default="test", help="split to run on (default: test)")
    p.add_argument(
        "--limit", type=positive_int, default=None, help="use only the first N samples, in dataset order"
    )
    p.add_argument(
        "--transforms",
        required=True,
        help="comma-separated ablations, e.g. swap,blank,noimage,expert,nonsense (see below)",
    )
    p.add_argument("--output", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the transforms and bootstraps (default: 0)")
    p.add_argument(
        "--profile", default="strict", help="scoring profile of the paired differences (default: strict)"
    )
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates (default: 1000)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="generation batch size (default: 8)")
    p.add_argument(
        "--max-new-tokens", type=positive_int, default=20, help="longest answer (default: 20, as the paper)"
    )
    p.add_argument("--prompt", default=None, help="prompt template name (default: the paper's)")
    p.add_argument(
        "--nonsense-data",
        type=Path,
        default=None,
        help="Med-HALT reasoning_fake.csv or its folder (default: the bundled sample)",
    )
    p.add_argument("--nonsense-split", default="train", help="Med-HALT split_type to use (default: train)")
    p.add_argument("--nonsense-limit", type=int, default=None, help="use only the first N nonsense questions")
    p.add_argument(
        "--nonsense-max-new-tokens",
        type=int,
        default=50,
        help="longest answer to nonsense questions (default: 50)",
    )
    add_generation_loading_options(p)
    add_run_options(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run)


def _source(name: str, path: Path | None) -> Path:
    if path is not None:
        return path
    folder = bundled_sample(name)
    if folder is None:
        raise ValueError(f"no bundled sample of {name!r}; give --data PATH")
    return folder


def _limit(items: list[Any], limit: int | None, what: str) -> list[Any]:
    if limit is None:
        return items
    if limit < 1:
        raise ValueError(f"{what} must be at least 1, got {limit}")
    return items[:limit]


def _run(args: argparse.Namespace) -> int:
    from medvqa.ablations import TRANSFORM_NAMES, NonsenseQuestions, parse_transforms
    from medvqa.data import load

    names = [n.strip() for n in args.transforms.split(",") if n.strip()]
    wanted_nonsense = [n for n in names if n in _NONSENSE]
    plain = ",".join(n for n in names if n not in _NONSENSE)
    try:
        transforms = parse_transforms(plain, seed=args.seed) if plain else {}
    except ValueError as exc:
        # parse_transforms knows the image/prompt transforms; this command adds the nonsense probes
        raise ValueError(f"{exc}; and the probes: {', '.join(_NONSENSE)}") from None
    if not transforms and not wanted_nonsense:
        raise ValueError(
            f"no transform named in {args.transforms!r}; valid names: "
            f"{', '.join((*TRANSFORM_NAMES, *_NONSENSE))}"
        )

    source = _source(args.dataset, args.data)
    dataset = load(args.dataset, source, split=args.split)
    samples = _limit(list(dataset), args.limit, "--limit")
    if not samples:
        raise ValueError(f"{args.dataset} {args.split} at {source} holds no samples")
    nonsense: dict[str, list[Any]] = {}
    if wanted_nonsense:
        pool = [s.image for s in samples if s.image is not None]
        if not pool:
            raise ValueError("nonsense questions need images to pair with, and the chosen samples have none")
        questions = load("med_halt", _source("med_halt", args.nonsense_data), split=args.nonsense_split)
        chosen = _limit(list(questions), args.nonsense_limit, "--nonsense-limit")
        for name in wanted_nonsense:
            nonsense[name] = NonsenseQuestions(
                pool=tuple(pool), seed=args.seed, with_options=_NONSENSE[name]
            )(chosen)

    from contextlib import nullcontext

    from medvqa._distributed import is_main_process
    from medvqa._lock import RunLock

    # the main process holds the folder's lock; under a multi-process launch the others write
    # only their own part files of each prediction file (locked by generate_answers)
    lock: Any = (
        RunLock(args.output, folder=True, what="ablation folder") if is_main_process() else nullcontext()
    )
    with lock:
        return _ablate(args, dataset, source, samples, transforms, nonsense)


def _ablate(
    args: argparse.Namespace,
    dataset: Any,
    source: Path,
    samples: list[Any],
    transforms: dict[str, Any],
    nonsense: dict[str, list[Any]],
) -> int:
    from medvqa.ablations import run_ablations

    model, processor = _load_model(args)
    config = {
        "model": args.model,
        "adapter": None if args.adapter is None else str(args.adapter),
        "quantization": args.quantization,
        "dtype": args.dtype,
        "dataset": args.dataset,
        "data": str(source),
        "split": args.split,
        "limit": args.limit,
        "skipped_rows": dataset.skipped,
    }
    report = run_ablations(
        model,
        processor,
        samples,
        transforms,
        args.output,
        nonsense=nonsense,
        profile=args.profile,
        seed=args.seed,
        n_boot=args.n_boot,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        nonsense_max_new_tokens=args.nonsense_max_new_tokens,
        prompt=args.prompt,
        progress=not args.no_progress,
        num_workers=args.num_workers,
        sort_by_length=args.sort_by_length,
        config=config,
        resume_unverified=args.resume_unverified,
        on_bad_image=args.on_bad_image,
    )
    for r in report.reliance:
        headline = next((d for d in r.differences if d.subset == "all" and d.drop is not None), None)
        text = "" if headline is None else f"{headline.metric} drop {headline.drop:+.3f}"
        if headline is not None and headline.ci_low is not None and headline.ci_high is not None:
            text += f" [{headline.ci_low:+.3f}, {headline.ci_high:+.3f}]"
        share = r.changed_share("all")
        changed = "" if share is None else f", {share:.1%} of answers changed"
        print(f"{r.name}: {text}{changed} (n={r.n})")
    for a in report.abstention:
        rate = "n/a" if a.rate is None else f"{a.rate:.1%}"
        print(f"{a.name}: abstained on {a.abstained} of {a.n} ({rate})")
    print(f"report: {Path(args.output) / 'report.md'}", file=sys.stderr)
    return 0


def _load_model(args: argparse.Namespace) -> tuple[Any, Any]:
    if args.model == "tiny":
        if args.adapter is not None or args.quantization != "none":
            raise ValueError("--model tiny takes neither --adapter nor --quantization")
        from medvqa.models import tiny_model

        return tiny_model(args.family or "idefics2")
    from medvqa.models import load_adapter, load_model

    quant = None if args.quantization == "none" else args.quantization
    from medvqa._distributed import default_device_map

    device_map = args.device_map if args.device_map is not None else default_device_map()
    model, processor = load_model(
        args.model, family=args.family, quantization=quant, dtype=args.dtype, device_map=device_map
    )
    if args.adapter is not None:
        model = load_adapter(model, args.adapter)
    return model, processor
