"""``medvqa data``: inspect datasets (``summary``: counts, answer types, train/test audit)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from medvqa._commands._common import DATASET_NAMES, SAMPLE_DIRS, bundled_sample
from medvqa._commands._options import add_options

__all__ = ["register"]

_EPILOG = """\
examples:
  medvqa data summary vqa_rad
      the bundled VQA-RAD sample: counts per split, closed/open, question types, audit
  medvqa data summary vqa_rad ../shared/data/vqa_rad --split train --split test
  medvqa data summary vqa_rad ../shared/data/vqa_rad --layout mevf
  medvqa data summary slake ../shared/data/slake --language both --on-empty-answer skip
  medvqa data summary path_vqa ../shared/data/pathvqa/imagefolder_sample --format json
  medvqa data summary roco ../shared/data/roco --no-audit

With PATH omitted, the sample bundled with the package is used (vqa_rad, slake, roco, med_halt).
Splits a source does not hold are reported as absent when --split is not given.

A split whose size matches no known release of the dataset is noted ("3,998 rows: not a known
VQA-RAD train split size (official 1,797/451, ...)"): another dataset in the same layout, a
partial download or a subset. --strict-size makes that an error. A folder with a
medvqa-subset.json file ({"subset_of": "..."}) is a declared subset and is not checked.
"""


def register(subparsers: Any) -> None:
    """Add the ``data`` command and its ``summary`` subcommand."""
    parser = subparsers.add_parser(
        "data",
        help="inspect datasets: counts, answer types and a train/test audit",
        description="Inspect the datasets medvqa reads.",
        epilog="Run 'medvqa data summary --help' for the options and examples.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    s = sub.add_parser(
        "summary",
        help="counts per split, closed/open, question types, and a train/test audit",
        description=(
            "Load every split of a dataset (images are not decoded) and print counts per split, "
            "closed/open answers with where the answer type came from, counts per question type, "
            "modality, organ and content type where the release has them, and an audit: questions "
            "repeated between train and test, and images shared between them by content hash."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("name", choices=DATASET_NAMES, help="dataset name")
    s.add_argument(
        "path",
        nargs="?",
        default=None,
        help="release folder or file, or a Hugging Face layout (default: the bundled sample of NAME)",
    )
    s.add_argument(
        "--split",
        action="append",
        choices=("train", "validation", "test"),
        default=None,
        help="split to summarize; repeat for several (default: every split the dataset has)",
    )
    s.add_argument(
        "--format", choices=("table", "json"), default="table", help="output format (default: table)"
    )
    _reading_options(s)
    s.add_argument("--no-audit", action="store_true", help="skip the train/test audit")
    s.add_argument(
        "--no-hash", action="store_true", help="audit questions only; do not read image bytes to hash them"
    )
    add_options(s, ("output",), helps={"output": "also write the JSON report to this file"})
    s.set_defaults(func=_summary)


def _reading_options(s: argparse.ArgumentParser) -> None:
    """The options of how a release is read (layout, language, missing images, ...)."""
    s.add_argument(
        "--layout", default=None, help="release layout: auto, official, mevf (vqa_rad), instruct (roco), hf"
    )
    s.add_argument(
        "--language", choices=("en", "zh", "both"), default=None, help="SLAKE language filter (default: en)"
    )
    s.add_argument(
        "--on-missing-image",
        choices=("error", "skip"),
        default=None,
        help="rows whose image file is missing: error (default) or skip (counted and reported)",
    )
    s.add_argument(
        "--on-empty-answer",
        choices=("error", "skip"),
        default=None,
        help="rows with an empty answer: error (default) or skip (counted and reported)",
    )
    s.add_argument(
        "--image-dir",
        type=Path,
        default=None,
        help="folder of the images, when not where the release puts them",
    )
    s.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other dataset option, e.g. --option subset=non-radiology (roco); repeatable",
    )
    s.add_argument(
        "--strict-size",
        action="store_true",
        help="fail when a split's size matches no known release of the dataset (declared subsets pass)",
    )


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for key, value in (
        ("layout", args.layout),
        ("language", args.language),
        ("on_missing_image", args.on_missing_image),
        ("on_empty_answer", args.on_empty_answer),
        ("image_dir", args.image_dir),
    ):
        if value is not None:
            opts[key] = value
    for item in args.option:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--option expects KEY=VALUE, got {item!r}")
        opts[key.strip().replace("-", "_")] = value
    return opts


def _source(args: argparse.Namespace) -> Path:
    """PATH, or the bundled sample of the dataset."""
    if args.path is None:
        sample = bundled_sample(args.name)
        if sample is None:
            raise ValueError(
                f"no bundled sample for {args.name!r}; give PATH (samples exist for: {', '.join(SAMPLE_DIRS)})"
            )
        return sample
    source = Path(args.path)
    if not source.exists():
        raise FileNotFoundError(f"no such file or folder: {source}")
    return source


def _load_splits(
    args: argparse.Namespace, source: Path, options: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The splits asked for (default: every split found) and the names of those absent."""
    from medvqa.data import DATASETS, SplitNotFoundError, load

    spec = DATASETS[args.name]
    splits = args.split or list(spec.splits)
    loaded = {}
    absent: list[str] = []
    for split in dict.fromkeys(splits):
        if split not in spec.splits:
            raise ValueError(
                f"dataset {args.name!r} has no {split!r} split; valid splits: {', '.join(spec.splits)}"
            )
        try:
            loaded[split] = load(args.name, source, split=split, strict_size=args.strict_size, **options)
        except SplitNotFoundError:
            if args.split:
                raise
            absent.append(split)
    if not loaded:
        raise ValueError(f"{source}: none of the splits {', '.join(splits)} of {args.name!r} was found there")
    return loaded, absent


def _summary(args: argparse.Namespace) -> int:
    from medvqa._io import atomic_write_json
    from medvqa.data import audit, format_report, summarize

    source = _source(args)
    options = _options(args)
    loaded, absent = _load_splits(args, source, options)
    summaries = [summarize(ds) for ds in loaded.values()]
    audits = []
    if not args.no_audit and "train" in loaded:
        for other in ("validation", "test"):
            if other in loaded:
                audits.append(
                    audit(loaded["train"], loaded[other], hash_images=not args.no_hash, dataset=args.name)
                )
    report = {
        "dataset": args.name,
        "source": str(source),
        "bundled_sample": args.path is None,
        "options": {k: str(v) for k, v in options.items()},
        "splits": [s.to_dict() for s in summaries],
        "absent_splits": absent,
        "audits": [a.to_dict() for a in audits],
    }
    if args.output is not None:
        atomic_write_json(args.output, report)
    if args.format == "json":
        sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    else:
        where = f"the sample bundled with medvqa ({source})" if args.path is None else str(source)
        sys.stdout.write(f"source: {where}\n")
        sys.stdout.write(format_report(summaries, audits, absent=absent))
    return 0
