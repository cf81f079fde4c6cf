"""``medvqa review``: human-evaluation sheets (export for an expert, import and agreement)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from medvqa._commands._common import FIELD_OPTIONS, read_prediction_file
from medvqa._commands._options import add_options

__all__ = ["register"]

_EPILOG = """\
examples:
  medvqa review export two_stage.jsonl -o two_stage_review.csv
      a CSV with id, image, question, truth, prediction and empty correct/justification columns
  medvqa review export two_stage.jsonl -o sheet.csv --shuffle-seed 0
  medvqa review import sheet.csv --predictions two_stage.jsonl --profile paper strict
      human accuracy (Wilson 95% interval) and Cohen's kappa against every automatic metric
  medvqa review import sheet.csv --allow-incomplete --format json

In the 'correct' column write 1/0 (or yes/no, true/false, correct/wrong); leave a cell empty
only with --allow-incomplete (such rows are counted as unreviewed).
"""


def register(subparsers: Any) -> None:
    """Add the ``review`` command with ``export`` and ``import``."""
    parser = subparsers.add_parser(
        "review",
        help="human evaluation: export review sheets, import them, agreement with the metrics",
        description="Human evaluation of predictions, as in the paper: an expert marks each answer.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="review_command", metavar="SUBCOMMAND", required=True)
    ex = sub.add_parser(
        "export",
        help="write a review sheet (CSV) for a prediction file",
        description="Write a review sheet: id, image, question, truth, prediction, correct, justification.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument("predictions", type=Path, help="prediction file (JSON Lines or JSON list)")
    ex.add_argument("--shuffle-seed", type=int, default=None, help="seeded row order (default: file order)")
    add_options(ex, (*FIELD_OPTIONS, "output"), required=("output",), helps={"output": "CSV file to write"})
    ex.set_defaults(func=run_export)

    im = sub.add_parser(
        "import",
        help="read a filled sheet: human accuracy and Cohen's kappa against the metrics",
        description=(
            "Read a filled review sheet and report human accuracy with a Wilson 95% interval and, "
            "with --predictions, Cohen's kappa between the expert and every per-item metric of the "
            "chosen profiles (continuous metrics count as correct at or above --threshold)."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    im.add_argument("sheet", type=Path, help="the filled review sheet (CSV)")
    im.add_argument("--predictions", type=Path, help="the prediction file the sheet was made from")
    im.add_argument(
        "--threshold", type=float, default=0.5, help="continuous metric counts as correct at >= this"
    )
    im.add_argument(
        "--allow-incomplete", action="store_true", help="count empty 'correct' cells as unreviewed"
    )
    im.add_argument(
        "--format", choices=("table", "json"), default="table", help="output format (default: table)"
    )
    add_options(im, ("profile", *FIELD_OPTIONS))
    im.set_defaults(func=run_import)


def _refuse_score_file(path: Path) -> None:
    """A score file holds aggregates only: name the prediction file(s) it was computed from."""
    if path.suffix != ".json" or not path.is_file():
        return
    import warnings

    from medvqa._errors import DataFormatError
    from medvqa._io import read_json
    from medvqa.metrics import is_score_data, read_scores

    if not is_score_data(read_json(path)):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        files = sorted({r.file for r in read_scores(path).runs if r.file})
    named = ", ".join(files) if files else "none recorded"
    raise DataFormatError(
        f"a score file holds aggregates, not the per-item answers a review needs; give the prediction "
        f"file it was scored from ({named})",
        file=str(path),
    )


def run_export(args: argparse.Namespace) -> int:
    """Execute ``medvqa review export``."""
    from medvqa.review import export_review_sheet

    _refuse_score_file(args.predictions)
    preds = read_prediction_file(args.predictions, args)
    path = export_review_sheet(preds, args.output, shuffle_seed=args.shuffle_seed)
    print(f"wrote {len(preds)} rows to {path}", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    """Execute ``medvqa review import``."""
    from medvqa.metrics import evaluate
    from medvqa.review import human_evaluation, read_review_sheet

    reviews = read_review_sheet(args.sheet, require_complete=not args.allow_incomplete)
    results = []
    if args.predictions is not None:
        _refuse_score_file(args.predictions)
        preds = read_prediction_file(args.predictions, args)
        for name in args.profile or ["paper", "strict"]:
            results.append(evaluate(preds, profile=name, n_boot=0, by=()))
    human = human_evaluation(reviews, results, threshold=args.threshold)
    if args.format == "json":
        sys.stdout.write(json.dumps(human.to_dict(), indent=2) + "\n")
        return 0
    print(f"human accuracy: {human.accuracy.format(3, n=True)}  (Wilson 95% interval)")
    if human.unreviewed:
        print(f"unreviewed rows: {human.unreviewed}")
    if human.agreements:
        width = max(len(k) for k in human.agreements)
        print(f"{'metric'.ljust(width)}  kappa   agree   metric_acc  n")
        for key, a in human.agreements.items():
            kappa = "n/a" if math.isnan(a.kappa) else f"{a.kappa:.3f}"
            print(f"{key.ljust(width)}  {kappa:<6}  {a.observed:.3f}   {a.metric_accuracy:.3f}       {a.n}")
    return 0
