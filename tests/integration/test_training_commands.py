"""The train, two-stage, sweep and predict-and-score commands on the tiny model and the bundled sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

from medvqa.cli import main

pytestmark = [pytest.mark.train, pytest.mark.slow]

TINY = ["--set", "model=tiny", "--set", "quantization=none", "--no-progress"]


def test_train_from_preset_then_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = [
        "train",
        "--preset",
        "paper_stage2",
        *TINY,
        "--set",
        "max_steps=2",
        "--set",
        "warmup_steps=0",
        "--output",
        str(out),
    ]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == str(out / "adapter")
    result = json.loads((out / "result.json").read_text())
    assert result["global_step"] == 2 and result["config"]["learning_rate"] == 1e-4
    assert main(args) == 0
    assert "reused" in capsys.readouterr().err


def test_train_from_yaml_config(tmp_path: Path) -> None:
    from medvqa.training import paper_stage2

    cfg = paper_stage2(
        model="tiny", quantization="none", max_steps=1, warmup_steps=0, output_dir=str(tmp_path / "r")
    )
    path = cfg.save(tmp_path / "stage.yaml", header="medvqa train --config stage.yaml")
    assert main(["train", "--config", str(path), "--no-progress"]) == 0
    assert (tmp_path / "r" / "adapter" / "adapter_model.safetensors").is_file()


def test_print_config_and_bad_override(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--preset", "paper_stage1", "--set", "epochs=1", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 1.0" in out and "dataset: roco" in out
    assert main(["train", "--preset", "paper_stage1", "--set", "learning_rat=1", "--print-config"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("medvqa: error:") and len(err.strip().splitlines()) == 1
    assert main(["train", "--print-config"]) == 1
    assert "--config or --preset is required" in capsys.readouterr().err


def test_two_stage_then_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "two"
    code = main(
        [
            "two-stage",
            "--model",
            "tiny",
            "--set",
            "quantization=none",
            "--set",
            "warmup_steps=0",
            "--stage1-size",
            "8",
            "--stage1-set",
            "max_steps=1",
            "--stage2-set",
            "max_steps=1",
            "--output",
            str(out),
            "--evaluate",
            "--eval-limit",
            "3",
            "--no-progress",
        ]
    )
    assert code == 0
    summary = json.loads((out / "two_stage.json").read_text())
    assert (
        summary["stage1"]["config"]["dataset"] == "roco"
        and summary["stage2"]["config"]["dataset"] == "vqa_rad"
    )
    from medvqa.metrics import read_scores

    scores = read_scores(out / "eval.scores.json")
    assert {r.n for r in scores.runs} == {3} and scores.profiles() == ["paper", "strict"]
    assert (out / "loss_curves.png").is_file()
    capsys.readouterr()
    assert (
        main(
            [
                "predict-and-score",
                "--model",
                "tiny",
                "--quantization",
                "none",
                "--adapter",
                summary["adapter_dir"],
                "--dataset",
                "vqa_rad",
                "--limit",
                "4",
                "--transform",
                "swap",
                "--profile",
                "strict",
                "--n-boot",
                "0",
                "--name",
                "swapped",
                "--output",
                str(tmp_path / "eval"),
                "--no-progress",
            ]
        )
        == 0
    )
    rows = [json.loads(x) for x in (tmp_path / "eval" / "swapped.predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all("swap_images" in r["metadata"]["transforms"] for r in rows)


def test_sweep_command(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    code = main(
        [
            "sweep",
            "--sizes",
            "0,4",
            "--model",
            "tiny",
            "--set",
            "quantization=none",
            "--set",
            "max_steps=1",
            "--set",
            "warmup_steps=0",
            "--eval-limit",
            "3",
            "--n-boot",
            "0",
            "--output",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    data = json.loads((out / "sweep.json").read_text())
    assert [r["stage1_size"] for r in data["rows"]] == [0, 4]
    assert data["rows"][0]["stage1_steps"] is None and data["rows"][1]["stage1_steps"] == 1
    assert (out / "sweep.png").is_file() and (out / "sweep.csv").is_file()
    plot = json.loads((out / "sweep_plot.json").read_text())
    assert plot["sizes"] == [0, 4] and "paper/containment" in [s["metric"] for s in plot["series"]]
