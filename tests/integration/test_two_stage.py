"""Two stages continue one adapter with a fresh optimizer and schedule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from medvqa._errors import MedVQAError
from medvqa.training import run_stage, run_two_stage
from tests.integration.training_helpers import (
    adapter_weights,
    caption_samples,
    max_abs_diff,
    tiny_config,
    vqa_samples,
)

pytestmark = [pytest.mark.train, pytest.mark.slow]


def _configs(root: Path) -> tuple[Any, Any]:
    s1 = tiny_config(root / "unused1", name="stage1", prompt="caption", max_steps=3, learning_rate=1e-3)
    s2 = tiny_config(root / "unused2", name="stage2", max_steps=3, learning_rate=5e-3, warmup_steps=2)
    return s1, s2


def test_stage2_starts_from_stage1_adapter_with_fresh_schedule(tmp_path: Path) -> None:
    from transformers import TrainerCallback

    caps, qs = caption_samples(tmp_path, 6), vqa_samples(tmp_path, 6)
    s1, s2 = _configs(tmp_path)
    seen: dict[str, Any] = {}

    class Snapshot(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            name = Path(args.output_dir).parent.name
            seen[name] = {
                k.replace(".default", ""): v.detach().clone()
                for k, v in model.named_parameters()
                if "lora_" in k
            }
            seen[name + "_adapters"] = list(model.peft_config)

    result = run_two_stage(
        s1,
        s2,
        output_dir=tmp_path / "run",
        stage1_samples=caps,
        stage2_samples=qs,
        callbacks=[Snapshot()],
        progress=False,
    )
    assert result.stage1 is not None
    # stage 2 begins exactly where stage 1 ended: same adapter, no second one
    saved1 = adapter_weights(result.stage1.adapter_dir)
    begin2 = {k.removeprefix("base_model.model."): v for k, v in seen["stage2"].items()}
    saved1 = {k.removeprefix("base_model.model."): v for k, v in saved1.items()}
    assert max_abs_diff(saved1, begin2) == 0.0
    assert seen["stage2_adapters"] == ["default"]
    # stage 1 moved the adapter, stage 2 moved it further
    assert (
        max_abs_diff(saved1, {k.removeprefix("base_model.model."): v for k, v in seen["stage1"].items()}) > 0
    )
    final = {k.removeprefix("base_model.model."): v for k, v in adapter_weights(result.adapter_dir).items()}
    assert max_abs_diff(saved1, final) > 0
    # fresh optimizer and schedule: stage 2 counts its own steps and warms up again from 0
    assert result.stage2.global_step == 3
    lrs = [r["learning_rate"] for r in result.stage2.loss_history if "learning_rate" in r]
    # the logged rate is the one each step used: a 2-step warm-up of the stage-2 rate starts at 0
    assert lrs[:2] == [0.0, pytest.approx(5e-3 / 2)]
    summary = json.loads((tmp_path / "run" / "two_stage.json").read_text())
    assert summary["stage1"]["config"]["name"] == "stage1" and summary["adapter_dir"] == result.adapter_dir
    assert (tmp_path / "run" / "loss_curves.png").stat().st_size > 0
    curves = json.loads((tmp_path / "run" / "loss_curves.json").read_text())
    assert [s["stage"] for s in curves["series"]] == ["stage1", "stage2"]
    assert curves["series"][1]["x"][0] == 3 + 1  # stage 2 laid after stage 1's 3 steps


def test_continuing_from_disk_equals_continuing_in_memory(tmp_path: Path) -> None:
    caps, qs = caption_samples(tmp_path, 6), vqa_samples(tmp_path, 6)
    s1, s2 = _configs(tmp_path)
    mem = run_two_stage(
        s1, s2, output_dir=tmp_path / "mem", stage1_samples=caps, stage2_samples=qs, progress=False
    )
    # stage 1 alone first (as if a previous process finished it), then the two-stage runner
    run_stage(s1.replace(output_dir=str(tmp_path / "disk" / "stage1")), train_samples=caps, progress=False)
    disk = run_two_stage(
        s1, s2, output_dir=tmp_path / "disk", stage1_samples=caps, stage2_samples=qs, progress=False
    )
    assert disk.stage1 is not None and disk.stage1.reused
    assert max_abs_diff(adapter_weights(mem.adapter_dir), adapter_weights(disk.adapter_dir)) < 1e-6


def test_size_zero_is_single_stage(tmp_path: Path) -> None:
    qs = vqa_samples(tmp_path, 4)
    _, s2 = _configs(tmp_path)
    result = run_two_stage(
        None,
        s2.replace(max_steps=1),
        output_dir=tmp_path / "run",
        stage2_samples=qs,
        progress=False,
        plot=False,
    )
    assert result.stage1 is None and Path(result.adapter_dir).is_dir()


def test_stages_must_share_model_and_lora_shape(tmp_path: Path) -> None:
    s1, s2 = _configs(tmp_path)
    with pytest.raises(MedVQAError, match="lora_r"):
        run_two_stage(s1, s2.replace(lora_r=4), output_dir=tmp_path)
    with pytest.raises(MedVQAError, match="different names"):
        run_two_stage(s1, s2.replace(name="stage1"), output_dir=tmp_path)
