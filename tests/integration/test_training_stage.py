"""One stage = one Trainer run on the tiny model: files, loss history, reuse, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from medvqa._errors import MedVQAError
from medvqa.training import StageConfig, StageResult, find_resumable_checkpoint, run_stage
from tests.integration.training_helpers import (
    adapter_weights,
    max_abs_diff,
    tiny_config,
    vqa_samples,
)
from tests.lock_holder import lock_held_elsewhere

pytestmark = [pytest.mark.train, pytest.mark.slow]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[StageConfig, StageResult, list]:
    root = tmp_path_factory.mktemp("stage")
    samples = vqa_samples(root, 8)
    evals = vqa_samples(root / "val", 4, split="validation")
    cfg = tiny_config(root / "run", eval_split="validation", eval_steps=2)
    result = run_stage(cfg, train_samples=samples, eval_samples=evals, progress=False)
    return cfg, result, samples


def test_stage_writes_every_file(finished: tuple[StageConfig, StageResult, list]) -> None:
    cfg, result, _ = finished
    out = Path(cfg.output_dir)
    for name in (
        "stage_config.json",
        "result.json",
        "trainer_state.json",
        "loss_history.json",
        "loss_history.csv",
    ):
        assert (out / name).is_file(), name
    assert StageConfig.from_json((out / "stage_config.json").read_text()) == cfg
    adapter = Path(result.adapter_dir)
    assert (adapter / "adapter_model.safetensors").is_file()
    assert StageConfig.from_json((adapter / "stage_config.json").read_text()) == cfg
    for ckpt in (out / "checkpoints").glob("checkpoint-*"):
        assert (ckpt / "medvqa_checkpoint.json").is_file()
        assert StageConfig.from_json((ckpt / "stage_config.json").read_text()) == cfg
    assert not list(out.glob(".adapter*")), "temporary adapter folders must not remain"


def test_stage_result_and_history(finished: tuple[StageConfig, StageResult, list]) -> None:
    cfg, result, samples = finished
    assert result.global_step == cfg.max_steps == 4
    assert result.train_samples == len(samples) and result.eval_samples == 4
    assert result.precision == "fp32" and result.world_size == 1 and result.resumed_from is None
    losses = [r for r in result.loss_history if "loss" in r]
    assert [r["step"] for r in losses] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 for r in losses)
    assert [r["step"] for r in result.loss_history if "eval_loss" in r] == [2, 4]
    assert result.eval_loss is not None
    on_disk = json.loads((Path(cfg.output_dir) / "loss_history.json").read_text())
    assert on_disk == [dict(r) for r in result.loss_history]
    again = StageResult.from_dict(json.loads((Path(cfg.output_dir) / "result.json").read_text()))
    assert again.global_step == result.global_step and again.config == cfg


def test_adapter_actually_trained(finished: tuple[StageConfig, StageResult, list]) -> None:
    _, result, _ = finished
    weights = adapter_weights(result.adapter_dir)
    b = [v for k, v in weights.items() if "lora_B" in k]
    assert b and any(float(t.abs().max()) > 0 for t in b), "gaussian init has B = 0; training must move it"


def test_finished_stage_is_reused_not_retrained(finished: tuple[StageConfig, StageResult, list]) -> None:
    cfg, result, samples = finished
    again = run_stage(cfg, train_samples=samples, progress=False)
    assert again.reused and again.global_step == result.global_step


def test_different_config_in_same_folder_is_refused(finished: tuple[StageConfig, StageResult, list]) -> None:
    cfg, _, samples = finished
    with pytest.raises(MedVQAError, match="different config"):
        run_stage(cfg.replace(learning_rate=5e-4), train_samples=samples, progress=False)
    with pytest.raises(MedVQAError, match="already holds a run"):
        run_stage(cfg, train_samples=samples, resume=False, progress=False)


def test_unfinished_checkpoint_is_not_trusted(
    tmp_path: Path, finished: tuple[StageConfig, StageResult, list]
) -> None:
    cfg, _, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(cfg.output_dir, copy)
    cfg2 = cfg.replace(output_dir=str(copy))
    (copy / "result.json").unlink()
    assert find_resumable_checkpoint(copy, cfg2) == copy / "checkpoints" / "checkpoint-4"
    (copy / "checkpoints" / "checkpoint-4" / "medvqa_checkpoint.json").unlink()  # as if killed while saving
    assert find_resumable_checkpoint(copy, cfg2) == copy / "checkpoints" / "checkpoint-2"


def test_subset_larger_than_data_is_an_error(tmp_path: Path) -> None:
    samples = vqa_samples(tmp_path, 4)
    with pytest.raises(MedVQAError, match="subset_size=10 but only 4"):
        run_stage(tiny_config(tmp_path / "r", subset_size=10), train_samples=samples, progress=False)


def test_paper_and_answer_masking_train_differently(tmp_path: Path) -> None:
    samples = vqa_samples(tmp_path, 4)
    common = {"max_steps": 2, "lora_dropout": 0.0}
    a = run_stage(tiny_config(tmp_path / "a", mask="answer", **common), train_samples=samples, progress=False)
    p = run_stage(tiny_config(tmp_path / "p", mask="paper", **common), train_samples=samples, progress=False)
    assert a.train_loss != p.train_loss
    assert max_abs_diff(adapter_weights(a.adapter_dir), adapter_weights(p.adapter_dir)) > 0


def test_qlora_with_a_paged_8bit_optimizer(tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    samples = vqa_samples(tmp_path, 4)
    cfg = tiny_config(tmp_path / "q", quantization="nf4", optimizer="paged_adamw_8bit", max_steps=2)
    result = run_stage(cfg, train_samples=samples, progress=False)
    assert result.global_step == 2 and result.train_loss is not None
    assert any("lora_B" in k for k in adapter_weights(result.adapter_dir))


def test_recommended_preset_holds_out_images_for_validation(tmp_path: Path) -> None:
    from medvqa.training import load_stage_samples, recommended

    cfg = recommended(
        model="tiny",
        quantization="none",
        max_steps=2,
        warmup_steps=0,
        batch_size=4,
        grad_accum=1,
        eval_steps=2,
        logging_steps=1,
        output_dir=str(tmp_path / "rec"),
    )
    result = run_stage(cfg, progress=False)  # the bundled VQA-RAD sample (no validation split)
    everything = load_stage_samples(cfg)
    assert 0 < result.eval_samples < len(everything)
    assert result.train_samples + result.eval_samples == len(everything)
    assert result.eval_loss is not None and result.precision == "fp32"


def test_lora_settings_of_the_config_reach_the_adapter(tmp_path: Path) -> None:
    from medvqa.models import tiny_idefics2
    from medvqa.training._runner import _prepare_adapter

    for init in ("gaussian", "kaiming"):
        model, _ = tiny_idefics2(seed=0)
        cfg = tiny_config(tmp_path / init, lora_init=init, lora_r=4, lora_alpha=16, lora_dropout=0.2)
        peft_cfg = _prepare_adapter(model, cfg, None).peft_config["default"]
        assert peft_cfg.init_lora_weights == (True if init == "kaiming" else "gaussian")
        assert (peft_cfg.r, peft_cfg.lora_alpha, peft_cfg.lora_dropout) == (4, 16, 0.2)


def _truncate(path: str | None) -> None:
    assert path is not None
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 3])  # a download cut short


def test_an_unreadable_training_image_names_the_sample_and_the_file(tmp_path: Path) -> None:
    from medvqa._errors import ImageLoadError

    samples = vqa_samples(tmp_path / "data", 4)
    assert samples[1].image is not None
    _truncate(samples[1].image.path)
    with pytest.raises(ImageLoadError) as info:
        run_stage(tiny_config(tmp_path / "run", max_steps=2), train_samples=samples, progress=False)
    msg = str(info.value)
    assert "sample 'toy:train:1'" in msg and "img1.png" in msg and "on_bad_image='skip'" in msg


def test_skipping_unreadable_training_images_records_them(tmp_path: Path) -> None:
    samples = vqa_samples(tmp_path / "data", 6)
    assert samples[2].image is not None
    _truncate(samples[2].image.path)
    cfg = tiny_config(tmp_path / "run", max_steps=2)
    with pytest.warns(
        UserWarning, match=r"left out 1 samples whose image cannot be decoded \('toy:train:2'\)"
    ):
        result = run_stage(cfg, train_samples=samples, progress=False, on_bad_image="skip")
    assert result.train_samples == 5 and result.global_step == 2
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["skipped_bad_images"] == 1
    assert saved["bad_images"][0]["id"] == "toy:train:2" and "img2.png" in saved["bad_images"][0]["error"]
    assert StageResult.from_dict(saved).bad_images[0]["id"] == "toy:train:2"


def test_a_folder_being_trained_by_another_process_is_refused(tmp_path: Path) -> None:

    out = tmp_path / "run"
    with lock_held_elsewhere(out, folder=True) as proc:
        with pytest.raises(
            MedVQAError, match=rf"this training folder is being written by another run \(pid {proc.pid}"
        ):
            run_stage(tiny_config(out), train_samples=vqa_samples(tmp_path / "data", 4), progress=False)
        assert not (out / "stage_config.json").exists()
