"""One writer per output: the lock file refuses a second process and takes over a dead owner's lock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medvqa._lock import LockHeldError, RunLock, lock_path

SRC = str(Path(__file__).resolve().parents[2] / "src")

HOLDER = textwrap.dedent(
    """
    import sys, time
    from medvqa._lock import RunLock
    with RunLock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()  # hold the lock until the parent says so
    """
)


def _holder(target: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(proc.stdout)


def test_a_second_process_is_refused_naming_the_file_and_the_owner(tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    proc = _holder(out)
    try:
        with pytest.raises(LockHeldError) as info:
            RunLock(out, what="prediction file").acquire()
        msg = str(info.value)
        assert str(out) in msg and f"pid {proc.pid}" in msg and socket.gethostname() in msg
        assert str(lock_path(out)) in msg and "being written by another run" in msg
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=30)
    assert not lock_path(out).exists()  # released by its owner
    with RunLock(out):  # and free again
        pass


def test_the_lock_file_names_its_owner(tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    with RunLock(out) as lock:
        info = json.loads(lock.path.read_text())
    assert lock.path == tmp_path / "preds.jsonl.lock"
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and info["started"]


def test_a_dead_owners_lock_on_this_host_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "2020-01-01T00:00:00Z"}
    lock_path(out).write_text(json.dumps(stale))
    with pytest.warns(UserWarning, match="took over the stale lock"), RunLock(out) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not lock_path(out).exists()


def test_a_lock_from_a_previous_boot_is_stale_even_if_the_pid_is_alive(tmp_path: Path) -> None:
    if not Path("/proc/sys/kernel/random/boot_id").exists():
        pytest.skip("no boot id on this system")
    out = tmp_path / "preds.jsonl"
    stale = {"pid": os.getppid(), "host": socket.gethostname(), "boot_id": "another-boot"}
    lock_path(out).write_text(json.dumps(stale))
    with pytest.warns(UserWarning, match="stale lock"), RunLock(out):
        pass


def test_a_lock_from_another_host_is_refused_with_how_to_remove_it(tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    lock_path(out).write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "started": "x"}))
    with pytest.raises(LockHeldError, match="another host") as info:
        RunLock(out).acquire()
    assert f"delete {lock_path(out)}" in str(info.value)
    assert lock_path(out).exists()  # never removed behind the other host's back


def test_nested_holds_in_one_process_share_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out) as outer:
        assert outer.path == out / "medvqa.lock"
        with RunLock(out):
            pass
        assert outer.path.exists()  # the inner release keeps the outer hold
    assert not outer.path.exists()


def test_a_lock_of_another_run_is_left_alone_on_release(tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    lock = RunLock(out).acquire()
    lock.path.write_text(json.dumps({"pid": 1, "host": "h", "token": "someone-else"}))
    lock.release()
    assert lock.path.exists()
