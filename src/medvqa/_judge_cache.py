"""The on-disk verdict cache of model-judged scoring: a readable JSON Lines file.

One line per verdict, appended (flushed and fsynced) as soon as the judge returns it, so a
killed run keeps every finished verdict and the next run resumes from there. Writers take an
exclusive lock on ``PATH.lock`` (``fcntl.flock``; released by the kernel when a process dies)
for each append and re-read lines other writers added, so several processes may share one
cache. A final line cut short by a crash is dropped on the next open.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from medvqa._errors import DataFormatError

__all__ = ["JudgeCache", "cache_key"]


def cache_key(
    model: str, revision: str, prompt_version: str, question: str, reference: str, answer: str
) -> str:
    """The SHA-256 key of one judgement (hex).

    >>> cache_key("m", "r", "v1", "q", "a", "b")[:12]
    'c1c88f05e949'
    """
    payload = json.dumps([model, revision, prompt_version, question, reference, answer], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if needed)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: a single writer is assumed
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class JudgeCache:
    """Verdicts by key, backed by a JSON Lines file shared safely between processes.

    Args:
        path: The cache file (created with its folder on first write).

    Every record holds ``key``, ``judge_model``, ``judge_revision``, ``prompt_version``,
    ``question``, ``reference``, ``answer``, the exact ``prompt`` (chat messages), the raw
    ``reply`` and the parsed ``verdict`` (``true``, ``false`` or ``null`` when unparseable).
    When two records share a key, the first one wins.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._records: dict[str, dict[str, Any]] = {}
        self._offset = 0
        if self.path.exists():
            with _locked(self.lock_path):
                self._repair_tail()
                self._read_new()

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def get(self, key: str) -> dict[str, Any] | None:
        """The record of ``key``, or ``None``."""
        return self._records.get(key)

    def refresh(self) -> None:
        """Read the lines other writers appended since the last read."""
        if self.path.exists():
            with _locked(self.lock_path):
                self._read_new()

    def add(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Append ``record`` (it must have ``key``) unless another writer stored that key first.

        Returns:
            The record now stored for that key (the earlier one if there was one).
        """
        key = str(record["key"])
        line = json.dumps(dict(record), ensure_ascii=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.lock_path):
            self._read_new()
            if key in self._records:
                return self._records[key]
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self._read_new()
        return self._records[key]

    def _repair_tail(self) -> None:
        """Drop a last line cut short by a crash (called under the lock)."""
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            cut = raw.rfind(b"\n") + 1
            try:
                json.loads(raw[cut:])
                keep = raw + b"\n"
            except ValueError:
                keep = raw[:cut]
            with self.path.open("r+b") as fh:
                fh.truncate(0)
                fh.write(keep)
                fh.flush()
                os.fsync(fh.fileno())

    def _read_new(self) -> None:
        """Parse complete lines after the last offset read (called under the lock)."""
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        position = self._offset
        for raw in data[:end].splitlines(keepends=True):
            try:
                obj = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                raise DataFormatError(
                    f"malformed cache line at byte {position} (delete that line to judge those items again)",
                    file=str(self.path),
                ) from exc
            position += len(raw)
            if isinstance(obj, dict) and "key" in obj:
                self._records.setdefault(str(obj["key"]), obj)
        self._offset += end
