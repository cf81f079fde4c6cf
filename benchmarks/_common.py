"""Helpers shared by the benchmark scripts: timing and the ``BENCH`` output line."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDVQA_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def emit(name: str, value: float, unit: str, **extra: Any) -> None:
    """Print one measurement in the protocol of ``benchmarks/run.py``."""
    print("BENCH " + json.dumps({"name": name, "value": value, "unit": unit, **extra}), flush=True)


def skip(reason: str) -> None:
    """Report that this benchmark cannot run here, and why."""
    print(f"SKIP {reason}", flush=True)


def best_of(fn: Callable[[], Any], *, repeat: int = 3) -> tuple[float, Any]:
    """Run ``fn`` ``repeat`` times; return the fastest wall time in seconds and the last result."""
    best = float("inf")
    result: Any = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result
