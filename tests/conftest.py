"""Shared pytest configuration: offline, deterministic, with paths to optional real data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDVQA_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real releases in ../shared/data; tests that use it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set MEDVQA_SHARED_DATA to run these tests)")
    return SHARED_DATA


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bnb-cpu-path",
        choices=("auto", "packed", "plain"),
        default="auto",
        help="CPU path of bitsandbytes' 4-bit layers: 'packed' (as on CPUs with AVX512-BF16, "
        "forced on any CPU), 'plain' (as on CPUs without it) or 'auto' (this CPU's own)",
    )


@pytest.fixture(scope="session", autouse=True)
def _bnb_cpu_path(request: pytest.FixtureRequest) -> Iterator[None]:
    """Apply ``--bnb-cpu-path`` to the whole session (see tests/bnb_cpu.py)."""
    path = request.config.getoption("--bnb-cpu-path")
    if path == "auto":
        yield
        return
    from tests.bnb_cpu import force_cpu_4bit_path

    with force_cpu_4bit_path(path):
        yield
