"""A second process that holds a medvqa run lock, for tests of the one-writer rule."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_HOLDER = (
    "import sys\nfrom medvqa._lock import RunLock\n"
    "with RunLock(sys.argv[1], folder=sys.argv[2] == 'folder'):\n"
    "    print('locked', flush=True)\n    sys.stdin.readline()\n"
)


@contextmanager
def lock_held_elsewhere(path: Path, *, folder: bool = False) -> Iterator[subprocess.Popen[str]]:
    """Hold the lock of ``path`` in another process (its pid is ``proc.pid``) until the block ends."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), "folder" if folder else "file"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
