"""Indexing never decodes images; decoding yields RGB from every mode; datasets behave as sequences."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from medvqa.data import VQADataset, load, nested_subset, pair_with_images, sample_root
from tests.unit.test_data_layouts import (
    hf_dataset,
    make_imagefolder,
    make_mevf,
    make_parquet,
    make_path_vqa,
    make_roco,
    make_slake,
)


def test_load_never_decodes_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("datasets")
    sources = [
        ("vqa_rad", make_mevf(tmp_path / "rad"), {}),
        ("vqa_rad", make_mevf(tmp_path / "rad2"), {"layout": "mevf"}),
        ("vqa_rad", make_imagefolder(tmp_path / "if"), {}),
        ("vqa_rad", make_parquet(tmp_path / "pq"), {}),
        ("vqa_rad", hf_dataset(), {}),
        ("slake", make_slake(tmp_path / "slake"), {}),
        ("path_vqa", make_path_vqa(tmp_path / "pv", images=True), {}),
        ("roco", make_roco(tmp_path / "roco"), {"split": "validation"}),
        ("roco", sample_root() / "captions", {}),
        ("vqa_rad", sample_root() / "vqa_rad", {}),
    ]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was decoded while building an index")

    monkeypatch.setattr(Image, "open", refuse)
    for name, source, opts in sources:
        ds = load(name, source, **opts)
        assert len(ds) > 0


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1"])
def test_every_image_mode_opens_as_rgb(tmp_path: Path, mode: str) -> None:
    folder = tmp_path / "train"
    folder.mkdir()
    img = Image.linear_gradient("L").resize((8, 8))
    img = img.convert(mode) if mode not in ("I;16",) else img.convert("I").convert("I;16")
    name = "x.tif" if mode in ("I;16", "I", "F") else ("x.jpg" if mode == "CMYK" else "x.png")
    img.save(folder / name)
    (folder / "metadata.jsonl").write_text(f'{{"file_name": "{name}", "question": "q?", "answer": "yes"}}\n')
    ds = load("path_vqa", tmp_path, split="train")
    [(_sample, decoded)] = list(ds.iter_images())
    assert decoded is not None and decoded.mode == "RGB" and decoded.size == (8, 8)


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    from medvqa._errors import ImageLoadError

    folder = tmp_path / "train"
    folder.mkdir()
    buf = io.BytesIO()
    Image.new("L", (300, 300)).save(buf, "PNG")
    (folder / "big.png").write_bytes(buf.getvalue())
    (folder / "metadata.jsonl").write_text('{"file_name": "big.png", "question": "q?", "answer": "no"}\n')
    ds = load("vqa_rad", tmp_path, split="train")
    assert ds[0].image is not None
    with pytest.raises(ImageLoadError, match="max_pixels"):
        ds[0].image.open(max_pixels=1000)


def test_dataset_is_a_sequence_with_lookup(tmp_path: Path) -> None:
    ds = load("vqa_rad", sample_root() / "vqa_rad", split="test")
    assert isinstance(ds, VQADataset)
    assert list(ds[1:3]) == [ds[1], ds[2]] and next(iter(ds)) == ds[0] and ds.to_list()[-1] == ds[-1]
    head = ds[::2]
    assert isinstance(head, VQADataset) and (head.name, head.split, head.layout) == (
        ds.name,
        ds.split,
        ds.layout,
    )
    assert head.ids() == ds.ids()[::2] and "a slice of the split" in head.notes[-1]
    assert ds.by_id(ds[2].id) == ds[2]
    with pytest.raises(KeyError, match="no sample with id 'nope'"):
        ds.by_id("nope")
    assert "rows=" in repr(ds) and ds.source.endswith("VQA_RAD Dataset Public.json")
    with pytest.raises(ValueError, match="duplicate sample id"):
        VQADataset([ds[0], ds[0]], name="x", split="test")


def test_nested_subsets_are_nested_and_order_independent() -> None:
    pool = load("roco", sample_root() / "captions", split="train").to_list()
    small, mid, big = (nested_subset(pool, n, seed=3) for n in (4, 8, 12))
    assert {s.id for s in small} < {s.id for s in mid} < {s.id for s in big}
    assert [s.id for s in nested_subset(pool[::-1], 8, seed=3)] == [s.id for s in mid][::-1]
    assert {s.id for s in nested_subset(pool, 8, seed=4)} != {s.id for s in mid}
    with pytest.raises(ValueError, match="between 0 and 16"):
        nested_subset(pool, 17, seed=0)


def test_pair_with_images_is_seeded_and_keyed_on_ids() -> None:
    questions = load("med_halt", sample_root() / "med_halt").to_list()
    pool = load("vqa_rad", sample_root() / "vqa_rad", split="test").to_list()
    a = pair_with_images(questions, pool, seed=0)
    b = pair_with_images(questions[::-1], pool[::-1] + pool[:3], seed=0)
    assert [s.image for s in a] == [s.image for s in b][::-1]
    assert all(s.image is not None and s.metadata["pairing"] == "random_image(seed=0)" for s in a)
    assert len({s.metadata["paired_image"] for s in a}) > 1
    c = pair_with_images(questions, pool, seed=1)
    assert [s.image for s in a] != [s.image for s in c]
    assert questions[0].image is None  # inputs are never mutated
    with pytest.raises(ValueError, match="at least one image"):
        pair_with_images(questions, list(questions), seed=0)
