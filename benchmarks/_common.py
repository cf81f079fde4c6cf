"""Helpers shared by the benchmark scripts: timing, the ``BENCH`` output line and common inputs."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

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


def run_timed(main: Callable[[], int]) -> NoReturn:
    """Run a benchmark's ``main``, print its total wall time to stderr and exit with its code."""
    start = time.perf_counter()
    code = main()
    print(f"total {time.perf_counter() - start:.1f} s", file=sys.stderr)
    sys.exit(code)


def limit_torch_threads(torch: Any, cap: int = 4) -> None:
    """Let ``torch`` (the imported module) use at most ``cap`` CPU threads, fewer on a smaller machine."""
    torch.set_num_threads(max(1, min(cap, os.cpu_count() or 1)))


def vqa_rad_source() -> Path:
    """The VQA-RAD release in the shared data when present, else the sample bundled with medvqa."""
    from medvqa.data import sample_root

    root = SHARED_DATA / "vqa_rad"
    return root if (root / "VQA_RAD Dataset Public.json").is_file() else sample_root() / "vqa_rad"


def vqa_rad_train_batches(batch: int, n_batches: int) -> list[list[Any]]:
    """The first ``batch * n_batches`` VQA-RAD training questions (see :func:`vqa_rad_source`),
    in batches of ``batch``."""
    from medvqa.data import load

    samples = list(load("vqa_rad", vqa_rad_source(), split="train"))[: batch * n_batches]
    return [samples[i : i + batch] for i in range(0, len(samples), batch)]
