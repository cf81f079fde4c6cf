"""Human evaluation: review sheets out, expert judgements in, agreement with the metrics.

An expert marks each (question, truth, prediction) correct or wrong in a CSV sheet, as the
paper's human evaluation did. :func:`export_review_sheet` writes the sheet,
:func:`read_review_sheet` reads it back (naming the row and field of every bad value), and
:func:`human_evaluation` reports human accuracy with a Wilson 95% interval and Cohen's kappa
between the expert and each automatic metric. Light core: standard library only.

>>> import os, tempfile
>>> from medvqa.records import Prediction
>>> preds = [Prediction("1", "Is it normal?", "yes", "yes", "closed"),
...          Prediction("2", "Which organ?", "liver", "spleen", "open")]
>>> path = export_review_sheet(preds, os.path.join(tempfile.mkdtemp(), "sheet.csv"))
>>> text = open(path, encoding="utf-8").read().replace(",,\\n", ",1,looks right\\n", 1)
>>> _ = open(path, "w", encoding="utf-8").write(text.replace(",,\\n", ",0,\\n"))
>>> [(r.id, r.correct) for r in read_review_sheet(path)]
[('1', True), ('2', False)]
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvqa._errors import DataFormatError
from medvqa._io import atomic_write_text, read_text
from medvqa.metrics._aggregate import Aggregate, wilson_interval
from medvqa.metrics._profiles import ProfileResult
from medvqa.records import Prediction

__all__ = [
    "REVIEW_COLUMNS",
    "Agreement",
    "HumanEvaluation",
    "ReviewItem",
    "cohen_kappa",
    "export_review_sheet",
    "human_evaluation",
    "read_review_sheet",
]

REVIEW_COLUMNS: tuple[str, ...] = (
    "id",
    "image",
    "question",
    "truth",
    "prediction",
    "correct",
    "justification",
)
"""The columns of a review sheet, in order; ``correct`` and ``justification`` are left empty."""

_TRUE = frozenset({"1", "y", "yes", "true", "t", "correct", "right", "c"})
_FALSE = frozenset({"0", "n", "no", "false", "f", "wrong", "incorrect", "w"})


def export_review_sheet(
    predictions: Sequence[Prediction],
    path: str | os.PathLike[str],
    *,
    shuffle_seed: int | None = None,
) -> Path:
    """Write a review sheet (CSV, UTF-8) for an expert to fill in.

    Columns: :data:`REVIEW_COLUMNS`. ``prediction`` is the raw model reply, so the expert
    judges what the model said, not what an extractor kept.

    Args:
        predictions: The predictions to review (unique ids).
        path: Where to write the sheet (written atomically).
        shuffle_seed: When given, rows are put in a seeded order keyed on the ids (so the
            reviewer does not see runs or datasets grouped); default: input order.

    Returns:
        The path written.

    Raises:
        ValueError: Duplicate ids.
    """
    seen: set[str] = set()
    for p in predictions:
        if p.id in seen:
            raise ValueError(f"duplicate id {p.id!r}; review sheets need unique ids")
        seen.add(p.id)
    rows = list(predictions)
    if shuffle_seed is not None:
        rows.sort(key=lambda p: hashlib.sha256(f"{shuffle_seed}:{p.id}".encode()).hexdigest())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(REVIEW_COLUMNS)
    for p in rows:
        writer.writerow([p.id, p.image or "", p.question, p.reference, p.prediction, "", ""])
    target = Path(path)
    atomic_write_text(target, buf.getvalue())
    return target


@dataclass(frozen=True)
class ReviewItem:
    """One row of a filled review sheet.

    Attributes:
        id: The prediction id.
        correct: The expert's judgement, or ``None`` when the row was left empty.
        justification: The expert's free-text justification (may be empty).
        row: The 1-based line of the sheet (the header is line 1).
    """

    id: str
    correct: bool | None
    justification: str = ""
    row: int = 0


# Over 60 lines with its public docstring; the code is 50 lines.
def read_review_sheet(path: str | os.PathLike[str], *, require_complete: bool = True) -> list[ReviewItem]:
    """Read a filled review sheet.

    ``correct`` accepts (any case, surrounding spaces ignored) ``1``, ``y``, ``yes``,
    ``true``, ``t``, ``correct``, ``right``, ``c`` for correct and ``0``, ``n``, ``no``,
    ``false``, ``f``, ``wrong``, ``incorrect``, ``w`` for wrong. An empty cell means not
    reviewed.

    Args:
        path: The CSV file.
        require_complete: When true (default), an empty ``correct`` cell is an error; when
            false, such rows are returned with ``correct=None`` (and counted as unreviewed by
            :func:`human_evaluation`).

    Returns:
        One item per data row, in file order.

    Raises:
        DataFormatError: Missing file or columns, a bad or missing value (naming the row
            and field), or a duplicate id.
    """
    p = Path(path)
    file = str(p)
    text = read_text(p)
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    for col in ("id", "correct"):
        if col not in header:
            raise DataFormatError(
                f"missing column; the sheet needs at least 'id' and 'correct' (found: {', '.join(header) or 'none'})",
                file=file,
                field=col,
            )
    out: list[ReviewItem] = []
    seen: dict[str, int] = {}
    for record in reader:
        row = reader.line_num
        ident = (record.get("id") or "").strip()
        if not ident:
            raise DataFormatError("empty id", file=file, line=row, field="id")
        if ident in seen:
            raise DataFormatError(
                f"duplicate id {ident!r} (first at line {seen[ident]})", file=file, line=row, field="id"
            )
        seen[ident] = row
        raw = (record.get("correct") or "").strip()
        value = raw.lower()
        correct: bool | None
        if value in _TRUE:
            correct = True
        elif value in _FALSE:
            correct = False
        elif value == "":
            if require_complete:
                raise DataFormatError(
                    "not reviewed (empty); fill it with 1/0 (or yes/no, correct/wrong), "
                    "or pass require_complete=False (--allow-incomplete) to count it as unreviewed",
                    file=file,
                    line=row,
                    field="correct",
                )
            correct = None
        else:
            raise DataFormatError(
                f"bad value {raw!r}; use 1/0, yes/no, true/false, correct/wrong (or leave empty)",
                file=file,
                line=row,
                field="correct",
            )
        out.append(ReviewItem(ident, correct, (record.get("justification") or "").strip(), row))
    return out


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Cohen's kappa between two binary raters on the same items.

    ``(p_o - p_e) / (1 - p_e)``; ``nan`` when it is undefined (no items, or both raters
    constant and chance agreement is 1).

    >>> cohen_kappa([True, True, False, False], [True, False, False, False])
    0.5
    """
    if len(a) != len(b):
        raise ValueError(f"raters have {len(a)} and {len(b)} items")
    n = len(a)
    if n == 0:
        return math.nan
    po = sum(1 for x, y in zip(a, b) if bool(x) == bool(y)) / n
    pa = sum(1 for x in a if x) / n
    pb = sum(1 for y in b if y) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    if pe >= 1.0:
        return math.nan
    return (po - pe) / (1 - pe)


@dataclass(frozen=True)
class Agreement:
    """Agreement between the expert and one automatic metric.

    Attributes:
        metric: ``profile:metric`` (e.g. ``paper:containment``).
        kappa: Cohen's kappa (``nan`` when undefined).
        observed: Share of items where the two agree.
        n: Items compared (reviewed items that the run scored).
        threshold: A continuous metric counts as "correct" at or above this value.
        metric_accuracy: Share of those items the metric calls correct.
    """

    metric: str
    kappa: float
    observed: float
    n: int
    threshold: float
    metric_accuracy: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (``nan`` written as ``None``)."""
        return {
            "metric": self.metric,
            "kappa": None if math.isnan(self.kappa) else self.kappa,
            "observed": self.observed,
            "n": self.n,
            "threshold": self.threshold,
            "metric_accuracy": self.metric_accuracy,
        }


@dataclass(frozen=True)
class HumanEvaluation:
    """Human accuracy and its agreement with automatic metrics.

    Attributes:
        accuracy: Human accuracy over the reviewed items, with a Wilson interval.
        reviewed: Items with a judgement.
        unreviewed: Items left empty (only with ``require_complete=False``).
        agreements: By ``profile:metric``.
    """

    accuracy: Aggregate
    reviewed: int
    unreviewed: int
    agreements: dict[str, Agreement] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {
            "accuracy": self.accuracy.to_dict(),
            "reviewed": self.reviewed,
            "unreviewed": self.unreviewed,
            "agreements": {k: a.to_dict() for k, a in self.agreements.items()},
        }


# Over 60 lines with its public docstring; the code is 37 lines.
def human_evaluation(
    reviews: Sequence[ReviewItem],
    results: ProfileResult | Sequence[ProfileResult] = (),
    *,
    threshold: float = 0.5,
    level: float = 0.95,
) -> HumanEvaluation:
    """Human accuracy (Wilson interval) and Cohen's kappa against each automatic metric.

    Args:
        reviews: From :func:`read_review_sheet`.
        results: Scored runs of the same predictions (one per profile); each of their
            ``agreement_metrics`` (the per-item metrics that judge right or wrong) becomes an
            agreement entry.
        threshold: Continuous metrics (F1, BLEU, recall) count as "correct" at or above it.
        level: Confidence level of the interval.

    Raises:
        ValueError: A reviewed id is missing from a result.

    >>> from medvqa.metrics import evaluate
    >>> from medvqa.records import Prediction
    >>> preds = [Prediction(str(i), "q", "yes", p, "closed") for i, p in enumerate(["yes", "no", "yes"])]
    >>> reviews = [ReviewItem("0", True), ReviewItem("1", False), ReviewItem("2", True)]
    >>> h = human_evaluation(reviews, evaluate(preds, profile="paper", n_boot=0))
    >>> h.accuracy.value, h.agreements["paper:containment"].kappa
    (0.6666666666666666, 1.0)
    """
    result_list = [results] if isinstance(results, ProfileResult) else list(results)
    judged = [r for r in reviews if r.correct is not None]
    k = sum(1 for r in judged if r.correct)
    n = len(judged)
    lo, hi = wilson_interval(k, n, level) if n else (math.nan, math.nan)
    accuracy = Aggregate(
        name="human",
        subset="all",
        value=k / n if n else None,
        numerator=float(k),
        denominator=n,
        ci_low=None if not n else lo,
        ci_high=None if not n else hi,
        item_metric="correct",
        key="human",
    )
    agreements: dict[str, Agreement] = {}
    for result in result_list:
        index: Mapping[str, Mapping[str, Any]] = {str(row["id"]): row for row in result.per_item}
        missing = [r.id for r in judged if r.id not in index]
        if missing:
            raise ValueError(
                f"{len(missing)} reviewed ids are not in the {result.profile!r} results (first: {missing[:5]})"
            )
        human = [bool(r.correct) for r in judged]
        for metric in result.agreement_metrics or result.metric_names:
            auto = [float(index[r.id][metric]) >= threshold for r in judged]
            observed = sum(1 for x, y in zip(human, auto) if x == y) / n if n else math.nan
            agreements[f"{result.profile}:{metric}"] = Agreement(
                metric=f"{result.profile}:{metric}",
                kappa=cohen_kappa(human, auto),
                observed=observed,
                n=n,
                threshold=threshold,
                metric_accuracy=sum(auto) / n if n else math.nan,
            )
    return HumanEvaluation(accuracy=accuracy, reviewed=n, unreviewed=len(reviews) - n, agreements=agreements)
