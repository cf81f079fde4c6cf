"""Acceptance counts on the real releases in ../shared/data (skipped when absent)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from medvqa._errors import DataFormatError, RowRef
from medvqa.data import audit, load

pytestmark = pytest.mark.data


def test_vqa_rad_official_counts_and_ids(shared_data: Path) -> None:
    root = shared_data / "vqa_rad"
    train, test = load("vqa_rad", root), load("vqa_rad", root, split="test")
    assert (len(train), len(test)) == (1797, 451)
    assert Counter(s.metadata["phrase_type"] for s in test) == {"test_freeform": 308, "test_para": 143}
    assert train[0].id == "vqa_rad:0" and {s.answer_type_source for s in train} == {"annotation"}
    assert all(isinstance(s.answer, str) and s.answer for s in [*train, *test])
    assert len({s.id for s in [*train, *test]}) == 2248


def test_vqa_rad_mevf_split_joins_every_row(shared_data: Path) -> None:
    root = shared_data / "vqa_rad"
    train = load("vqa_rad", root, split="train", layout="mevf")
    test = load("vqa_rad", root, split="test", layout="mevf")
    assert (len(train), len(test)) == (3064, 451)
    assert all(s.metadata["joined"] for s in [*train, *test])
    official = load("vqa_rad", root, split="test")
    assert {s.id for s in test} == {s.id for s in official}
    assert any("frames of official test questions" in n for n in train.notes)


def test_vqa_rad_audit_reports_shared_images(shared_data: Path) -> None:
    root = shared_data / "vqa_rad"
    report = audit(load("vqa_rad", root), load("vqa_rad", root, split="test"))
    assert report.shared_images > 150 and report.unhashed_images == 0
    assert report.test_rows_on_shared_images > 400


def test_slake_counts_per_language(shared_data: Path) -> None:
    root = shared_data / "slake"
    counts = {
        s: load("slake", root, split=s, on_empty_answer="skip") for s in ("train", "validation", "test")
    }
    # 4,919 English training rows in the release; one of them has an empty answer (qid 1622)
    assert [len(d) + d.skipped for d in counts.values()] == [4919, 1053, 1061]
    assert counts["train"].skipped == 1 and counts["train"].skipped_rows[0].row == RowRef.record(1622)
    both = load("slake", root, split="validation", language="both")
    assert len(both) == 2099
    assert {s.metadata["modality"] for s in counts["test"]} == {"CT", "MRI", "X-Ray"}
    with pytest.raises(ValueError, match=r"train\.json, record 1622, field 'answer': empty answer"):
        load("slake", root)


def test_path_vqa_official_counts(shared_data: Path) -> None:
    root = shared_data / "pathvqa"
    sizes = [len(load("path_vqa", root, split=s)) for s in ("train", "validation", "test")]
    assert sizes == [19755, 6279, 6761] and sum(sizes) == 32795


def test_path_vqa_imagefolder_sample_decodes_cmyk_and_l_as_rgb(shared_data: Path) -> None:
    from PIL import Image

    ds = load("path_vqa", shared_data / "pathvqa" / "imagefolder_sample", split="train")
    assert len(ds) == 3998 and len({s.image.path for s in ds if s.image}) == 400
    # a sample of the Hugging Face train split, not the whole split: its size is noted
    assert ds.notes == (
        "3,998 rows: not a known PathVQA train split size "
        "(official 19,755/6,279/6,761, Hugging Face 19,654/6,259/6,719)",
    )
    modes: dict[str, str] = {}
    for s in ds:
        assert s.image is not None and s.image.path is not None
        if s.image.path not in modes:
            with Image.open(s.image.path) as im:
                modes[s.image.path] = im.mode
    odd = [p for p, m in modes.items() if m in ("CMYK", "L")][:6]
    assert odd, "the sample is documented to hold CMYK and L images"
    by_path = {s.image.path: s for s in ds if s.image}
    for p in odd:
        assert by_path[p].image is not None and by_path[p].image.open().mode == "RGB"


def test_roco_and_med_halt_counts(shared_data: Path) -> None:
    root = shared_data / "roco"
    assert len(load("roco", root, split="test")) == 8179
    assert len(load("roco", root, split="validation")) == 8180
    halt = load("med_halt", shared_data / "medhalt")
    assert len(halt) == 1858
    assert Counter(s.metadata["abstain_rule"] for s in halt)["exact"] > 1800


def test_full_releases_match_a_known_split_size(shared_data: Path) -> None:
    loads = (
        [("vqa_rad", shared_data / "vqa_rad", s, {}) for s in ("train", "test")]
        + [("vqa_rad", shared_data / "vqa_rad", s, {"layout": "mevf"}) for s in ("train", "test")]
        + [
            ("slake", shared_data / "slake", s, {"language": lang, "on_empty_answer": "skip"})
            for s in ("train", "validation", "test")
            for lang in ("en", "zh", "both")
        ]
        + [("path_vqa", shared_data / "pathvqa", s, {}) for s in ("train", "validation", "test")]
        + [("roco", shared_data / "roco", s, {}) for s in ("validation", "test")]
        + [("med_halt", shared_data / "medhalt", "train", {})]
    )
    for name, root, split, opts in loads:
        ds = load(name, root, split=split, strict_size=True, **opts)
        assert not any("rows:" in n for n in ds.notes), (name, split, opts, ds.notes)


def test_pathvqa_imagefolder_loaded_as_vqa_rad_is_flagged(shared_data: Path) -> None:
    folder = shared_data / "pathvqa" / "imagefolder_sample"
    ds = load("vqa_rad", folder, split="train")
    assert ds.notes == (
        "3,998 rows: not a known VQA-RAD train split size (official 1,797/451, MEVF split 3,064/451, "
        "Hugging Face 1,793/451); the path names PathVQA",
    )
    with pytest.raises(DataFormatError, match="3,998 rows: not a known VQA-RAD train split size"):
        load("vqa_rad", folder, split="train", strict_size=True)


def test_real_release_loads_from_a_hub_cache_snapshot(shared_data: Path, tmp_path: Path) -> None:
    """The official VQA-RAD release laid out as huggingface_hub leaves it: links into ../../blobs/."""
    import hashlib
    import os

    src = shared_data / "vqa_rad"
    snap = tmp_path / "datasets--someone--vqa-rad" / "snapshots" / ("0" * 40)
    for path in [src / "VQA_RAD Dataset Public.json", *sorted((src / "VQA_RAD Image Folder").iterdir())]:
        blob = (
            tmp_path / "datasets--someone--vqa-rad" / "blobs" / hashlib.sha256(str(path).encode()).hexdigest()
        )
        blob.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path, blob)  # the blob stands for the downloaded file
        link = snap / path.relative_to(src)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    train = load("vqa_rad", snap, strict_size=True)
    test = load("vqa_rad", snap, split="test", strict_size=True)
    assert (len(train), len(test), train.skipped, test.skipped) == (1797, 451, 0, 0)
    assert test[0].image is not None and test[0].image.open().mode == "RGB"
