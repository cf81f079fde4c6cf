"""Exception hierarchy shared by every part of medvqa.

Every error names the bad value, where it came from (file, row, field) and, where it
helps, what would have been valid.
"""

from __future__ import annotations

__all__ = ["DataFormatError", "ImageLoadError", "MedVQAError"]


class MedVQAError(Exception):
    """Base class of every error raised on purpose by medvqa."""


class DataFormatError(MedVQAError, ValueError):
    """A data file, row or field is malformed, missing or not what the loader expects.

    Args:
        message: What is wrong and what would be valid.
        file: The file the bad value came from, if any.
        row: The 0-based row (record) index in that file, if any.
        field: The field (column, key) that is wrong, if any.

    The rendered message always carries the location, for example
    ``VQA_RAD Dataset Public.json, row 12, field 'answer': empty answer``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | str | None = None,
        field: str | None = None,
    ) -> None:
        self.file = file
        self.row = row
        self.field = field
        self.reason = message
        where = []
        if file is not None:
            where.append(str(file))
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ImageLoadError(MedVQAError, OSError):
    """An image is missing, unreadable, too large, or lies outside its dataset root."""
