"""Split sizes: another dataset's folder in a shared layout is noted (or refused), not silently relabelled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvqa._errors import DataFormatError
from medvqa.cli import main
from medvqa.data import DATASETS, load, sample_root
from medvqa.data._sizes import SUBSET_FILE, size_note
from tests.unit.test_data_layouts import make_vqa_rad, write_images

VQA_RAD_SIZES = "(official 1,797/451, MEVF split 3,064/451, Hugging Face 1,793/451)"


def make_qa_imagefolder(root: Path, rows: int, split: str = "train") -> Path:
    """An ``imagefolder`` with ``rows`` yes/no questions on two images (the PathVQA copy's shape)."""
    folder = root / split
    write_images(folder, ["a.jpg", "b.jpg"])
    lines = [
        json.dumps(
            {"file_name": "ab"[i % 2] + ".jpg", "question": f"Is finding {i} present?", "answer": "yes"}
        )
        for i in range(rows)
    ]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_another_datasets_folder_is_noted_and_refused_when_strict(tmp_path: Path) -> None:
    root = make_qa_imagefolder(tmp_path / "pathvqa" / "imagefolder_sample", 40)
    ds = load("vqa_rad", root, split="train")
    assert len(ds) == 40 and ds.name == "vqa_rad"
    [note] = ds.notes
    assert note.startswith(f"40 rows: not a known VQA-RAD train split size {VQA_RAD_SIZES}")
    assert "the path names PathVQA" in note
    with pytest.raises(
        DataFormatError, match=r"metadata.jsonl: 40 rows: not a known VQA-RAD train split size"
    ):
        load("vqa_rad", root, split="train", strict_size=True)


@pytest.mark.parametrize(("split", "rows"), [("test", 451), ("train", 1793)])
def test_a_known_split_size_passes_even_when_strict(tmp_path: Path, split: str, rows: int) -> None:
    root = make_qa_imagefolder(tmp_path / "vqa-rad", rows, split=split)
    ds = load("vqa_rad", root, split=split, strict_size=True)
    assert len(ds) == rows and ds.notes == ()


def test_rows_skipped_on_request_still_count_as_rows_of_the_split(tmp_path: Path) -> None:
    root = make_qa_imagefolder(tmp_path / "d", 451, split="test")
    (root / "test" / "b.jpg").unlink()
    ds = load("vqa_rad", root, split="test", on_missing_image="skip", strict_size=True)
    assert ds.skipped == 225 and len(ds) + ds.skipped == 451 and ds.notes == ()


def test_a_declared_subset_is_noted_as_such_and_passes_strict(tmp_path: Path) -> None:
    root = make_vqa_rad(tmp_path / "rad")
    with pytest.raises(DataFormatError, match="not a known VQA-RAD train split size"):
        load("vqa_rad", root, strict_size=True)
    (root / SUBSET_FILE).write_text(json.dumps({"subset_of": "my slice of the VQA-RAD release"}))
    ds = load("vqa_rad", root, strict_size=True)
    assert ds.notes == (
        "2 rows: a declared subset (medvqa-subset.json: my slice of the VQA-RAD release); split size not checked",
    )
    (root / SUBSET_FILE).write_text(json.dumps({"of": "x"}))
    with pytest.raises(DataFormatError, match=r"medvqa-subset.json, field 'subset_of'"):
        load("vqa_rad", root)


@pytest.mark.parametrize(
    ("name", "folder"),
    [("vqa_rad", "vqa_rad"), ("slake", "slake"), ("roco", "captions"), ("med_halt", "med_halt")],
)
def test_every_bundled_sample_declares_itself_a_subset(name: str, folder: str) -> None:
    from medvqa.data import SplitNotFoundError

    for split in DATASETS[name].splits:
        try:
            ds = load(name, sample_root() / folder, split=split, strict_size=True)
        except SplitNotFoundError:  # a split the sample does not hold
            continue
        assert any("a declared subset" in n for n in ds.notes), (name, split)
        assert not any("not a known" in n for n in ds.notes)


def _table(name: str):  # type: ignore[no-untyped-def]
    return DATASETS[name].size_table()


def test_sizes_follow_the_options_that_select_rows() -> None:
    others = [s.size_table() for s in DATASETS.values()]
    assert size_note(_table("slake"), split="train", rows=4919, source="x", options={}, others=others) == (
        None,
        False,
    )
    note, bad = size_note(
        _table("slake"), split="train", rows=4919, source="x", options={"language": "both"}, others=others
    )
    assert bad and note == "4,919 rows: not a known SLAKE 1.0 train split size (official 9,835/2,099/2,094)"
    # ROCO: no size is recorded for train, so a train load is not checked
    assert size_note(_table("roco"), split="train", rows=5, source="x", options={}, others=others) == (
        None,
        False,
    )


def test_a_size_of_another_dataset_is_named() -> None:
    others = [s.size_table() for s in DATASETS.values()]
    note, bad = size_note(_table("vqa_rad"), split="train", rows=19654, source="d", options={}, others=others)
    assert bad and note is not None
    assert note.endswith("it is the size of the PathVQA Hugging Face train split")


def test_cli_summary_prints_the_note_and_strict_size_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = make_qa_imagefolder(tmp_path / "path-vqa", 30)
    assert main(["data", "summary", "vqa_rad", str(root), "--no-audit"]) == 0
    out = capsys.readouterr().out
    assert f"30 rows: not a known VQA-RAD train split size {VQA_RAD_SIZES}" in out
    assert main(["data", "summary", "vqa_rad", str(root), "--strict-size"]) == 1
    assert "not a known VQA-RAD train split size" in capsys.readouterr().err
    # the bundled sample passes --strict-size
    assert main(["data", "summary", "vqa_rad", "--strict-size", "--no-audit"]) == 0
    assert "a declared subset" in capsys.readouterr().out
