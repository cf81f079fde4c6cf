"""Stage configs and presets: light (no torch), validated, JSON/YAML round trip, paper values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medvqa._errors import DataFormatError
from medvqa.training import (
    PRESETS,
    StageConfig,
    paper_single_stage,
    paper_single_stage_as_run,
    paper_stage1,
    paper_stage2,
    preset,
    recommended,
)


def test_config_module_imports_without_torch() -> None:
    code = (
        "import sys; import medvqa.training as t; t.paper_stage1().to_json(); "
        "bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_paper_stage1_matches_paper() -> None:
    c = paper_stage1()
    assert (c.dataset, c.split, c.subset_size) == ("roco", "train", 55_000)
    assert (c.epochs, c.learning_rate, c.batch_size, c.grad_accum) == (3.0, 1e-5, 2, 8)
    assert (c.warmup_steps, c.weight_decay, c.schedule, c.optimizer) == (50, 0.01, "linear", "adamw_torch")
    assert (c.max_grad_norm, c.precision, c.seed, c.mask) == (1.0, "fp16", 42, "paper")
    assert (c.lora_r, c.lora_alpha, c.lora_dropout, c.quantization) == (8, 8, 0.1, "nf4")
    assert (c.lora_init, c.double_quant) == ("gaussian", False)  # gaussian A, B = 0; no double quantization
    assert c.model == "HuggingFaceM4/idefics2-8b"
    assert c.prompt == "caption"
    assert c.eval_split is None  # the paper's validation split was never evaluated


def test_paper_stage2_matches_paper() -> None:
    c = paper_stage2()
    assert (c.dataset, c.split, c.subset_size) == ("vqa_rad", "train", None)
    assert (c.epochs, c.learning_rate, c.effective_batch_size) == (2.0, 1e-4, 16)
    assert (c.warmup_steps, c.weight_decay, c.precision, c.seed) == (50, 0.01, "fp16", 42)
    assert c.prompt == "paper" and c.instruction is None
    shared = ("batch_size", "grad_accum", "warmup_steps", "weight_decay", "schedule", "optimizer")
    shared += ("max_grad_norm", "precision", "seed", "mask", "quantization", "double_quant")
    shared += ("lora_preset", "lora_r", "lora_alpha", "lora_dropout", "lora_init", "model")
    assert {k: getattr(c, k) for k in shared} == {k: getattr(paper_stage1(), k) for k in shared}


def test_single_stage_variants() -> None:
    fair = paper_single_stage()
    assert fair.replace(name="stage2", output_dir=paper_stage2().output_dir) == paper_stage2()
    as_run = paper_single_stage_as_run()
    assert as_run.epochs == 3.0
    assert as_run.instruction is not None and as_run.instruction != "Answer briefly."
    # an assumption (the paper does not say which instruction): the stage-1 caption one
    from medvqa.chat import CAPTION_INSTRUCTION

    assert as_run.instruction == CAPTION_INSTRUCTION
    assert paper_single_stage_as_run(instruction="Answer.").instruction == "Answer."
    assert as_run.fingerprint() != fair.fingerprint()


def test_recommended_differs_where_documented() -> None:
    rec, paper = recommended(), paper_stage2()
    diff = {k for k, v in rec.to_dict().items() if paper.to_dict()[k] != v}
    assert diff == {"mask", "precision", "holdout_fraction", "eval_size"}
    assert rec.mask == "answer" and rec.precision == "auto" and rec.holdout_fraction == 0.1
    assert rec.eval_split is None  # VQA-RAD has no validation split, and the test split is never used
    rec1 = recommended("stage1")
    assert rec1.dataset == "roco" and rec1.eval_split == "validation" and rec1.holdout_fraction == 0
    with pytest.raises(ValueError, match="must be one of"):
        recommended("stage3")  # type: ignore[arg-type]


def test_every_preset_builds_and_round_trips() -> None:
    pytest.importorskip("yaml")
    for name in PRESETS:
        cfg = preset(name)
        assert StageConfig.from_json(cfg.to_json()) == cfg
        assert StageConfig.from_yaml(cfg.to_yaml(header="medvqa train --config x.yaml")) == cfg
        assert StageConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_save_and_load_files(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    cfg = paper_stage2(data_dir=str(tmp_path / "vqa_rad"), data_options={"layout": "official"})
    for suffix in (".json", ".yaml", ".yml"):
        path = cfg.save(tmp_path / f"c{suffix}", header="a header")
        assert StageConfig.load(path) == cfg
    assert (tmp_path / "c.yaml").read_text().startswith("# a header\n")
    assert StageConfig.load(tmp_path / "c.json", epochs=1).epochs == 1.0
    with pytest.raises(ValueError, match=r"\.json, \.yaml or \.yml"):
        cfg.save(tmp_path / "c.txt")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"batch_size": 0}, "batch_size must be finite and > 0"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"mask": "prompt"}, "mask must be one of 'answer', 'paper'"),
        ({"optimizer": "adam"}, "optimizer must be one of"),
        ({"dataset": "mimic"}, "dataset must be one of"),
        ({"precision": "fp8"}, "precision"),
        ({"lora_dropout": 1.0}, r"lora_dropout must be in \[0, 1\)"),
        ({"name": "a/b"}, "without slashes"),
        ({"eval_size": 10}, "no validation"),
        ({"eval_steps": 10}, "no validation"),
        ({"holdout_fraction": 0.5}, "holdout_fraction"),
        ({"holdout_fraction": 0.1, "eval_split": "validation"}, "exclusive"),
        ({"max_steps": 0}, "max_steps"),
        ({"subset_size": -1}, "subset_size"),
        ({"instruction": "  "}, "instruction"),
        ({"lora_init": "zeros"}, "lora_init must be one of 'gaussian', 'kaiming'"),
        ({"double_quant": "yes"}, "double_quant must be true or false"),
    ],
)
def test_invalid_values_are_refused(changes: dict[str, object], match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        paper_stage2().replace(**changes)


def test_bool_is_not_an_integer() -> None:
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        paper_stage2(batch_size=True)


def test_max_steps_lets_epochs_be_zero() -> None:
    assert paper_stage2(max_steps=5, epochs=0).max_steps == 5


def test_from_dict_names_the_bad_field_and_file() -> None:
    with pytest.raises(DataFormatError) as info:
        StageConfig.from_dict({"learning_rat": 1e-4}, file="cfg.yaml")
    assert info.value.field == "learning_rat" and "cfg.yaml" in str(info.value)
    assert "learning_rate" in str(info.value)  # lists the valid keys
    with pytest.raises(DataFormatError) as info2:
        StageConfig.from_dict({"grad_accum": 0}, file="cfg.yaml")
    assert info2.value.field == "grad_accum"


def test_load_missing_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="not found"):
        StageConfig.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(DataFormatError, match="malformed JSON"):
        StageConfig.load(bad)


def test_fingerprint_ignores_bookkeeping_only() -> None:
    a = paper_stage2()
    assert a.fingerprint() == a.replace(output_dir="x", save_steps=7, logging_steps=3).fingerprint()
    assert a.fingerprint() != a.replace(learning_rate=2e-4).fingerprint()
    assert a.fingerprint() != a.replace(seed=1).fingerprint()


def test_unknown_preset_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="paper_stage1"):
        preset("paper_stage3")


def test_config_is_frozen() -> None:
    cfg = paper_stage2()
    with pytest.raises(AttributeError):
        cfg.epochs = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.data_options["x"] = 1  # type: ignore[index]


def test_yaml_numbers_without_a_dot_are_numbers() -> None:
    pytest.importorskip("yaml")
    cfg = StageConfig.from_yaml("learning_rate: 1e-4\nweight_decay: 1e-2\nepochs: 2\n")
    assert (cfg.learning_rate, cfg.weight_decay, cfg.epochs) == (1e-4, 1e-2, 2.0)
    with pytest.raises(DataFormatError, match="learning_rate"):
        StageConfig.from_yaml("learning_rate: fast\n")


def test_cli_overrides_are_typed() -> None:
    pytest.importorskip("yaml")
    from medvqa._commands._stage_options import parse_set

    got = parse_set(
        ["learning_rate=1e-4", "max_steps=5", "model=tiny", "eval_split=null", "gradient_checkpointing=true"]
    )
    assert got == {
        "learning_rate": 1e-4,
        "max_steps": 5,
        "model": "tiny",
        "eval_split": None,
        "gradient_checkpointing": True,
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_set(["learning_rate"])


def test_cli_reads_the_stage_sections_of_a_recipe(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    import argparse

    from medvqa._commands._stage_options import add_stage_options, resolve_stage

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "# python examples/x.py --config recipe.yaml\n"
        + "stage1:\n"
        + "".join(f"  {line}\n" for line in paper_stage1().to_yaml().splitlines())
        + "stage2:\n"
        + "".join(f"  {line}\n" for line in paper_stage2(epochs=1).to_yaml().splitlines())
        + "evaluation:\n  name: x\n"
    )
    parser = argparse.ArgumentParser()
    for prefix in ("", "stage1-", "stage2-"):
        add_stage_options(parser, prefix)
    args = parser.parse_args(
        ["--stage1-config", str(recipe), "--stage2-config", str(recipe), "--stage2-set", "seed=7"]
    )
    assert resolve_stage(args, "stage1-") == paper_stage1()
    assert resolve_stage(args, "stage2-") == paper_stage2(epochs=1, seed=7)
    with pytest.raises(DataFormatError, match="sections stage1 and stage2"):
        resolve_stage(parser.parse_args(["--config", str(recipe)]))
    only2 = tmp_path / "only2.yaml"
    only2.write_text("stage2:\n" + "".join(f"  {line}\n" for line in paper_stage2().to_yaml().splitlines()))
    assert resolve_stage(parser.parse_args(["--config", str(only2)])) == paper_stage2()
    with pytest.raises(DataFormatError, match="no stage1 section"):
        resolve_stage(parser.parse_args(["--stage1-config", str(only2)]), "stage1-")
    plain = paper_stage2(epochs=3).save(tmp_path / "plain.yaml")
    assert resolve_stage(parser.parse_args(["--config", str(plain)])) == paper_stage2(epochs=3)
