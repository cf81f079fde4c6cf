"""``medvqa report``: the paper's results table (Figure 2 layout) from several scored runs."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvqa._commands._common import FIELD_OPTIONS, read_prediction_file
from medvqa._commands._options import add_options

if TYPE_CHECKING:
    from medvqa.metrics import Aggregate, ItemSet

__all__ = ["register"]

_EPILOG = """\
examples:
  medvqa report base=base.jsonl single=single.jsonl two-stage=two_stage.jsonl
      a row per run, columns EM (containment), F1, BLEU-1 of the paper profile, with intervals
  medvqa report base=base.jsonl two-stage=two_stage.jsonl --human base=base_review.csv \\
      --human two-stage=two_stage_review.csv --format latex
  medvqa report scores.json --profile strict --metric accuracy --metric f1/open --format csv
      rows from a score file (one row per run scored under --profile)
  medvqa report runs/eval/*.scores.json
      every 'medvqa evaluate' run in one table, each row named after its run
  medvqa report two-stage=run.jsonl --reference-field true_answer --prediction-field predicted_answer

Each RUN is LABEL=FILE or FILE. A FILE is a prediction file (scored here; label: the file
name without extension) or a score file (medvqa.scores JSON, written by 'medvqa score
--format json', 'medvqa evaluate', 'medvqa ablate', ...; label: the run's own).
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


def _split(spec: str) -> tuple[str | None, Path]:
    """``(label, path)`` of a RUN; the label is ``None`` when the spec gives none."""
    if "=" in spec:
        label, _, location = spec.partition("=")
        if label and location:
            return label, Path(location)
    return None, Path(spec)


@dataclass(frozen=True)
class _Row:
    """A table row: its label, its aggregates, and what is known of its items."""

    label: str
    aggregates: dict[str, Aggregate]
    ids: frozenset[str] | None = None  # prediction files: the item ids
    items: ItemSet | None = None  # score files: the items' count and hash
    n: int | None = None


def _load_run(label: str | None, path: Path, args: argparse.Namespace) -> list[_Row]:
    from medvqa._io import read_json
    from medvqa.metrics import ItemSet, evaluate, is_score_data

    if path.suffix == ".json" and is_score_data(read_json(path)):
        return _score_file_rows(label, path, args)
    preds = read_prediction_file(path, args)
    result = evaluate(preds, profile=args.profile, seed=args.seed, n_boot=args.n_boot, by=())
    ids = frozenset(p.id for p in preds)
    return [_Row(label or path.stem, dict(result.aggregates), ids, ItemSet.of(ids), len(preds))]


def _score_file_rows(label: str | None, path: Path, args: argparse.Namespace) -> list[_Row]:
    """The runs of a score file scored under ``--profile``: named LABEL, LABEL:RUN or RUN."""
    import warnings

    from medvqa._errors import DataFormatError
    from medvqa.metrics import read_scores

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FutureWarning)
        scores = read_scores(path)
    for w in caught:
        print(f"medvqa: note: {w.message}", file=sys.stderr)
    runs = [r for r in scores.runs if r.profile == args.profile]
    if not runs:
        have = ", ".join(scores.profiles()) or "none"
        raise DataFormatError(
            f"no run scored under profile {args.profile!r} (profiles: {have})", file=str(path)
        )
    rows = []
    for r in runs:
        name = r.label if label is None else label if len(runs) == 1 else f"{label}:{r.label}"
        rows.append(_Row(name, dict(r.aggregates), None, r.items, r.n))
    return rows


def _items_warning(runs: list[_Row]) -> str | None:
    """A warning when the runs do not hold the same items.

    Prediction files are compared by their item ids; rows from score files by the hash of
    their ids (files of earlier releases, which keep none, by their number of items).
    """
    if all(r.ids is not None for r in runs):
        return _ids_warning(runs)
    if all(r.items is not None for r in runs):
        groups: dict[ItemSet | None, list[str]] = {}
        for r in runs:
            groups.setdefault(r.items, []).append(r.label)
        if len(groups) < 2:
            return None
        listed = "; ".join(
            f"{', '.join(labels)} ({s.count if s else 0} items)" for s, labels in groups.items()
        )
        return (
            f"the runs do not hold the same items but {len(groups)} different sets: {listed}; rows of "
            "different sets are not comparable"
        )
    sizes = {r.label: r.n for r in runs if r.n is not None}
    if len(set(sizes.values())) < 2:
        return None
    listed = ", ".join(f"{label} {n}" for label, n in sizes.items())
    return f"the runs do not hold the same items: they score {listed} items; their rows are not comparable"


def _ids_warning(runs: list[_Row]) -> str | None:
    known = [(r.label, r.ids) for r in runs if r.ids is not None]
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
    runs: list[_Row] = []
    for spec in args.runs:
        label, path = _split(spec)
        runs.extend(_load_run(label, path, args))
    warning = _items_warning(runs)
    if warning is not None:
        print(f"medvqa: WARNING: {warning}", file=sys.stderr)
    rows = [(r.label, r.aggregates) for r in runs]
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
