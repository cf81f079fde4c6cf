"""``medvqa score``: score prediction files under one or more metric profiles."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvqa._commands._common import FIELD_OPTIONS, read_prediction_file
from medvqa._commands._options import add_options
from medvqa._gc import paused_gc

if TYPE_CHECKING:
    from collections.abc import Sequence

    from medvqa.metrics import ProfileResult
    from medvqa.records import Prediction

__all__ = ["register"]

_EPILOG = """\
examples:
  medvqa score predictions.jsonl
      the strict profile (default) with 95% bootstrap intervals
  medvqa score base.jsonl two_stage.jsonl --profile paper strict
  medvqa score run.jsonl --profile all --format md
  medvqa score results.json --reference-field true_answer --prediction-field predicted_answer
      the paper's result files (a JSON list; no answer type: closed = yes/no answers)
  medvqa score run.jsonl --by modality --by organ --details run.details.jsonl
  medvqa score run.jsonl --profile medevalkit --judge http://127.0.0.1:8000/v1 --judge-model NAME
      open answers judged by a model (cached in run.jsonl.judge.jsonl), with an audit report

Every metric is shown with its n (the items it averages); empty predictions are scored as
wrong and counted in empty_predictions. Profiles: paper, llava_med, lmms_eval,
multimedeval, medevalkit, strict (see the metric cards in the documentation).
"""


def register(subparsers: Any) -> None:
    """Add the ``score`` command."""
    parser = subparsers.add_parser(
        "score",
        help="score prediction files under metric profiles (paper, llava_med, ..., strict)",
        description=(
            "Score one or more prediction files (JSON Lines or one JSON list) under named metric "
            "profiles and print one table: a row per file x profile, every metric with its n and, "
            "where computed, its 95% bootstrap interval."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", type=Path, help="prediction files to score")
    add_options(
        parser,
        ("profile", "n_boot", "seed", *FIELD_OPTIONS, "judge", "output"),
        helps={"output": "write the output to this file instead of standard output"},
    )
    parser.add_argument(
        "--format",
        choices=("table", "json", "csv", "md"),
        default="table",
        help=(
            "output: 'table' (default) prints one block per file and profile, a line per metric with "
            "its own n; 'md' one wide Markdown table; 'csv' a row per metric; 'json' everything"
        ),
    )
    parser.add_argument(
        "--by",
        action="append",
        default=None,
        metavar="FIELD",
        help="also break every metric down by this metadata field (repeatable), e.g. modality",
    )
    parser.add_argument(
        "--details",
        type=Path,
        metavar="OUT.jsonl",
        help="write per-item scores with raw, extracted and normalized strings and the extraction rule",
    )
    _judge_options(parser)
    parser.set_defaults(func=run)


def _judge_options(parser: Any) -> None:
    parser.add_argument(
        "--medevalkit-swapped-labels",
        action="store_true",
        help="parity mode: report MedEvalKit's swapped labels (its precision is F1, its recall is "
        "precision, its f1 is recall); default: the true values",
    )
    group = parser.add_argument_group("model-judged scoring (medevalkit profile, with --judge)")
    group.add_argument("--judge-model", metavar="NAME", help="model name to request from a judge URL")
    group.add_argument(
        "--judge-revision",
        metavar="REV",
        help="judge revision (hub commit or API snapshot), part of the cache key",
    )
    group.add_argument(
        "--judge-cache",
        type=Path,
        metavar="PATH",
        help="verdict cache (JSON Lines; default: FILE.judge.jsonl next to each prediction file)",
    )
    group.add_argument(
        "--judge-api-key-env",
        default="OPENAI_API_KEY",
        metavar="VAR",
        help="environment variable holding the endpoint's API key (default: OPENAI_API_KEY)",
    )
    group.add_argument(
        "--judge-review",
        type=Path,
        metavar="SHEET",
        help="a filled `medvqa review` sheet: adds judge-vs-expert agreement to the report",
    )
    group.add_argument(
        "--judge-report", type=Path, metavar="OUT.json", help="also write the judge audit report as JSON"
    )


def _profiles(requested: list[str] | None) -> list[str]:
    return list(requested) if requested else ["strict"]


def run_record_shortfall(path: Path, n_read: int) -> str | None:
    """A warning when ``path`` holds fewer predictions than its run record (``.run.json``) promised.

    ``medvqa predict`` writes the number of questions of the run (``n``) beside its output;
    a shorter file is an interrupted or truncated run, whose scores cover only part of the
    questions. ``None`` when there is no readable record or nothing is missing.
    """
    from medvqa._io import read_json

    record_path = path.with_suffix(".run.json")
    if record_path == path or not record_path.is_file():
        return None
    try:
        record = read_json(record_path)
    except ValueError:
        return None
    expected = record.get("n") if isinstance(record, dict) else None
    if not isinstance(expected, int) or isinstance(expected, bool) or n_read >= expected:
        return None
    return (
        f"{path}: {expected - n_read} of {expected} predictions are missing: the file holds "
        f"{n_read}, its run record {record_path.name} says the run has {expected} questions "
        "(an interrupted run? rerun the same predict command to finish it); these scores cover "
        f"only {n_read} of them"
    )


def score_files(args: argparse.Namespace) -> list[tuple[str, list[Prediction], ProfileResult]]:
    """Read every file and score it under every requested profile."""
    from medvqa.metrics import MedEvalKitProfile, Profile
    from medvqa.metrics._profiles import _score_profile, _Shared

    names = _profiles(args.profile)
    judge = _make_judge(args, names)
    args.judge_reports = {}
    out = []
    for path in args.files:
        preds = read_prediction_file(path, args)
        if not preds:
            raise ValueError(f"{path}: no predictions to score")
        warning = run_record_shortfall(path, len(preds))
        if warning is not None:
            print(f"medvqa: WARNING: {warning}", file=sys.stderr)
        with paused_gc():  # many small acyclic objects (see medvqa._gc)
            shared = _Shared(preds)  # checked, id-sorted and grouped once for every profile
        for name in names:
            profile: str | Profile = name
            if judge is not None and name == "medevalkit":
                profile = _judged(args, path, preds, judge)
            elif name == "medevalkit" and args.medevalkit_swapped_labels:
                profile = MedEvalKitProfile(swapped_labels=True)
            result = _score_profile(
                preds,
                profile=profile,
                seed=args.seed,
                n_boot=args.n_boot,
                by=args.by,
                shared=shared,
                keep_per_item=args.details is not None,
            )
            if args.details is None:  # per-item values are only written with --details
                result = dataclasses.replace(result, per_item=[])
            out.append((str(path), preds, result))
    return out


def _make_judge(args: argparse.Namespace, names: list[str]) -> Any:
    if getattr(args, "judge", None) in (None, "", "none"):
        return None
    if "medevalkit" not in names:
        raise ValueError("--judge needs the medevalkit profile: add --profile medevalkit (or --profile all)")
    import os

    from medvqa.judge import judge_from_spec

    return judge_from_spec(
        args.judge,
        model=args.judge_model,
        revision=args.judge_revision,
        api_key=os.environ.get(args.judge_api_key_env) or None,
    )


def _judged(args: argparse.Namespace, path: Path, preds: list[Prediction], judge: Any) -> Any:
    from medvqa.judge import judge_predictions, judge_report, judged_profile

    cache = args.judge_cache or path.with_name(path.name + ".judge.jsonl")
    if args.judge_cache is not None and len(args.files) > 1:
        print(f"medvqa: note: one judge cache {cache} shared by {len(args.files)} files", file=sys.stderr)
    verdicts = judge_predictions(preds, judge, cache=cache)
    args.judge_reports[str(path)] = judge_report(preds, verdicts, review_sheet=args.judge_review)
    fresh = sum(not v.cached for v in verdicts)
    print(
        f"medvqa: note: {path}: {len(verdicts)} open items judged ({fresh} new, "
        f"{len(verdicts) - fresh} from {cache})",
        file=sys.stderr,
    )
    return judged_profile(verdicts, swapped_labels=args.medevalkit_swapped_labels)


def _blocks(rows: list[tuple[str, list[Prediction], ProfileResult]]) -> str:
    """One block per file and profile, one line per metric with its own n: fits 80 columns."""
    out = []
    for file, _, result in rows:
        body = []
        for agg in result.aggregates.values():
            label = agg.key if "=" not in agg.subset else f"{agg.name} [{agg.subset}]"
            if agg.key == "empty_predictions":
                value, interval = f"{int(agg.numerator)}", ""
            else:
                value = "n/a" if agg.value is None else f"{agg.value:.3f}"
                interval = (
                    ""
                    if agg.ci_low is None or agg.ci_high is None
                    else f"[{agg.ci_low:.3f}, {agg.ci_high:.3f}]"
                )
            body.append([label, value, interval, str(agg.denominator)])
        out.append(
            f"{file}: {result.profile} ({result.n} items)\n"
            + _render(["metric", "value", "95% interval", "n"], body, markdown=False)
        )
    return "\n\n".join(out)


def _table(rows: list[tuple[str, list[Prediction], ProfileResult]], *, markdown: bool) -> str:
    from medvqa._tables import MISSING

    keys: list[str] = []
    breakdown: list[list[str]] = []
    for file, _, result in rows:
        for key, agg in result.aggregates.items():
            if "=" in agg.subset:
                breakdown.append([file, result.profile, agg.name, agg.subset, agg.format(3, n=True)])
            elif key not in keys:
                keys.append(key)
    header = ["file", "profile", "n", *keys]
    body = []
    for file, _, result in rows:
        cells = [file, result.profile, str(result.n)]
        for key in keys:
            found = result.aggregates.get(key)
            if found is None:
                cells.append(MISSING)
            elif key == "empty_predictions":
                cells.append(f"{int(found.numerator)}/{found.denominator}")
            else:
                cells.append(found.format(3, n=True))
        body.append(cells)
    text = _render(header, body, markdown=markdown)
    if breakdown:
        text += "\n\nbreakdown:\n" + _render(
            ["file", "profile", "metric", "subset", "value"], breakdown, markdown=markdown
        )
    return text


def _render(header: list[str], body: list[list[str]], *, markdown: bool) -> str:
    from medvqa._tables import markdown_table, plain_table

    return markdown_table(header, body) if markdown else plain_table(header, body)


def _csv(rows: list[tuple[str, list[Prediction], ProfileResult]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [
            "file",
            "profile",
            "key",
            "metric",
            "subset",
            "value",
            "numerator",
            "denominator",
            "ci_low",
            "ci_high",
        ]
    )
    for file, _, result in rows:
        for key, a in result.aggregates.items():
            writer.writerow(
                [
                    file,
                    result.profile,
                    key,
                    a.name,
                    a.subset,
                    "" if a.value is None else repr(a.value),
                    repr(a.numerator),
                    a.denominator,
                    "" if a.ci_low is None else repr(a.ci_low),
                    "" if a.ci_high is None else repr(a.ci_high),
                ]
            )
    return buf.getvalue().rstrip("\n")


def _score_file(rows: list[tuple[str, list[Prediction], ProfileResult]], args: argparse.Namespace) -> Any:
    """The rows as a :class:`medvqa.metrics.ScoreFile` (what ``--format json`` writes)."""
    from medvqa.metrics import ItemSet, ScoreFile, ScoreRun, file_labels

    files = [f for f, _, _ in rows]
    labels = dict(zip(files, file_labels(files)))
    items = {file: ItemSet.of(p.id for p in preds) for file, preds, _ in rows}
    fields = {
        "id": args.id_field,
        "reference": args.reference_field,
        "prediction": args.prediction_field,
        "answer_type": args.answer_type_field,
    }
    runs = tuple(
        ScoreRun.from_result(result, label=labels[file], file=file, items=items[file])
        for file, _, result in rows
    )
    reports = getattr(args, "judge_reports", {})
    return ScoreFile(runs=runs, fields=fields, judge={f: r.to_dict() for f, r in reports.items()})


def _write_details(path: Path, rows: list[tuple[str, list[Prediction], ProfileResult]]) -> None:
    from medvqa._io import atomic_write_jsonl

    lines = []
    for file, preds, result in rows:
        for pred, item in zip(preds, result.per_item):
            record: dict[str, Any] = {
                "file": file,
                "profile": result.profile,
                "id": pred.id,
                "answer_type": "closed" if item["closed"] else "open",
                "reference": pred.reference,
                "prediction": pred.prediction,
                "extracted": item["extracted"],
                "rule": item["rule"],
                "pred_norm": item["pred_norm"],
                "truth_norm": item["truth_norm"],
                "empty": bool(item["empty"]),
                "scores": {m: item[m] for m in result.metric_names},
            }
            lines.append(record)
    atomic_write_jsonl(path, lines)


def _note_missing_breakdowns(
    rows: list[tuple[str, list[Prediction], ProfileResult]], fields: Sequence[str]
) -> None:
    """Say on stderr which ``--by`` fields no item of a file carries (no breakdown for them)."""
    from medvqa.metrics._profiles import _field_value

    done: set[str] = set()
    for file, preds, _ in rows:
        if file in done:
            continue
        done.add(file)
        for name in fields:
            if all(_field_value(p, name) is None for p in preds):
                print(
                    f"medvqa: note: {file}: no item has the field {name!r}; no breakdown by it",
                    file=sys.stderr,
                )


def run(args: argparse.Namespace) -> int:
    """Execute ``medvqa score``."""
    if args.n_boot < 0:
        raise ValueError(f"--n-boot must be >= 0, got {args.n_boot}")
    rows = score_files(args)
    reports = getattr(args, "judge_reports", {})
    # -o NAME.json without --format: the score file, not the table text in a .json file
    as_json = args.format == "json" or (
        args.format == "table" and args.output is not None and args.output.suffix == ".json"
    )
    scores = _score_file(rows, args) if as_json else None
    if scores is not None:
        text = scores.to_json().rstrip("\n")
    elif args.format == "csv":
        text = _csv(rows)
    elif args.format == "md":
        text = _table(rows, markdown=True)
    else:
        text = _blocks(rows)
        for file, report in reports.items():
            text += f"\n\n{file}\n" + report.to_markdown().rstrip("\n")
    if reports and args.judge_report is not None:
        from medvqa._io import atomic_write_json

        atomic_write_json(args.judge_report, {f: r.to_dict() for f, r in reports.items()})
    if args.details is not None:
        _write_details(args.details, rows)
    if args.output is not None and scores is not None:
        from medvqa.metrics import write_scores

        write_scores(args.output, scores)
    elif args.output is not None:
        from medvqa._io import atomic_write_text

        atomic_write_text(args.output, text + "\n")
    else:
        sys.stdout.write(text + "\n")
    _note_missing_breakdowns(rows, args.by or ())
    for file, _preds, result in rows:
        empty = result.aggregates.get("empty_predictions")
        if empty is not None and empty.numerator and result.profile == rows[0][2].profile:
            print(
                f"medvqa: note: {file}: {int(empty.numerator)} of {empty.denominator} predictions are empty "
                "(scored as wrong)",
                file=sys.stderr,
            )
    return 0
