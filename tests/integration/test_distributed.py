"""Data-parallel training: two CPU processes (gloo) under torchrun match one process.

Two processes with 1 sample per device see, at each step, the same two samples as one
process with 2 samples per device (same seed, same global batch of 2). LoRA dropout is off
so that the two runs draw no different random numbers. Stated tolerance: adapter weights agree
to 1e-4 absolute and logged losses to 1e-4 relative (float sums are reduced in another order
across processes; measured differences are around 1e-6).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from medvqa.training import run_stage
from tests.integration.training_helpers import adapter_weights, max_abs_diff, tiny_config, vqa_samples

pytestmark = [pytest.mark.train, pytest.mark.slow]

WORKER = Path(__file__).with_name("training_worker.py")
ATOL = 1e-4


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    samples = vqa_samples(data, 8)
    common = {"max_steps": 4, "grad_accum": 1, "lora_dropout": 0.0, "save_steps": 2}
    ddp_cfg = tiny_config(tmp_path / "ddp", batch_size=1, **common)
    cfg_file = ddp_cfg.save(tmp_path / "ddp.json")
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)]),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(WORKER),
            str(data),
            str(cfg_file),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT rank=0 steps=4" in proc.stdout and "RESULT rank=1 steps=4" in proc.stdout

    out = Path(ddp_cfg.output_dir)
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2 and result["global_step"] == 4
    adapters = [p for p in out.rglob("adapter_model.safetensors") if "checkpoints" not in p.parts]
    assert adapters == [out / "adapter" / "adapter_model.safetensors"], "exactly one adapter is written"
    assert not list(out.glob(".adapter*"))

    single = run_stage(
        tiny_config(tmp_path / "single", batch_size=2, **common), train_samples=samples, progress=False
    )
    diff = max_abs_diff(adapter_weights(out / "adapter"), adapter_weights(single.adapter_dir))
    assert diff < ATOL, f"DDP and single-process adapters differ by {diff}"
    ddp_losses = [r["loss"] for r in result["loss_history"] if "loss" in r]
    one_losses = [r["loss"] for r in single.loss_history if "loss" in r]
    assert ddp_losses == pytest.approx(one_losses, rel=1e-4)
