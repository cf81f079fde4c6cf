"""``medvqa ablate``: run a model under ablation transforms and write one prediction file per run plus a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from medvqa._commands._answering import ANSWER_OPTIONS
from medvqa._commands._common import bundled_sample, load_questions, positive_int
from medvqa._commands._options import add_options

__all__ = ["register"]
_NONSENSE = {"nonsense": True, "nonsense_plain": False}
_SERVER_OPTIONS = ("engine", "server_url", "server_model", "concurrency", "timeout", "max_retries")

_EPILOG = """\
transforms (--transform NAME ...; join names with '+' to compose them, e.g. noimage+expert):
  swap            every question gets another question's image, never one with the same content
  swap_index      the paper's rule: another row's image, which may be the same image
  blank           a black 378x378 image        noise     seeded grey noise
  noimage         text-only prompt             expert    the expert-radiologist instruction
  expert_prepend  the expert instruction before "Answer briefly."
  nonsense        Med-HALT reasoning_fake questions with their options, on images of the dataset
  nonsense_plain  the same questions without options

examples:
  medvqa ablate --model tiny --dataset vqa_rad --transform swap blank noimage expert --output runs/abl
      the tiny offline model on the bundled VQA-RAD sample (a smoke test of the pipeline)
  medvqa ablate --model models/idefics2-8b --quantization nf4 --adapter runs/two_stage/adapter \\
      --dataset vqa_rad --data ../shared/data/vqa_rad --split test --limit 400 \\
      --transform swap swap_index noimage expert nonsense --nonsense-data ../shared/data/medhalt \\
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
    add_options(
        p,
        _OPTIONS,
        required=("model", "dataset", "output"),
        helps={"output": "output folder"},
        deprecated=("--transforms",),
    )
    nonsense = p.add_argument_group("nonsense questions (Med-HALT reasoning_fake)")
    nonsense.add_argument(
        "--nonsense-limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="use only the first N nonsense questions",
    )
    nonsense.add_argument(
        "--nonsense-max-new-tokens",
        type=positive_int,
        default=50,
        metavar="N",
        help="longest answer to nonsense questions (default: 50)",
    )
    p.set_defaults(func=_run)


# the options of predict that apply to an ablation run (no --as-run, no server, no --instruction)
_OPTIONS = tuple(
    name
    for name in (*ANSWER_OPTIONS, "transform", "profile", "n_boot", "nonsense_data", "nonsense_split")
    if name not in ("as_run", "dropout_seed", "instruction", *_SERVER_OPTIONS)
)


def _transforms(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """The image/prompt transforms of ``--transform`` and the nonsense probes it names."""
    from medvqa.ablations import TRANSFORM_NAMES, parse_transforms

    if not args.transform:
        raise ValueError(
            f"no transform named (--transform is required); valid names: {', '.join((*TRANSFORM_NAMES, *_NONSENSE))}"
        )
    if args.profile is not None and len(args.profile) > 1:
        raise ValueError(
            f"ablate reports paired differences under one --profile; got {', '.join(args.profile)}"
        )
    wanted_nonsense = [n for n in args.transform if n in _NONSENSE]
    plain = ",".join(n for n in args.transform if n not in _NONSENSE)
    try:
        transforms = parse_transforms(plain, seed=args.seed) if plain else {}
    except ValueError as exc:
        # parse_transforms knows the image/prompt transforms; this command adds the probes
        raise ValueError(f"{exc}; and the probes: {', '.join(_NONSENSE)}") from None
    return transforms, wanted_nonsense


def _nonsense(args: argparse.Namespace, samples: list[Any], wanted: list[str]) -> dict[str, list[Any]]:
    """Med-HALT nonsense questions of each wanted probe, paired with the images of ``samples``."""
    if not wanted:
        return {}
    from medvqa.ablations import NonsenseQuestions
    from medvqa.data import load

    pool = [s.image for s in samples if s.image is not None]
    if not pool:
        raise ValueError("nonsense questions need images to pair with, and the chosen samples have none")
    source = args.nonsense_data if args.nonsense_data is not None else bundled_sample("med_halt")
    questions = list(load("med_halt", source, split=args.nonsense_split))
    chosen = questions if args.nonsense_limit is None else questions[: args.nonsense_limit]
    return {
        name: NonsenseQuestions(pool=tuple(pool), seed=args.seed, with_options=_NONSENSE[name])(chosen)
        for name in wanted
    }


def _run(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from medvqa._distributed import is_main_process
    from medvqa._lock import RunLock

    transforms, wanted_nonsense = _transforms(args)
    dataset, source, samples = load_questions(args.dataset, args.data, args.split, args.limit)
    nonsense = _nonsense(args, samples, wanted_nonsense)
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
    from medvqa._commands._loading import load_command_model, model_settings
    from medvqa.ablations import run_ablations

    settings = model_settings(args)
    model, processor = load_command_model(settings)
    config = {
        **settings.record(),
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
        profile=(args.profile or ["strict"])[0],
        seed=args.seed,
        n_boot=args.n_boot,
        batch_size=args.batch_size or 8,
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
    _print_report(args, report)
    return 0


def _print_report(args: argparse.Namespace, report: Any) -> None:
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
