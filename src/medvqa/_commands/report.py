"""``medvqa report``: the paper's results table (Figure 2 layout) from several scored runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvqa._commands._common import FIELD_OPTIONS, read_prediction_file
from medvqa._commands._options import add_options

if TYPE_CHECKING:
    from medvqa.metrics import Aggregate

__all__ = ["register"]

_EPILOG = """\
examples:
  medvqa report base=base.jsonl single=single.jsonl two-stage=two_stage.jsonl
      a row per run, columns EM (containment), F1, BLEU-1 of the paper profile, with intervals
  medvqa report base=base.jsonl two-stage=two_stage.jsonl --human base=base_review.csv \\
      --human two-stage=two_stage_review.csv --format latex
  medvqa report scores.json --profile strict --metric accuracy --metric f1/open --format csv
      rows from 'medvqa score --format json' output (one row per file scored under --profile)
  medvqa report two-stage=run.jsonl --reference-field true_answer --prediction-field predicted_answer

Each RUN is LABEL=FILE or FILE (label: the file name without extension). A FILE is a
prediction file (scored here) or the JSON written by 'medvqa score --format json'.
"""


def register(subparsers: Any) -> None:
    """Add the ``report`` command."""
    parser = subparsers.add_parser(
        "report",
        help="build the results table (a row per run, a column per metric) as md/csv/json/latex",
        description=(
            "Build a results table in the paper's Figure 2 layout from several runs: one row per run, "
            "one column per metric, each value with its 95% bootstrap interval where known, and an "
            "optional human-accuracy column from filled review sheets."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "runs", nargs="+", metavar="RUN", help="LABEL=FILE or FILE (predictions or score JSON)"
    )
    parser.add_argument(
        "--metric",
        action="append",
        default=None,
        metavar="KEY",
        help="aggregate key for a column, repeatable (default: the paper's EM, F1, BLEU-1 for the "
        "paper profile, else every overall metric of the profile)",
    )
    parser.add_argument(
        "--human",
        action="append",
        default=[],
        metavar="LABEL=SHEET",
        help="a filled review sheet for run LABEL: adds a 'human' column (accuracy, Wilson interval)",
    )
    parser.add_argument(
        "--format", choices=("md", "csv", "json", "latex"), default="md", help="output format (default: md)"
    )
    parser.add_argument("--digits", type=int, default=3, help="decimal places (default: 3)")
    parser.add_argument("--title", default="", help="table caption")
    add_options(
        parser,
        ("profile", "n_boot", "seed", *FIELD_OPTIONS, "output"),
        helps={"output": "write to this file instead of standard output"},
    )
    parser.set_defaults(func=run)


def _split(spec: str) -> tuple[str, Path]:
    if "=" in spec:
        label, _, location = spec.partition("=")
        if label and location:
            return label, Path(location)
    path = Path(spec)
    return path.stem, path


Run = tuple[str, "dict[str, Aggregate]", "frozenset[str] | None", "int | None"]
"""A table row: its label, its aggregates, its item ids when known (prediction files) and its n."""


def _load_run(label: str, path: Path, args: argparse.Namespace) -> list[Run]:
    from medvqa._errors import DataFormatError
    from medvqa._io import read_json
    from medvqa.metrics import Aggregate, evaluate

    if path.suffix == ".json":
        data = read_json(path)
        if isinstance(data, dict) and str(data.get("format", "")).startswith("medvqa.scores/"):
            runs = [r for r in data.get("runs", []) if r.get("profile") == args.profile]
            if not runs:
                raise DataFormatError(f"no run scored under profile {args.profile!r}", file=str(path))
            out: list[Run] = []
            for r in runs:
                name = label if len(runs) == 1 else f"{label}:{Path(str(r.get('file', ''))).stem}"
                aggregates = {k: Aggregate.from_dict(v) for k, v in r["aggregates"].items()}
                n = r.get("n")
                out.append((name, aggregates, None, n if isinstance(n, int) else None))
            return out
    preds = read_prediction_file(path, args)
    result = evaluate(preds, profile=args.profile, seed=args.seed, n_boot=args.n_boot, by=())
    return [(label, dict(result.aggregates), frozenset(p.id for p in preds), len(preds))]


def _items_warning(runs: list[Run]) -> str | None:
    """A warning when the runs do not hold the same items.

    Prediction files are compared by their item ids; when a row comes from ``medvqa score``
    JSON, which keeps no ids, the rows are compared by their number of items.
    """
    if any(ids is None for _, _, ids, _ in runs):
        sizes = {label: n for label, _, _, n in runs if n is not None}
        if len(set(sizes.values())) < 2:
            return None
        listed = ", ".join(f"{label} {n}" for label, n in sizes.items())
        return (
            f"the runs do not hold the same items: they score {listed} items; their rows are not comparable"
        )
    known = [(label, ids) for label, _, ids, _ in runs if ids is not None]
    if len(known) < 2:
        return None
    first_label, first = known[0]
    differ = []
    for label, ids in known[1:]:
        if ids != first:
            differ.append(
                f"{label} has {len(ids)} ({len(ids - first)} not in {first_label}, "
                f"{len(first - ids)} of {first_label}'s missing)"
            )
    if not differ:
        return None
    return (
        f"the runs do not hold the same items: {first_label} has {len(first)}, "
        + "; ".join(differ)
        + "; their rows are not comparable"
    )


def run(args: argparse.Namespace) -> int:
    """Execute ``medvqa report``."""
    from medvqa.reports import results_table
    from medvqa.review import human_evaluation, read_review_sheet

    if args.profile is not None and len(args.profile) > 1:
        raise ValueError(f"report fills one table from one --profile; got {', '.join(args.profile)}")
    args.profile = (args.profile or ["paper"])[0]  # the table's profile (default: the paper's)
    runs: list[Run] = []
    for spec in args.runs:
        label, path = _split(spec)
        runs.extend(_load_run(label, path, args))
    warning = _items_warning(runs)
    if warning is not None:
        print(f"medvqa: WARNING: {warning}", file=sys.stderr)
    rows = [(label, aggregates) for label, aggregates, _, _ in runs]
    labels = [label for label, _ in rows]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(
            f"run label(s) {', '.join(map(repr, repeated))} given more than once; label the runs "
            "(LABEL=FILE) so that every row of the table is named uniquely"
        )
    extra: dict[str, dict[str, Aggregate]] = {}
    for spec in args.human:
        label, _, sheet = spec.partition("=")
        if not sheet or label not in labels:
            raise ValueError(f"--human {spec!r}: expected LABEL=SHEET with LABEL one of {', '.join(labels)}")
        extra[label] = {"human": human_evaluation(read_review_sheet(sheet)).accuracy}
    table = results_table(rows, columns=args.metric, extra=extra, digits=args.digits, title=args.title)
    text = table.render(args.format)
    if args.output is not None:
        from medvqa._io import atomic_write_text

        atomic_write_text(args.output, text + "\n")
    else:
        sys.stdout.write(text + "\n")
    return 0
