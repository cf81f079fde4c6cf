"""Image paths: a Hugging Face cache snapshot loads; paths that leave the dataset folder do not.

A snapshot made by ``huggingface_hub.snapshot_download`` (and the hub cache ``datasets`` uses)
keeps every file once under ``blobs/<hash>`` and links it from ``snapshots/<revision>/<path>``
with a relative symbolic link such as ``../../blobs/<hash>``. The path written in the dataset
file stays inside the snapshot; only the link points out of it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from medvqa._errors import DataFormatError, ImageLoadError
from medvqa.data import load
from medvqa.records import ImageRef
from tests.unit.test_data_layouts import (
    image_bytes,
    make_imagefolder,
    make_mevf,
    make_path_vqa,
    make_roco,
    make_slake,
    make_vqa_rad,
    write_images,
)

REVISION = "0123456789abcdef0123456789abcdef01234567"


def to_snapshot(src: Path, cache: Path) -> Path:
    """Lay ``src`` out as a hub cache does: files in ``blobs/``, relative links in ``snapshots/<rev>/``."""
    snap = cache / "snapshots" / REVISION
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = cache / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snap / path.relative_to(src)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    return snap


def make_instruct(root: Path) -> Path:
    write_images(root / "images", ["a.jpg", "b.jpg"])
    conv = [{"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "Chest radiograph."}]
    rows = [
        {"id": "ROCO_00001", "image": "a.jpg", "conversations": conv},
        {"id": "ROCO_00002", "image": "b.jpg", "conversations": conv},
    ]
    (root / "roco_instruct.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def make_parquet_with_paths(root: Path) -> Path:
    """A parquet file whose image column holds relative paths (no bytes), images beside it."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    folder = root / "data"
    write_images(folder / "imgs", ["a.jpg", "b.jpg"])
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "image": pa.array(
                [{"bytes": None, "path": "imgs/a.jpg"}, {"bytes": None, "path": "imgs/b.jpg"}],
                type=image_type,
            ),
            "question": ["Is there a bleed?", "How many ribs?"],
            "answer": ["yes", "2"],
        }
    )
    pq.write_table(table, folder / "train-00000-of-00001.parquet")
    return root


# (dataset, builder, where to point load() inside the built folder, split, options)
LAYOUTS: list[tuple[str, Callable[[Path], Any], str, str, dict[str, Any]]] = [
    ("vqa_rad", make_vqa_rad, "", "train", {}),
    ("vqa_rad", make_mevf, "", "train", {"layout": "mevf"}),
    ("vqa_rad", lambda p: make_imagefolder(p, fmt="jsonl"), "", "train", {}),
    ("vqa_rad", lambda p: make_imagefolder(p, fmt="csv"), "", "train", {}),
    ("vqa_rad", make_parquet_with_paths, "", "train", {}),
    ("slake", make_slake, "", "train", {}),
    ("path_vqa", lambda p: make_path_vqa(p, images=True), "", "train", {}),
    ("roco", make_roco, "", "validation", {}),
    ("roco", make_instruct, "roco_instruct.jsonl", "train", {}),
]


def _case_id(case: tuple[str, Any, str, str, dict[str, Any]]) -> str:
    name, _, inner, _, opts = case
    return "-".join([name, *(str(v) for v in opts.values()), inner or "folder"])


@pytest.mark.parametrize("case", LAYOUTS, ids=[_case_id(c) for c in LAYOUTS])
def test_every_layout_loads_from_a_hub_cache_snapshot(
    tmp_path: Path, case: tuple[str, Callable[[Path], Any], str, str, dict[str, Any]]
) -> None:
    name, build, inner, split, opts = case
    src = tmp_path / "src"
    src.mkdir()
    build(src)
    snap = to_snapshot(src, tmp_path / "hub" / "datasets--someone--data")
    plain = load(name, src / inner if inner else src, split=split, **opts)
    linked = load(name, snap / inner if inner else snap, split=split, **opts)
    assert len(linked) == len(plain) > 0 and linked.skipped == 0
    assert [(s.id, s.question, s.answer) for s in linked] == [(s.id, s.question, s.answer) for s in plain]
    image = linked[0].image
    assert image is not None and image.path is not None
    # the image really is a link that points out of the snapshot, into ../../blobs/
    assert os.path.islink(image.path) and "blobs" in os.readlink(image.path)
    assert image.open().mode == "RGB"
    assert image.read_bytes() == plain[0].image.read_bytes()  # type: ignore[union-attr]


def test_a_snapshot_summary_has_no_skips(tmp_path: Path) -> None:
    src = make_vqa_rad(tmp_path / "src")
    snap = to_snapshot(src, tmp_path / "hub")
    ds = load("vqa_rad", snap, split="train", on_missing_image="skip")
    assert ds.skipped == 0 and len(ds) == 2


# Paths written in a dataset file that leave its folder, on every platform.
ESCAPES = [
    "../secret.jpg",
    "sub/../../secret.jpg",
    "..\\secret.jpg",
    "C:\\images\\a.jpg",
    "C:/images/a.jpg",
    "c:a.jpg",
    "\\\\server\\share\\a.jpg",
    "//server/share/a.jpg",
]


@pytest.mark.parametrize("written", [*ESCAPES, "ABSOLUTE"])
def test_imagefolder_paths_that_leave_the_folder_are_refused(tmp_path: Path, written: str) -> None:
    root = make_imagefolder(tmp_path / "data", fmt="jsonl")
    secret = tmp_path / "data" / "secret.jpg"
    secret.write_bytes(image_bytes("a.jpg"))
    if written == "ABSOLUTE":
        written = str(secret)
    meta = root / "train" / "metadata.jsonl"
    rows = [json.loads(line) for line in meta.read_text().splitlines()]
    rows[1]["file_name"] = written
    meta.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(
        DataFormatError, match=r"metadata.jsonl, line 2, field 'file_name': .*outside the dataset root"
    ):
        load("vqa_rad", root, split="train")
    ds = load("vqa_rad", root, split="train", on_missing_image="skip")
    assert ds.skipped == 1 and str(ds.skipped_rows[0].row) == "line 2"
    assert "outside the dataset root" in ds.skipped_rows[0].reason


@pytest.mark.parametrize("written", ESCAPES)
def test_official_image_names_that_leave_the_folder_are_refused(tmp_path: Path, written: str) -> None:
    from tests.unit.test_data_layouts import VQA_RAD_ROWS

    rows = [dict(r) for r in VQA_RAD_ROWS]
    rows[0]["image_name"] = written
    make_vqa_rad(tmp_path / "rad", rows)
    (tmp_path / "rad" / "secret.jpg").write_bytes(image_bytes("a.jpg"))
    with pytest.raises(DataFormatError, match=r"record 0, field 'image_name': .*outside the dataset root"):
        load("vqa_rad", tmp_path / "rad")


@pytest.mark.parametrize("written", ESCAPES)
def test_image_ref_refuses_escapes_before_touching_the_file(tmp_path: Path, written: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    ref = ImageRef(path=os.path.join(str(root), written), root=str(root))
    assert not ref.exists()
    with pytest.raises(ImageLoadError, match="outside the dataset root"):
        ref.open()
    with pytest.raises(ImageLoadError, match="outside the dataset root"):
        ref.read_bytes()


def test_a_symbolic_link_inside_the_root_is_followed_wherever_it_points(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "x.jpg"
    outside.parent.mkdir()
    outside.write_bytes(image_bytes("b.jpg"))
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "abs.jpg")
    os.symlink(os.path.relpath(outside, root), root / "rel.jpg")
    for name in ("abs.jpg", "rel.jpg"):
        ref = ImageRef(path=str(root / name), root=str(root), name=name)
        assert ref.exists() and ref.open().size == (6, 5)
    # a name that stays inside the root after normalisation is fine
    (root / "sub").mkdir()
    (root / "a.jpg").write_bytes(image_bytes("a.jpg"))
    assert ImageRef(path=str(root / "sub" / ".." / "a.jpg"), root=str(root)).exists()
