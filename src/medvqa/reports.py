"""Results tables in the paper's Figure 2 layout: a row per run, a column per metric.

Tables render as Markdown, CSV, JSON and LaTeX, with the bootstrap interval next to each
value when it is known and the number of items per row. This module is part of the light
core (standard library only).

>>> from medvqa.metrics import Aggregate
>>> t = ResultsTable(
...     columns=("containment", "f1"),
...     headers=("EM (containment)", "F1"),
...     rows=(("two-stage", (Aggregate("containment", "all", 0.56, 224.0, 400, 0.51, 0.61),
...                          Aggregate("f1", "all", 0.58, 232.0, 400))),),
... )
>>> print(t.to_markdown())
| run | n | EM (containment) | F1 |
|---|---|---|---|
| two-stage | 400 | 0.560 [0.510, 0.610] | 0.580 |
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from medvqa._tables import MISSING, markdown_table

if TYPE_CHECKING:
    from medvqa.metrics import Aggregate, ProfileResult

__all__ = ["PAPER_COLUMNS", "ReportFormat", "ResultsTable", "results_table"]

ReportFormat = Literal["md", "csv", "json", "latex"]
"""The formats :meth:`ResultsTable.render` writes."""

PAPER_COLUMNS: Mapping[str, str] = {
    "containment": "EM (containment)",
    "f1": "F1",
    "bleu1": "BLEU-1",
}
"""The paper's Figure 2 metric columns (``paper`` profile keys) and their headers."""

_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


_DIAGNOSTICS = frozenset({"empty_predictions", "closed_undecided", "closed_conflicting"})


def _latex(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


@dataclass(frozen=True)
class ResultsTable:
    """A table of aggregates: one row per run, one column per metric.

    Attributes:
        columns: Aggregate keys, one per column.
        headers: Column headers (same length as ``columns``).
        rows: ``(run label, aggregates)`` pairs; an aggregate is ``None`` when the run
            does not have that metric.
        digits: Decimal places shown.
        title: Optional caption (used by LaTeX).
    """

    columns: tuple[str, ...]
    headers: tuple[str, ...]
    rows: tuple[tuple[str, tuple[Aggregate | None, ...]], ...]
    digits: int = 3
    title: str = ""

    def __post_init__(self) -> None:
        if len(self.headers) != len(self.columns):
            raise ValueError(f"{len(self.headers)} headers for {len(self.columns)} columns")
        for label, cells in self.rows:
            if len(cells) != len(self.columns):
                raise ValueError(f"row {label!r} has {len(cells)} cells for {len(self.columns)} columns")
        if self.digits < 0:
            raise ValueError(f"digits must be >= 0, got {self.digits}")

    def _shared_n(self) -> bool:
        """Whether every row's cells share one denominator (then one ``n`` column says it)."""
        return all(len({c.denominator for c in cells if c is not None}) <= 1 for _, cells in self.rows)

    @staticmethod
    def _n(cells: Sequence[Aggregate | None]) -> str:
        ns = {c.denominator for c in cells if c is not None}
        return str(ns.pop()) if ns else MISSING

    def _cell(self, agg: Aggregate | None, *, with_n: bool = False) -> str:
        return MISSING if agg is None else agg.format(self.digits, n=with_n)

    def _layout(self) -> tuple[list[str], list[tuple[str, list[str]]]]:
        """Headers and cell texts: an ``n`` column when each row has one denominator, else each
        cell carries its own ``(n=...)`` (a list such as ``13/16/29`` reads as a fraction)."""
        if self._shared_n():
            headers = ["n", *self.headers]
            rows = [(label, [self._n(cells), *(self._cell(c) for c in cells)]) for label, cells in self.rows]
        else:
            headers = list(self.headers)
            rows = [(label, [self._cell(c, with_n=True) for c in cells]) for label, cells in self.rows]
        return headers, rows

    def to_markdown(self) -> str:
        """A Markdown (GitHub) table with an ``n`` column, or each cell's own n where they differ.

        A run without a metric shows :data:`medvqa._tables.MISSING` (an em dash) in that cell.
        """
        headers, rows = self._layout()
        return markdown_table(["run", *headers], [[label, *cells] for label, cells in rows])

    def to_csv(self) -> str:
        """CSV: ``run``, then for each column its value, ci_low, ci_high and n."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        header = ["run"]
        for h in self.headers:
            header += [h, f"{h} ci_low", f"{h} ci_high", f"{h} n"]
        writer.writerow(header)
        for label, cells in self.rows:
            row: list[Any] = [label]
            for c in cells:
                if c is None:
                    row += ["", "", "", ""]
                else:
                    row += [
                        "" if c.value is None else repr(c.value),
                        "" if c.ci_low is None else repr(c.ci_low),
                        "" if c.ci_high is None else repr(c.ci_high),
                        c.denominator,
                    ]
            writer.writerow(row)
        return buf.getvalue()

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict: columns, headers and rows with full aggregates."""
        return {
            "title": self.title,
            "columns": list(self.columns),
            "headers": list(self.headers),
            "rows": [
                {
                    "run": label,
                    "values": {
                        col: (None if c is None else c.to_dict()) for col, c in zip(self.columns, cells)
                    },
                }
                for label, cells in self.rows
            ],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def to_latex(self) -> str:
        """A ``tabular`` (booktabs rules) with intervals as ``value [lo, hi]``."""
        headers, rows = self._layout()
        spec = "l" + "r" * len(headers)
        lines = []
        if self.title:
            lines.append(f"% {_latex(self.title)}")
        lines += [
            f"\\begin{{tabular}}{{{spec}}}",
            "\\toprule",
            "Run & " + " & ".join("$n$" if h == "n" else _latex(h) for h in headers) + " \\\\",
            "\\midrule",
        ]
        for label, cells in rows:
            texts = ("---" if c == MISSING else _latex(c) for c in cells)  # LaTeX's em dash
            lines.append(f"{_latex(label)} & " + " & ".join(texts) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        return "\n".join(lines)

    def render(self, fmt: ReportFormat = "md") -> str:
        """The table in one of ``md``, ``csv``, ``json``, ``latex``.

        Raises:
            ValueError: Unknown format.
        """
        if fmt == "md":
            return self.to_markdown()
        if fmt == "csv":
            return self.to_csv()
        if fmt == "json":
            return self.to_json()
        if fmt == "latex":
            return self.to_latex()
        raise ValueError(f"unknown format {fmt!r}; valid: md, csv, json, latex")


# Over 60 lines with its public docstring; the code is 37 lines.
def results_table(
    runs: Mapping[str, ProfileResult | Mapping[str, Aggregate]]
    | Sequence[tuple[str, ProfileResult | Mapping[str, Aggregate]]],
    *,
    columns: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Mapping[str, Aggregate]] | None = None,
    digits: int = 3,
    title: str = "",
) -> ResultsTable:
    """Build a Figure-2 style table from several scored runs.

    Args:
        runs: ``label -> result`` (a mapping or a sequence of pairs, in row order); a result
            is a :class:`~medvqa.metrics.ProfileResult` or its ``aggregates`` mapping.
        columns: Aggregate keys to show, in order. Default: the paper's columns
            (:data:`PAPER_COLUMNS`) when every run has them, else the first run's overall,
            closed and open aggregates (no breakdowns, no diagnostic counts).
        headers: Column headers by key (defaults: :data:`PAPER_COLUMNS`, else the key).
        extra: More columns per run, e.g. ``{"two-stage": {"human": aggregate}}``; their
            keys are appended as columns.
        digits: Decimal places.
        title: Caption.

    Returns:
        The table.

    Raises:
        ValueError: No runs, or a requested column that no run has.

    >>> from medvqa.metrics import evaluate
    >>> from medvqa.records import Prediction
    >>> run = [Prediction("1", "q", "no", "no", "closed")]
    >>> t = results_table({"base": evaluate(run, profile="paper", n_boot=0)})
    >>> t.headers
    ('EM (containment)', 'F1', 'BLEU-1')
    """
    pairs = list(runs.items()) if isinstance(runs, Mapping) else list(runs)
    if not pairs:
        raise ValueError("results_table needs at least one run")
    aggs: list[tuple[str, Mapping[str, Aggregate]]] = []
    for label, result in pairs:
        mapping = result if isinstance(result, Mapping) else result.aggregates
        aggs.append((label, dict(mapping)))
    if columns is None:
        if all(all(k in m for k in PAPER_COLUMNS) for _, m in aggs):
            cols = list(PAPER_COLUMNS)
        else:
            cols = [
                k
                for k, a in aggs[0][1].items()
                if a.subset in ("all", "closed", "open") and k not in _DIAGNOSTICS
            ]
    else:
        cols = list(columns)
        for col in cols:
            if not any(col in m for _, m in aggs):
                available = sorted({k for _, m in aggs for k in m})
                raise ValueError(f"no run has the column {col!r}; available: {', '.join(available)}")
    extra = extra or {}
    extra_cols = list(dict.fromkeys(k for v in extra.values() for k in v))
    all_cols = cols + [c for c in extra_cols if c not in cols]
    names = {**PAPER_COLUMNS, **(headers or {})}
    rows: list[tuple[str, tuple[Aggregate | None, ...]]] = []
    for label, mapping in aggs:
        merged = {**mapping, **extra.get(label, {})}
        rows.append((label, tuple(merged.get(c) for c in all_cols)))
    return ResultsTable(
        columns=tuple(all_cols),
        headers=tuple(names.get(c, c) for c in all_cols),
        rows=tuple(rows),
        digits=digits,
        title=title,
    )
