"""The family choice on the command line and in the configs: ``medvqa models``, ``--family``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvqa.cli import main
from medvqa.models import FAMILIES


def test_models_lists_every_family_with_presets_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in FAMILIES) and "all_linear" in text
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["family"] for r in rows] == list(FAMILIES)
    assert all(set(r["lora_presets"]) == {"paper", "llm_only", "connector_only", "all_linear"} for r in rows)
    assert main(["models", "--family", "qwen2_5_vl"]) == 0
    one = capsys.readouterr().out
    assert "mm_token_type_ids" in one and "<|im_end|>" in one


def test_unknown_family_is_refused_with_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--model", "tiny", "--family", "blip2", "--dataset", "vqa_rad", "--output", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "blip2" in err and "qwen2_5_vl" in err


def test_stage_and_demo_configs_carry_the_family_without_changing_old_runs() -> None:
    from medvqa.pipeline import DemoConfig
    from medvqa.training import StageConfig, preset

    old = preset("paper_stage2")
    assert old.fingerprint() == "28e08076678a7ba6"  # as recorded by runs made before families existed
    assert StageConfig(family="gemma3").fingerprint() != old.fingerprint()
    with pytest.raises(ValueError, match=r"StageConfig\.family must be one of gemma3"):
        StageConfig(family="blip2")
    assert (
        "family" not in DemoConfig().to_dict() and DemoConfig(family="llava").to_dict()["family"] == "llava"
    )


@pytest.mark.train
@pytest.mark.parametrize("family", ["llava", "gemma3"])
def test_predict_runs_the_tiny_model_of_a_family(
    family: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("transformers")
    out = tmp_path / "preds.jsonl"
    argv = ["predict", "--model", "tiny", "--family", family, "--dataset", "vqa_rad", "--split", "test"]
    argv += [
        "--limit",
        "3",
        "--batch-size",
        "2",
        "--max-new-tokens",
        "4",
        "--no-progress",
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    assert len(out.read_text().splitlines()) == 3
    assert json.loads((tmp_path / "preds.run.json").read_text())["family"] == family
    # the family is part of the run: resuming the file with another one is refused
    capsys.readouterr()
    assert main([*argv[:4], "idefics2", *argv[5:]]) != 0
    assert f"family was {family!r}, now 'idefics2'" in capsys.readouterr().err
    # a DataLoader worker and length-sorted batches prepare the family's batches: same file
    workers = tmp_path / "workers.jsonl"
    assert main([*argv[:-1], str(workers), "--num-workers", "1", "--sort-by-length"]) == 0
    assert workers.read_bytes() == out.read_bytes()


@pytest.mark.train
def test_training_loads_the_tiny_model_of_the_configured_family() -> None:
    pytest.importorskip("transformers")
    from medvqa.training import StageConfig
    from medvqa.training._runner import load_base_model

    model, processor = load_base_model(StageConfig(model="tiny", family="qwen2_vl", quantization="none"))
    assert model.config.model_type == "qwen2_vl" and processor.medvqa_family == "qwen2_vl"


@pytest.mark.train
@pytest.mark.slow
@pytest.mark.parametrize("family", ["idefics3", "qwen2_5_vl", "gemma3", "llava_next"])
def test_a_training_stage_runs_and_its_adapter_evaluates(family: str, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from medvqa.training import run_stage
    from medvqa.training._evaluate import load_trained_model
    from tests.integration.training_helpers import tiny_config, vqa_samples

    samples = vqa_samples(tmp_path, 4)
    cfg = tiny_config(tmp_path / "run", family=family, mask="answer")
    result = run_stage(cfg, train_samples=samples, progress=False)
    assert result.global_step == cfg.max_steps
    model, _ = load_trained_model("tiny", result.adapter_dir, quantization="none", family=family)
    assert model.config.model_type in FAMILIES[family].model_types and not model.training


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(f for f in FAMILIES if f != "idefics2"))  # idefics2: test_demo.py
def test_the_demo_runs_end_to_end_for_every_family(family: str, tmp_path: Path) -> None:
    """Two-stage training, every table row (swap, expert prompt, nonsense, OOD) and scoring, per family."""
    out = tmp_path / "demo"
    argv = ["demo", "--family", family, "--sizes", "none", "--stage1-size", "8", "--eval-limit", "3"]
    assert main([*argv, "--n-boot", "0", "--no-progress", "--output", str(out)]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["config"]["family"] == family
    rows = {"base", "two-stage", "two-stage, OOD", "two-stage, swapped images", "two-stage, expert prompt"}
    assert rows <= set(report["rows"])
    assert all(report["rows"][name]["n"] == 3 for name in rows)
    assert report["visual_reliance"]["transform"].startswith("swap_images")
    assert (out / "report.md").is_file()
