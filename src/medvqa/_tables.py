"""Markdown and plain-text tables: the one table builder every report uses.

Conventions, the same in every table medvqa writes:

* A **missing value** (``None``, or a float that is NaN) is shown as :data:`MISSING`, an em
  dash (``—``). An empty string stays empty: it means "nothing to say here", not "unknown".
* Cell text is put on one line (runs of whitespace, newlines included, become one space) and
  every ``|`` is escaped as ``\\|``, so a cell can never split a Markdown row.
* Numbers are shown with a fixed number of decimals when the caller gives ``digits``.
* Columns are left-aligned unless the caller asks otherwise (``"right"`` for counts).

This module is part of the light core (standard library only).

>>> print(markdown_table(["run", "n", "accuracy"], [["a|b", 3, 0.5], ["c", None, None]],
...                      align=["left", "right", "right"], digits=2))
| run | n | accuracy |
|---|---:|---:|
| a\\|b | 3 | 0.50 |
| c | — | — |
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

__all__ = ["MISSING", "Align", "cell", "interval", "markdown_table", "number", "plain_table"]

MISSING = "\u2014"
"""How every table shows a missing value: an em dash."""

Align = Literal["left", "right", "center"]
"""Alignment of a Markdown column."""

_RULES: dict[str, str] = {"left": "---", "right": "---:", "center": ":---:"}


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: float | int | None, digits: int = 3) -> str:
    """A number with ``digits`` decimals (ints as they are), or :data:`MISSING`.

    >>> number(0.12345), number(7), number(None), number(float("nan"))
    ('0.123', '7', '—', '—')
    """
    if value is None or _is_missing(value):
        return MISSING
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def interval(low: float | None, high: float | None, digits: int = 3) -> str:
    """`` [low, high]`` (with a leading space), or ``""`` when either end is missing.

    >>> number(0.5) + interval(0.25, 0.75)
    '0.500 [0.250, 0.750]'
    >>> interval(None, 0.5)
    ''
    """
    if low is None or high is None or _is_missing(low) or _is_missing(high):
        return ""
    return f" [{low:.{digits}f}, {high:.{digits}f}]"


def cell(value: object, *, digits: int | None = None, limit: int | None = None, escape: bool = True) -> str:
    """One cell's text: missing values as :data:`MISSING`, one line, ``|`` escaped.

    Args:
        value: The value; ``None`` and NaN are missing.
        digits: Decimals for floats (``None``: ``str(value)``).
        limit: Longest text kept; a longer one is cut and ends with ``…``.
        escape: Escape ``|`` (Markdown); plain-text tables pass ``False``.

    >>> cell("a |  b\\nc"), cell(None), cell(0.25, digits=1), cell("abcdef", limit=4)
    ('a \\\\| b c', '—', '0.2', 'abc…')
    """
    if _is_missing(value):
        return MISSING
    if isinstance(value, float) and digits is not None:
        text = f"{value:.{digits}f}"
    else:
        text = " ".join(str(value).split())
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "\u2026"
    return text.replace("|", "\\|") if escape else text


def markdown_table(
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    align: Sequence[Align] | None = None,
    digits: int | None = None,
    limit: int | None = None,
) -> str:
    """A GitHub Markdown table (no trailing newline); every cell goes through :func:`cell`.

    Args:
        header: Column headers.
        rows: One sequence of values per row, as long as ``header``.
        align: One alignment per column (default: all left).
        digits: Decimals for float cells.
        limit: Longest cell text kept.

    Raises:
        ValueError: A row or ``align`` does not have one entry per column.
    """
    width = len(header)
    rules = ["---"] * width if align is None else [_RULES[a] for a in align]
    if len(rules) != width:
        raise ValueError(f"align has {len(rules)} entries for {width} columns")
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join(rules) + "|"]
    for index, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"table row {index} has {len(row)} cells for {width} columns")
        lines.append("| " + " | ".join(cell(v, digits=digits, limit=limit) for v in row) + " |")
    return "\n".join(lines)


def plain_table(
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    align: Sequence[Align] | None = None,
    digits: int | None = None,
) -> str:
    """A plain-text table for terminals: columns padded to their widest cell, a dashed rule.

    Cells follow :func:`cell` without Markdown escaping (missing values as :data:`MISSING`);
    ``align`` pads each column to the left (default), right or centre.

    >>> print(plain_table(["a", "count"], [["x", None], ["yy", 12]], align=["left", "right"]))
    a   count
    --  -----
    x       —
    yy     12
    """
    head = [cell(h, escape=False) for h in header]
    body = [[cell(v, digits=digits, escape=False) for v in row] for row in rows]
    for index, row in enumerate(body):
        if len(row) != len(head):
            raise ValueError(f"table row {index} has {len(row)} cells for {len(head)} columns")
    sides = list(align) if align is not None else ["left"] * len(head)
    if len(sides) != len(head):
        raise ValueError(f"align has {len(sides)} entries for {len(head)} columns")
    widths = [max([len(head[i]), *(len(r[i]) for r in body)]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(_pad(c, w, a) for c, w, a in zip(cells, widths, sides)).rstrip()

    return "\n".join([line(head), "  ".join("-" * w for w in widths), *(line(r) for r in body)])


def _pad(text: str, width: int, side: str) -> str:
    if side == "right":
        return text.rjust(width)
    return text.center(width) if side == "center" else text.ljust(width)
