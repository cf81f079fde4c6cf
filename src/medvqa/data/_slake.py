"""SLAKE 1.0 (Liu et al. 2021): the official bilingual release and the Hugging Face layout.

Ids: ``slake:<qid>`` (the release's qids are unique across its three files). A Hugging Face
copy with a ``qid`` column gets the same ids; without one, content ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from medvqa._errors import DataFormatError, RowRef
from medvqa.data._common import (
    AnnotatedRows,
    ImageCheck,
    UniqueIds,
    Where,
    read_json_list,
    require_object,
    split_not_found,
)
from medvqa.data._dataset import VQADataset
from medvqa.data._hf import hf_vqa_samples, looks_like_hf_folder, read_hf
from medvqa.data._loader import start_load
from medvqa.data._sizes import KnownRelease
from medvqa.records import MetadataValue, VQASample

FILES = {"train": "train.json", "validation": "validate.json", "test": "test.json"}
#: Other names copies use (the Hugging Face copy BoKelvin/SLAKE renamed validate.json).
ALT_FILES: dict[str, tuple[str, ...]] = {"validation": ("validation.json",)}
LANGUAGES = ("en", "zh", "both")
LAYOUTS = ("auto", "official", "hf")
IMAGE_FOLDER = "imgs"

_COUNTED = "counted in the official train/validate/test.json (the Hugging Face copy BoKelvin/SLAKE holds the same files)"
KNOWN_SIZES = (
    KnownRelease(
        "official English", {"train": 4919, "validation": 1053, "test": 1061}, {"language": "en"}, _COUNTED
    ),
    KnownRelease(
        "official Chinese", {"train": 4916, "validation": 1046, "test": 1033}, {"language": "zh"}, _COUNTED
    ),
    KnownRelease(
        "official", {"train": 9835, "validation": 2099, "test": 2094}, {"language": "both"}, _COUNTED
    ),
)
"""Split sizes of SLAKE 1.0 per language filter."""
_META = {
    "img_id": "img_id",
    "q_lang": "language",
    "location": "location",
    "modality": "modality",
    "content_type": "content_type",
    "base_type": "base_type",
}


def split_file(root: Path, split: str) -> Path:
    """The release file of ``split`` in ``root``: its official name, or a name a copy uses."""
    for name in (FILES[split], *ALT_FILES.get(split, ())):
        if (root / name).is_file():
            return root / name
    return root / FILES[split]


def _language_ok(row: Mapping[str, Any], language: str, *, file: str, index: Where) -> bool:
    if language == "both":
        return True
    if "q_lang" not in row:
        raise DataFormatError(
            "missing required field for the language filter (pass language='both' to keep every row)",
            file=file,
            row=index,
            field="q_lang",
        )
    return str(row["q_lang"]).strip() == language


def _load_official(
    root: Path, split: str, language: str, image_dir: Path, check: ImageCheck
) -> list[VQASample]:
    path = split_file(root, split)
    file = str(path)
    if not path.is_file():
        raise split_not_found(root, split, FILES[split], [s for s in FILES if split_file(root, s).is_file()])
    rows = AnnotatedRows("slake", split, file, image_dir, "img_name", check)
    out: list[VQASample] = []
    ids = UniqueIds()
    for i, raw in enumerate(read_json_list(path, "question records")):
        where = RowRef.record(i)
        row = require_object(raw, file=file, index=where)
        if not _language_ok(row, language, file=file, index=where):
            continue
        qid = row.get("qid")
        if not isinstance(qid, int) or isinstance(qid, bool):
            raise DataFormatError(f"qid must be an integer, got {qid!r}", file=file, row=where, field="qid")
        ids.add(f"slake:{qid}", file=file, row=where, field="qid")
        sample = rows.sample(row, sid=f"slake:{qid}", index=where, meta=partial(_official_meta, row, qid))
        if sample is not None:
            out.append(sample)
    return out


def _official_meta(row: Mapping[str, Any], qid: int, name: str) -> dict[str, MetadataValue]:
    meta: dict[str, MetadataValue] = {"qid": qid, "image_name": name, "layout": "official"}
    for src, dst in _META.items():
        value = row.get(src)
        if isinstance(value, str | int) and not isinstance(value, bool):
            meta[dst] = value.strip() if isinstance(value, str) else value
    return meta


def _detect_layout(path: Path | None) -> tuple[Path | None, str]:
    """The layout of ``source`` (a ``datasets`` object when ``path`` is ``None``) and its root."""
    if path is None:
        return path, "hf"
    if path.is_dir() and any(split_file(path, s).is_file() for s in FILES):
        return path, "official"
    if path.is_file() and path.name in (*FILES.values(), *ALT_FILES["validation"]):
        return path.parent, "official"
    if looks_like_hf_folder(path):
        return path, "hf"
    raise DataFormatError(
        "no SLAKE layout found: expected train.json/validate.json/test.json and imgs/ (official) "
        "or a Hugging Face layout",
        file=str(path),
    )


def load_slake(
    source: Any,
    *,
    split: str = "train",
    language: str = "en",
    layout: str = "auto",
    on_missing_image: str = "error",
    on_empty_answer: str = "error",
    image_dir: str | Path | None = None,
) -> VQADataset:
    """Load one split of SLAKE (see :func:`medvqa.data.load` for the options)."""
    choices = {"language": (language, LANGUAGES), "layout": (layout, LAYOUTS)}
    run = start_load(source, "slake", split, on_missing_image, on_empty_answer, choices)
    check, path = run.check, run.path
    if layout == "auto":
        path, layout = _detect_layout(path)
    if layout == "official":
        if path is None:
            raise ValueError(f"layout 'official' needs a path, got a {type(source).__name__}")
        images = Path(image_dir) if image_dir is not None else path / IMAGE_FOLDER
        samples = _load_official(path, split, language, images, check)
        where = str(split_file(path, split))
    else:
        table = read_hf(source, split)

        def keep(row: Mapping[str, Any]) -> bool:
            return language == "both" or "q_lang" not in row or str(row["q_lang"]).strip() == language

        samples = hf_vqa_samples(
            table,
            dataset="slake",
            split=split,
            check=check,
            id_column="qid",
            type_column="answer_type",
            keep=keep,
        )
        where, layout = table.file, table.layout
    return run.result(samples, layout=layout, source=where, notes=[f"language: {language}"])
