"""benchmarks/gpu.py: the GPU measurement kit runs end to end on the CPU with --tiny."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("bitsandbytes")
pytestmark = [pytest.mark.train, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu.py"


def _rows(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = json.loads((out / "gpu.json").read_text())
    return data["meta"], data["results"]


def test_tiny_run_measures_everything_and_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, str(SCRIPT), "--tiny", "--out", str(out), "--oom-above", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta, rows = _rows(out)
    assert meta["status"] == "finished" and meta["tiny"] is True
    assert all(r["status"] in ("ok", "oom") for r in rows), [
        r for r in rows if r["status"] not in ("ok", "oom")
    ]
    ok = {
        (r["measurement"], r["variant"], r.get("batch"), r.get("workers"))
        for r in rows
        if r["status"] == "ok"
    }
    for variant in ("QLoRA nf4", "LoRA fp32"):
        assert ("train step, paper micro-batch", variant, 2, None) in ok
    gen = "generation, greedy, 3 new tokens"
    for batch in (1, 8, 32):
        for workers in (0, 2):
            assert (gen, "NF4 + adapter, eval", batch, workers) in ok
    for workers in (0, 2, 4):
        assert ("training collator", "QLoRA nf4", 2, workers) in ok
    # the order puts the most important first: the QLoRA step, then generation at batch 8
    assert [r["measurement"] for r in rows[:2]] == ["train step, paper micro-batch", gen]
    assert rows[1]["batch"] == 8
    check = next(r for r in rows if r["measurement"] == "FLOP formula check")
    assert check["ratio"] == pytest.approx(1.0)
    oom = [r for r in rows if r["status"] == "oom"]
    assert {(r["variant"], r["batch"]) for r in oom} == {("QLoRA nf4", 4), ("LoRA fp32", 4)}
    step = rows[0]
    assert step["samples_per_s"] > 0 and step["tokens_per_s"] > step["samples_per_s"]
    assert step["tflop_per_step"] > 0 and step["mfu"] is None  # no known peak on a CPU
    table = (out / "gpu.md").read_text()
    assert "| family | measurement |" in table and table.count("\n| idefics2 |") == len(rows)


@pytest.fixture
def gpu_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("_bench_gpu", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_a_spent_budget_stops_cleanly_and_records_what_was_skipped(
    gpu_module: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    assert gpu_module.main(["--tiny", "--budget-seconds", "0", "--out", str(out)]) == 0
    meta, rows = _rows(out)
    assert meta["status"] == "finished"
    assert rows and all(r["status"] == "skipped (budget)" for r in rows)
    with pytest.raises(SystemExit, match="exists"):
        gpu_module.main(["--tiny", "--budget-seconds", "0", "--out", str(out)])  # never two runs in one file
