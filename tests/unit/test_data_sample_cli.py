"""The bundled sample, the ``medvqa data summary`` command and the public surface of ``medvqa.data``."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

import medvqa.data
from medvqa.cli import main
from medvqa.data import DATASETS, audit, load, sample_root, summarize


def test_bundled_sample_is_small_licensed_and_loads() -> None:
    root = sample_root()
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < 3_000_000
    licences = (root / "LICENSES.md").read_text()
    assert "CC0" in licences and "CC BY 4.0" in licences and "Apache" in licences
    assert "cannot be redistributed" in licences
    train, test = load("vqa_rad", root / "vqa_rad"), load("vqa_rad", root / "vqa_rad", split="test")
    assert len(train) >= 50 and len(test) >= 25
    assert {s.answer_type for s in train} == {"closed", "open"} == {s.answer_type for s in test}
    slake = [load("slake", root / "slake", split=s) for s in ("train", "validation", "test")]
    assert all(len(d) > 0 for d in slake) and sum(map(len, slake)) >= 25
    assert {s.metadata["language"] for d in slake for s in d} == {"en"}
    caps = [load("roco", root / "captions", split=s) for s in ("train", "validation")]
    assert sum(map(len, caps)) == 24 and all(
        s.task == "caption" and s.image is not None for d in caps for s in d
    )
    assert len(load("med_halt", root / "med_halt")) == 12
    # caption images are not images of the VQA-RAD sample
    vqa_hashes = {s.image.content_hash() for s in [*train, *test] if s.image is not None}
    assert not vqa_hashes & {s.image.content_hash() for d in caps for s in d if s.image is not None}


def test_summary_counts_and_audit_on_the_sample() -> None:
    root = sample_root() / "vqa_rad"
    train, test = load("vqa_rad", root), load("vqa_rad", root, split="test")
    s = summarize(train)
    assert (s.rows, s.closed + s.open, s.skipped) == (len(train), len(train), 0)
    assert sum(s.breakdown["organ"].values()) == len(train)
    a = audit(train, test)
    assert a.shared_images == a.test_images > 0  # the sample keeps VQA-RAD's shared images
    assert a.test_rows_on_shared_images == len(test)
    assert set(a.to_dict()) >= {"repeated_questions", "shared_images", "duplicate_pairs"}


def test_caption_audit_compares_captions_not_the_fixed_instruction() -> None:
    root = sample_root() / "captions"
    train, val = load("roco", root), load("roco", root, split="validation")
    a = audit(train, val)
    assert a.compared == "caption"
    # every caption sample asks the same instruction; comparing questions would flag every row
    assert a.test_rows_repeating_a_question == 0 < len(val)
    dup = [val[0].replace(id="copy")]
    b = audit([*train, *dup], val)
    assert b.repeated_questions == 1 and b.test_rows_repeating_a_question == 1
    assert (
        audit(
            load("vqa_rad", sample_root() / "vqa_rad"),
            load("vqa_rad", sample_root() / "vqa_rad", split="test"),
        ).compared
        == "question"
    )


def test_cli_summary_table_on_bundled_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "summary", "vqa_rad"]) == 0
    out = capsys.readouterr().out
    assert "bundled with medvqa" in out and "by question_type:" in out and "by organ:" in out
    assert (
        "images shared by content" in out and "VQA-RAD asks different questions about the same images" in out
    )
    assert "annotation" in out


def test_cli_summary_json_splits_and_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "report.json"
    assert (
        main(["data", "summary", "slake", "--split", "train", "--format", "json", "--output", str(out_file)])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert [s["split"] for s in report["splits"]] == ["train"] and report["bundled_sample"] is True
    assert report["splits"][0]["breakdown"]["content_type"] and report["audits"] == []
    assert json.loads(out_file.read_text()) == report
    assert main(["data", "summary", "roco", "--format", "json", "--no-hash"]) == 0
    roco = json.loads(capsys.readouterr().out)
    assert roco["absent_splits"] == ["test"] and roco["audits"][0]["hashed"] is False


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["data", "summary", "path_vqa"]) == 1
    assert "no bundled sample for 'path_vqa'; give PATH" in capsys.readouterr().err
    assert main(["data", "summary", "vqa_rad", "--option", "colour=red"]) == 1
    assert "unknown option(s) 'colour'" in capsys.readouterr().err
    assert main(["data", "summary", "vqa_rad", str(tmp_path / "missing")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_cli_help_documents_options_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["data", "summary", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--split",
        "--format",
        "--layout",
        "--language",
        "--on-missing-image",
        "--on-empty-answer",
        "--image-dir",
        "--option",
        "--no-audit",
        "--no-hash",
        "--output",
    ):
        assert flag in out
    assert "examples:" in out and "medvqa data summary vqa_rad" in out


def test_public_surface_is_curated_and_sorted() -> None:
    names = medvqa.data.__all__
    assert len(set(names)) == len(names)
    assert {n for n in dir(medvqa.data) if not n.startswith("_")} - set(names) <= {"annotations"}
    for n in names:
        obj = getattr(medvqa.data, n)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert inspect.getdoc(obj), n


def test_registry_options_match_loader_signatures() -> None:
    for spec in DATASETS.values():
        params = inspect.signature(spec.loader).parameters
        assert set(spec.options) == {p for p in params if p not in ("source", "split")}, spec.name
        assert params["split"].default == "train"


def test_data_layer_imports_no_torch_or_datasets() -> None:
    code = (
        "import sys, medvqa.data, medvqa._commands.data\n"
        "medvqa.data.load('vqa_rad', medvqa.data.sample_root() / 'vqa_rad')\n"
        "bad = [m for m in ('torch', 'transformers', 'datasets', 'pyarrow') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_reports_skipped_rows(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tests.unit.test_data_layouts import make_vqa_rad

    root = make_vqa_rad(tmp_path / "rad")
    (root / "VQA_RAD Image Folder" / "b.jpg").unlink()
    assert main(["data", "summary", "vqa_rad", str(root)]) == 1
    assert "image file not found" in capsys.readouterr().err
    assert main(["data", "summary", "vqa_rad", str(root), "--on-missing-image", "skip"]) == 0
    out = capsys.readouterr().out
    assert "train: skipped 1 row on request: image file not found" in out
    assert "test: skipped 1 row on request: image file not found" in out
