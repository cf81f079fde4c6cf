"""Crash-safe file writing and JSON Lines reading shared by every module that writes results.

Rules: a result file is either absent or complete. Whole files are written to a temporary
file in the same folder, flushed, fsynced and renamed over the target. Streams of records
(JSON Lines) are appended one line at a time, each flushed and fsynced; a reader that
resumes a stream drops a final line cut short by a crash and reports it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from medvqa._errors import DataFormatError

__all__ = [
    "JsonlWriter",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "read_json",
    "read_jsonl",
    "read_text",
    "recover_jsonl",
]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never seen half-written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON (UTF-8, keys in insertion order) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def read_text(path: str | os.PathLike[str]) -> str:
    """Read a UTF-8 text file; a byte-order mark (as some editors write) is dropped, not read as text.

    Raises:
        DataFormatError: The file is missing or not UTF-8 (naming the file).
    """
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise DataFormatError("file not found", file=str(p)) from exc
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"not UTF-8 text: {exc}", file=str(p)) from exc


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file (a UTF-8 byte-order mark is accepted), with an error naming the file, line and column when it is malformed."""
    p = Path(path)
    text = read_text(p)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=str(p)
        ) from exc


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for every non-blank line of a JSON Lines file.

    Line numbers are 1-based, as editors show them.

    Raises:
        DataFormatError: A line is not valid JSON or not a JSON object (names file and line).
    """
    p = Path(path)
    try:
        fh = p.open(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise DataFormatError("file not found", file=str(p)) from exc
    with fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"malformed JSON line: {exc.msg}", file=str(p), row=number) from exc
            if not isinstance(obj, dict):
                raise DataFormatError(
                    f"expected a JSON object, got {type(obj).__name__}", file=str(p), row=number
                )
            yield number, obj


def recover_jsonl(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], bool]:
    """Read the complete records of a JSON Lines stream that a crash may have cut short.

    A final line without its newline that does not parse is the trace of an interrupted
    write: it is removed from the file (so that appending can go on) and reported through
    the returned flag. A malformed line anywhere else is an error.

    Returns:
        The complete records, and whether a partial last line was dropped.

    Raises:
        DataFormatError: A complete line is malformed.
    """
    p = Path(path)
    if not p.exists():
        return [], False
    raw = p.read_bytes()
    dropped = False
    if raw and not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n") + 1
        tail = raw[cut:]
        try:
            json.loads(tail)
            raw = raw + b"\n"
        except ValueError:
            raw = raw[:cut]
            dropped = True
        atomic_write_bytes(p, raw)
    return [obj for _, obj in read_jsonl(p)], dropped


class JsonlWriter:
    """Append JSON objects to a JSON Lines file, one durable line at a time.

    Each :meth:`write` writes one line, flushes and fsyncs it, so that a run interrupted
    at any point keeps every record it had finished.

    Example:
        >>> import tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "out.jsonl")
        >>> with JsonlWriter(path) as w:
        ...     w.write({"id": "a", "x": 1})
        >>> [obj["id"] for _, obj in read_jsonl(path)]
        ['a']
    """

    def __init__(self, path: str | os.PathLike[str], *, append: bool = True, fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._fh = self.path.open("a" if append else "w", encoding="utf-8")

    def write(self, obj: Mapping[str, Any]) -> None:
        """Append one record and make it durable."""
        self._fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())

    def write_all(self, objs: Iterable[Mapping[str, Any]]) -> None:
        """Append several records, each made durable as it is written."""
        for obj in objs:
            self.write(obj)

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
