"""One writer per output: an exclusive lock file beside every long-run output.

A run that writes a prediction file, an evaluation or a training folder first creates a
lock file (``preds.jsonl.lock`` beside ``preds.jsonl``; ``medvqa.lock`` inside a run
folder) holding the owner's pid, host, start time and command. A second run that wants
the same output is refused with a message naming the file and its owner. The lock file
is created complete in one atomic step (written to a temporary file, then hard-linked
into place), so a reader never sees a half-written lock.

A lock left behind by a run that died (killed, machine crash) is *stale*:

* same host, and its pid is no longer alive (or now belongs to a process started later,
  or the machine has rebooted since): the lock is taken over, with a warning;
* another host: the pid cannot be checked from here, so the run is refused and the
  message says which file to delete once you know that no run is writing the output.

A process may take a lock it already holds again (nested writers share it); it is
released when the outermost holder releases it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from medvqa._errors import MedVQAError

__all__ = ["LockHeldError", "RunLock", "lock_path"]

LOCK_SUFFIX = ".lock"
DIR_LOCK_NAME = "medvqa.lock"
_GUARD_STALE_S = 60.0

# resolved lock path -> (owner pid, depth, token): the locks this process holds
_HELD: dict[str, tuple[int, int, str]] = {}


class LockHeldError(MedVQAError):
    """Another run holds the lock of an output (the message names the output, the lock and its owner)."""


def lock_path(target: str | os.PathLike[str]) -> Path:
    """The lock file of an output: ``<file>.lock`` beside a file, ``<folder>/medvqa.lock`` in a folder.

    >>> lock_path("runs/preds.jsonl").name
    'preds.jsonl.lock'
    """
    p = Path(target)
    if p.is_dir():
        return p / DIR_LOCK_NAME
    return p.with_name(p.name + LOCK_SUFFIX)


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return None


def _process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OSError:
        return False
    return True


def _owner_alive(info: dict[str, Any]) -> bool:
    """Whether the process named by a lock written on this host still runs."""
    boot = _boot_id()
    if boot is not None and info.get("boot_id") not in (None, boot):
        return False  # the machine rebooted since the lock was written
    pid = info.get("pid")
    if not isinstance(pid, int) or not _pid_alive(pid):
        return False
    started = info.get("process_start")
    now = _process_start(pid)
    return started is None or now is None or started == now


def _describe(info: dict[str, Any]) -> str:
    parts = [f"pid {info.get('pid', '?')} on host {info.get('host', '?')}"]
    if info.get("started"):
        parts.append(f"started {info['started']}")
    if info.get("command"):
        parts.append(f"command: {info['command']}")
    return ", ".join(parts)


def _read(path: Path) -> dict[str, Any] | None:
    """The lock's content; ``None`` when it is gone; ``{}`` when it is unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class RunLock:
    """An exclusive lock on one output file or folder, held for the length of a run.

    Use it as a context manager around everything that writes the output::

        with RunLock("runs/preds.jsonl"):
            ...  # write runs/preds.jsonl (and its sidecars)

    Args:
        target: The output file or folder.
        folder: Lock ``target`` as a folder (``<target>/medvqa.lock``, created with the
            folder); ``None``: a folder when ``target`` is an existing folder.
        what: How to name the output in messages (e.g. ``"prediction file"``).

    Raises:
        LockHeldError: On :meth:`acquire`, when another live run holds the lock, or a lock
            written on another host is present (the message says how to remove it).

    Example:
        >>> import tempfile, os
        >>> out = os.path.join(tempfile.mkdtemp(), "preds.jsonl")
        >>> with RunLock(out) as lock:
        ...     os.path.exists(lock.path)
        True
        >>> os.path.exists(out + ".lock")
        False
    """

    def __init__(
        self, target: str | os.PathLike[str], *, folder: bool | None = None, what: str = "output"
    ) -> None:
        self.target = Path(target)
        is_folder = self.target.is_dir() if folder is None else folder
        self.folder = is_folder
        self.path = self.target / DIR_LOCK_NAME if is_folder else lock_path(self.target)
        self.what = what
        self._key = ""

    # -- acquire / release ---------------------------------------------------------------------

    def acquire(self) -> RunLock:
        """Take the lock (or join this process's hold on it); see the class docstring."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._key = str(self.path.resolve())
        held = _HELD.get(self._key)
        if held is not None and held[0] == os.getpid():
            _HELD[self._key] = (held[0], held[1] + 1, held[2])
            return self
        token = uuid.uuid4().hex
        for _ in range(3):
            if self._create(token):
                _HELD[self._key] = (os.getpid(), 1, token)
                return self
            info = _read(self.path)
            if info is None:
                continue  # released meanwhile: try again
            self._take_over_or_refuse(info, token)
            if (_read(self.path) or {}).get("token") == token:
                _HELD[self._key] = (os.getpid(), 1, token)
                return self
        raise LockHeldError(f"{self.target}: could not take the lock {self.path}; try again")

    def release(self) -> None:
        """Release one hold; the file is removed when the outermost holder releases it."""
        held = _HELD.get(self._key)
        if held is None or held[0] != os.getpid():
            return
        if held[1] > 1:
            _HELD[self._key] = (held[0], held[1] - 1, held[2])
            return
        del _HELD[self._key]
        info = _read(self.path)
        if info is not None and info.get("token") == held[2]:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    # -- internals -----------------------------------------------------------------------------

    def _content(self, token: str) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
            "target": str(self.target),
            "boot_id": _boot_id(),
            "process_start": _process_start(os.getpid()),
            "token": token,
        }

    def _create(self, token: str) -> bool:
        """Create the lock file, complete, in one step; ``False`` when it exists."""
        data = json.dumps(self._content(token), indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
            except OSError:  # a file system without hard links
                try:
                    fd2 = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd2, "w", encoding="utf-8") as fh:
                    fh.write(data)
            return True
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass

    def _refusal(self, info: dict[str, Any], why: str) -> LockHeldError:
        return LockHeldError(
            f"{self.target}: this {self.what} is {why} ({_describe(info)}; lock file {self.path}). "
            "Two runs writing one output would interleave their results: wait for that run to finish "
            f"or choose another output. If you are sure no run is writing it, delete {self.path}"
        )

    def _take_over_or_refuse(self, info: dict[str, Any], token: str) -> None:
        here = socket.gethostname()
        if not info:
            age = time.time() - self._mtime(self.path)
            if age < 5.0:
                raise self._refusal(info, "being written by another run (its lock is being created)")
        elif info.get("host") != here:
            raise self._refusal(info, "locked by a run on another host, which cannot be checked from here")
        elif _owner_alive(info):
            raise self._refusal(info, "being written by another run")
        guard = self.path.with_name(self.path.name + ".takeover")
        if guard.exists() and time.time() - self._mtime(guard) > _GUARD_STALE_S:
            guard.unlink(missing_ok=True)
        try:
            fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise self._refusal(info, "being taken over by another run right now") from None
        try:
            if _read(self.path) != info:
                return  # someone else took it over first; the caller checks who holds it
            self.path.unlink(missing_ok=True)
            if self._create(token):
                warnings.warn(
                    f"{self.target}: took over the stale lock {self.path} of a run that is no longer "
                    f"running ({_describe(info) if info else 'unreadable lock file'})",
                    stacklevel=4,
                )
        finally:
            os.close(fd)
            guard.unlink(missing_ok=True)

    @staticmethod
    def _mtime(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return time.time()
