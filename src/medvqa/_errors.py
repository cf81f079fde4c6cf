"""Exception hierarchy shared by every part of medvqa.

Every error names the bad value, where it came from (file, row, field) and, where it
helps, what would have been valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DataFormatError", "ImageLoadError", "MedVQAError", "RowRef"]


@dataclass(frozen=True)
class RowRef:
    """Where a row sits in its file, worded the same way by every reader.

    Line formats (JSON Lines, CSV, text) count **1-based lines**, as editors show them;
    JSON arrays count **0-based records**, as ``data[i]`` indexes them. The text always says
    which: ``line 3`` or ``record 2``.

    Attributes:
        kind: ``line`` or ``record``.
        number: The 1-based line number, or the 0-based record index.
        detail: Optional extra words, for example ``question 4`` inside a record.

    >>> str(RowRef.line(3)), str(RowRef.record(2, "synpic1234, question 0"))
    ('line 3', 'record 2 (synpic1234, question 0)')
    """

    kind: Literal["line", "record"]
    number: int
    detail: str = ""

    @classmethod
    def line(cls, number: int, detail: str = "") -> RowRef:
        """The 1-based line ``number`` of a line format (JSON Lines, CSV, text)."""
        return cls("line", number, detail)

    @classmethod
    def record(cls, index: int, detail: str = "") -> RowRef:
        """The 0-based record ``index`` of a JSON array."""
        return cls("record", index, detail)

    def __str__(self) -> str:
        return f"{self.kind} {self.number}" + (f" ({self.detail})" if self.detail else "")


class MedVQAError(Exception):
    """Base class of every error raised on purpose by medvqa."""


class DataFormatError(MedVQAError, ValueError):
    """A data file, row or field is malformed, missing or not what the loader expects.

    Args:
        message: What is wrong and what would be valid.
        file: The file the bad value came from, if any.
        row: Where the row is: a :class:`RowRef` (``line 3`` / ``record 2``), a text
            already worded as a location, or (legacy) a bare number shown as ``row N``.
        field: The field (column, key) that is wrong, if any.
        line: Shorthand for ``row=RowRef.line(line)``: a 1-based line of a line format.
        record: Shorthand for ``row=RowRef.record(record)``: a 0-based JSON array index.

    The rendered message always carries the location, for example
    ``VQA_RAD Dataset Public.json, record 12, field 'answer': empty answer`` or
    ``metadata.jsonl, line 3, field 'file_name': ...``.

    >>> str(DataFormatError("empty answer", file="a.json", record=12, field="answer"))
    "a.json, record 12, field 'answer': empty answer"
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: RowRef | int | str | None = None,
        field: str | None = None,
        line: int | None = None,
        record: int | None = None,
    ) -> None:
        if sum(x is not None for x in (row, line, record)) > 1:
            raise TypeError("give at most one of row=, line= and record=")
        if line is not None:
            row = RowRef.line(line)
        elif record is not None:
            row = RowRef.record(record)
        self.file = file
        self.row = row
        self.field = field
        self.reason = message
        where = []
        if file is not None:
            where.append(str(file))
        if isinstance(row, int):
            where.append(f"row {row}")
        elif row is not None:
            where.append(str(row))
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ImageLoadError(MedVQAError, OSError):
    """An image is missing, unreadable, too large, or lies outside its dataset root."""
