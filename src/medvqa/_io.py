"""Crash-safe file writing and the one JSON Lines reader and writer of the library.

Rules: a result file is either absent or complete. Whole files are written to a temporary
file in the same folder, flushed, fsynced and renamed over the target; the result has the
permissions a plain ``open(path, "w")`` would give (``0o666`` less the umask for a new
file, the old mode for a file replaced). Streams of records (JSON Lines) are appended one
line at a time, each flushed and fsynced; a reader that resumes a stream drops a final
line cut short by a crash and reports it.

What a JSON Lines *line* is, for every reader and writer here: the text between two
``\n`` characters (a ``\r`` before the ``\n`` is tolerated). Nothing else ends a line:
U+2028, U+2029, U+0085, ``\x1c``-``\x1e``, ``\v``, ``\f`` or a lone ``\r`` inside a JSON
string are text. The writer emits UTF-8 (non-ASCII text stays readable) but escapes every
character that :meth:`str.splitlines` would treat as a line break (``json.dumps`` already
escapes the ASCII ones; U+0085, U+2028 and U+2029 it leaves raw, and this writer writes
them as ``\u0085``, ``\u2028``, ``\u2029``), so that its files read back line for line in
any tool, whatever that tool calls a line.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from medvqa._errors import DataFormatError

__all__ = [
    "JsonlWriter",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_jsonl",
    "atomic_write_text",
    "current_umask",
    "jsonl_line",
    "parse_jsonl",
    "read_json",
    "read_jsonl",
    "read_text",
    "recover_jsonl",
]

# Line breaks of str.splitlines() that json.dumps(ensure_ascii=False) leaves unescaped.
_RAW_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux ``/proc``).

    >>> 0 <= current_umask() <= 0o777
    True
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no read-only query elsewhere: set and restore at once
    os.umask(mask)
    return mask


def _plain_open_mode(target: Path) -> int:
    """The mode ``open(target, "w")`` would leave: the file's own if it exists, else 0666 & ~umask."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never seen half-written.

    The file ends with the permissions a plain ``open(path, "w")`` would give it (the
    umask is respected; an existing file keeps its mode), not the private ``0o600`` of
    a temporary file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = _plain_open_mode(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
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


def jsonl_line(obj: Any) -> str:
    """One JSON Lines line for ``obj``, with its final ``\\n``.

    UTF-8 text stays as it is, except the characters that :meth:`str.splitlines` treats as
    line breaks, which are escaped (see the module docstring), so the line holds exactly one
    line break, at its end.

    >>> jsonl_line({"a": "x\\u2028y\\u00e9"})
    '{"a": "x\\\\u2028y\u00e9"}\\n'
    """
    return json.dumps(obj, ensure_ascii=False).translate(_RAW_BREAKS) + "\n"


_DECODER = json.JSONDecoder()
_DECODE = _DECODER.decode  # what json.loads(text) calls, with the same default options
# What _DECODE calls once it has skipped leading blanks (set by JSONDecoder.__init__, untyped).
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def parse_jsonl(text: str, *, file: str | None = None, hint: str = "") -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, value)`` for every non-blank line of JSON Lines ``text``.

    Lines end at ``\\n`` only (a ``\\r`` before it is tolerated); line numbers are 1-based,
    as editors show them. Values may be any JSON value (see :func:`read_jsonl` for objects
    only).

    Args:
        text: The file's text.
        file: The file named in errors.
        hint: Added to the error message of a malformed line.

    Raises:
        DataFormatError: A line is not valid JSON (names file and line).

    >>> list(parse_jsonl('{"a": "x\\u2028y"}\\n\\n[1]\\r\\n'))
    [(1, {'a': 'x\\u2028y'}), (3, [1])]
    """
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip(" \t\r"):
            continue
        try:
            value, end = _SCAN(line, 0)  # a value that starts the line
        except (StopIteration, json.JSONDecodeError):
            end = -1
        if end != len(line):
            # Not one bare value (blanks around it, a byte-order mark, extra data, an error):
            # the decoder's own result or message.
            value = _decode_line(line, file, number, hint)
        yield number, value


def _decode_line(line: str, file: str | None, number: int, hint: str) -> Any:
    try:
        # json.loads without its per-call argument checks; it still rejects a byte-order mark
        return json.loads(line) if line.startswith("\ufeff") else _DECODE(line)
    except json.JSONDecodeError as exc:
        extra = f"; {hint}" if hint else ""
        raise DataFormatError(f"malformed JSON line ({exc.msg}){extra}", file=file, line=number) from exc


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for every non-blank line of a JSON Lines file.

    Lines end at ``\\n`` only (see :func:`parse_jsonl`); line numbers are 1-based, as
    editors show them; a UTF-8 byte-order mark is dropped.

    Raises:
        DataFormatError: The file is missing or not UTF-8, or a line is not valid JSON or not
            a JSON object (names file and line).
    """
    p = Path(path)
    for number, obj in parse_jsonl(read_text(p), file=str(p)):
        if not isinstance(obj, dict):
            raise DataFormatError(
                f"expected a JSON object, got {type(obj).__name__}", file=str(p), line=number
            )
        yield number, obj


def atomic_write_jsonl(path: str | os.PathLike[str], objs: Iterable[Any]) -> None:
    """Write ``objs`` as a JSON Lines file atomically (lines as :func:`jsonl_line` writes them)."""
    atomic_write_text(path, "".join(jsonl_line(obj) for obj in objs))


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

    Lines are written by :func:`jsonl_line` (line breaks inside strings escaped). Each
    :meth:`write` writes one line, flushes and fsyncs it, so that a run interrupted
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
        self._fh = self.path.open("a" if append else "w", encoding="utf-8", newline="\n")

    def write(self, obj: Mapping[str, Any]) -> None:
        """Append one record and make it durable."""
        self._fh.write(jsonl_line(obj))
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

    def __exit__(self, *exc_info: object) -> None:
        self.close()
