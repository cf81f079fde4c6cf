"""A stage killed mid-run and restarted from its last checkpoint ends with the same adapter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from medvqa.training import StageConfig, run_stage
from medvqa.training._callbacks import StepCallback
from tests.integration.training_helpers import adapter_weights, max_abs_diff, tiny_config, vqa_samples

pytestmark = [pytest.mark.train, pytest.mark.slow]

WORKER = Path(__file__).with_name("training_worker.py")


def _cfg(out: Path) -> StageConfig:
    # dropout on, gradient accumulation on, a schedule with warm-up and decay: all must resume exactly
    return tiny_config(out, max_steps=6, grad_accum=2, save_steps=2, warmup_steps=2, lora_dropout=0.1)


def test_sigkill_then_resume_gives_the_same_adapter(tmp_path: Path) -> None:
    data = tmp_path / "data"
    samples = vqa_samples(data, 8)
    straight = run_stage(_cfg(tmp_path / "straight"), train_samples=samples, progress=False)

    cfg = _cfg(tmp_path / "killed")
    cfg_file = cfg.save(tmp_path / "killed.json")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(data), str(cfg_file), "--kill-at-step", "5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    out = Path(cfg.output_dir)
    assert not (out / "result.json").exists() and not (out / "adapter").exists()
    assert (out / "checkpoints" / "checkpoint-4" / "medvqa_checkpoint.json").is_file()

    resumed = run_stage(cfg, train_samples=samples, progress=False)
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("checkpoint-4")
    assert resumed.global_step == straight.global_step == 6
    diff = max_abs_diff(adapter_weights(straight.adapter_dir), adapter_weights(resumed.adapter_dir))
    assert diff == 0.0, f"resumed adapter differs by {diff}"
    # the loss history spans the interruption: steps 1..6, equal to the uninterrupted run's
    assert [r["loss"] for r in resumed.loss_history] == [r["loss"] for r in straight.loss_history]


def test_exception_mid_stage_then_resume(tmp_path: Path) -> None:
    samples = vqa_samples(tmp_path / "data", 8)
    straight = run_stage(_cfg(tmp_path / "a"), train_samples=samples, progress=False)

    class Crash(RuntimeError):
        pass

    def crash(step: int) -> None:
        if step == 3:
            raise Crash

    cfg = _cfg(tmp_path / "b")
    with pytest.raises(Crash):
        run_stage(cfg, train_samples=samples, callbacks=[StepCallback(crash)], progress=False)
    resumed = run_stage(cfg, train_samples=samples, progress=False)
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("checkpoint-2")
    assert max_abs_diff(adapter_weights(straight.adapter_dir), adapter_weights(resumed.adapter_dir)) == 0.0
    # the mean loss covers all 6 steps, not the 4 after the resume
    assert resumed.train_loss == straight.train_loss


def test_mean_loss_after_a_resume_equals_the_uninterrupted_runs(tmp_path: Path) -> None:
    """Logging every 4 steps, saving every 2: the steps between a log and a checkpoint still count."""
    import json

    samples = vqa_samples(tmp_path / "data", 8)
    cfg = _cfg(tmp_path / "a").replace(logging_steps=4)
    straight = run_stage(cfg, train_samples=samples, progress=False)
    trainer_mean = json.loads((tmp_path / "a" / "trainer_state.json").read_text())["log_history"][-1][
        "train_loss"
    ]
    assert straight.train_loss == pytest.approx(trainer_mean, rel=1e-6)  # the Trainer's own mean, unresumed

    def crash(step: int) -> None:
        if step == 3:
            raise RuntimeError("interrupted")

    cfg = cfg.replace(output_dir=str(tmp_path / "b"))
    with pytest.raises(RuntimeError, match="interrupted"):
        run_stage(cfg, train_samples=samples, callbacks=[StepCallback(crash)], progress=False)
    resumed = run_stage(cfg, train_samples=samples, progress=False)
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("checkpoint-2")
    assert resumed.train_loss == straight.train_loss
    saved = json.loads((tmp_path / "b" / "result.json").read_text())
    assert saved["train_loss"] == straight.train_loss
