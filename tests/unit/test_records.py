"""Unit tests for the records and the safe image opener."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medvqa import DataFormatError, ImageLoadError, ImageRef, Prediction, VQASample
from medvqa.records import open_rgb


def _sample(**kw: object) -> VQASample:
    base: dict[str, object] = {
        "id": "d:test:1",
        "question": "q?",
        "answer": "yes",
        "answer_type": "closed",
        "answer_type_source": "inferred",
        "dataset": "d",
        "split": "test",
    }
    base.update(kw)
    return VQASample(**base)  # type: ignore[arg-type]


def test_sample_is_frozen_and_metadata_read_only() -> None:
    s = _sample(metadata={"organ": "HEAD"})
    with pytest.raises(AttributeError):
        s.answer = "no"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.metadata["organ"] = "CHEST"  # type: ignore[index]
    t = s.with_metadata(organ="CHEST")
    assert s.metadata["organ"] == "HEAD" and t.metadata["organ"] == "CHEST"


@pytest.mark.parametrize(
    ("field", "value"),
    [("answer_type", "yesno"), ("task", "vqa2"), ("answer_type_source", "guess"), ("id", "")],
)
def test_sample_rejects_bad_values(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field.split("_")[0]):
        _sample(**{field: value})


def test_sample_rejects_non_string_answer_and_non_scalar_metadata() -> None:
    with pytest.raises(TypeError, match="answer must be a string"):
        _sample(answer=3)
    with pytest.raises(TypeError, match="JSON scalar"):
        _sample(metadata={"x": [1, 2]})


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1", "RGB"])
def test_open_rgb_every_mode(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(0)
    if mode in ("I;16", "I", "F"):
        dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
        arr = (rng.random((9, 7)) * 4000).astype(dtype)
        img = Image.fromarray(arr, mode=mode) if mode != "I;16" else Image.fromarray(arr)
        fmt = "TIFF"
    else:
        img = Image.new("RGB", (7, 9), (200, 10, 30)).convert(mode)
        fmt = "TIFF" if mode in ("CMYK", "LA") else "PNG"
    path = tmp_path / f"img.{fmt.lower()}"
    img.save(path, format=fmt)
    out = ImageRef(path=str(path), root=str(tmp_path)).open()
    assert out.mode == "RGB"
    assert out.size == (7, 9)
    if mode in ("I;16", "I", "F"):
        px = np.asarray(out)
        assert px.min() == 0 and px.max() == 255  # min-max rescaled, not clipped white


def test_open_rgb_refuses_bombs_corrupt_missing_and_escapes(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(big)
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        open_rgb(big, max_pixels=10_000)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageLoadError, match=r"bad\.jpg"):
        ImageRef(path=str(bad)).open()
    with pytest.raises(ImageLoadError, match="not found"):
        ImageRef(path=str(tmp_path / "missing.jpg")).open()
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ImageLoadError, match="outside the dataset root"):
        ImageRef(path=str(root / ".." / "big.png"), root=str(root)).open()


def test_image_ref_bytes_and_hash(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buf, format="PNG")
    a = ImageRef(data=buf.getvalue(), name="a.png")
    path = tmp_path / "a.png"
    path.write_bytes(buf.getvalue())
    b = ImageRef(path=str(path))
    assert a.content_hash() == b.content_hash()
    assert a.open().getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(ValueError, match="exactly one"):
        ImageRef()


def test_prediction_round_trip_and_errors() -> None:
    p = Prediction(
        id="x",
        question="q",
        reference="yes",
        prediction="Yes.",
        answer_type="closed",
        metadata={"transforms": "swap"},
    )
    assert Prediction.from_dict(p.to_dict()) == p
    with pytest.raises(DataFormatError, match=r"f\.jsonl, line 3, field 'reference'"):
        Prediction.from_dict({"id": "x", "prediction": "", "answer_type": "open"}, file="f.jsonl", line=3)
