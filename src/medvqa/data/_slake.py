"""SLAKE 1.0 (Liu et al. 2021): the official bilingual release and the Hugging Face layout.

Ids: ``slake:<qid>`` (the release's qids are unique across its three files). A Hugging Face
copy with a ``qid`` column gets the same ids; without one, content ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medvqa._errors import DataFormatError, RowRef
from medvqa._io import read_json
from medvqa.data._common import (
    ImageCheck,
    SplitNotFoundError,
    UniqueIds,
    Where,
    annotated_answer_type,
    check_choice,
    check_split,
    text_field,
)
from medvqa.data._dataset import VQADataset
from medvqa.data._hf import hf_vqa_samples, is_hf_object, looks_like_hf_folder, read_hf
from medvqa.data._sizes import KnownRelease
from medvqa.records import ImageRef, MetadataValue, VQASample

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
        present = [s for s in FILES if split_file(root, s).is_file()]
        raise SplitNotFoundError(
            f"{root}: no {split!r} split ({FILES[split]}); splits present: {', '.join(present) or 'none'}"
        )
    data = read_json(path)
    if not isinstance(data, list):
        raise DataFormatError(
            f"expected a JSON list of question records, got {type(data).__name__}", file=file
        )
    out: list[VQASample] = []
    ids = UniqueIds()
    for i, row in enumerate(data):
        where = RowRef.record(i)
        if not isinstance(row, dict):
            raise DataFormatError(f"expected an object, got {type(row).__name__}", file=file, row=where)
        if not _language_ok(row, language, file=file, index=where):
            continue
        qid = row.get("qid")
        if not isinstance(qid, int) or isinstance(qid, bool):
            raise DataFormatError(f"qid must be an integer, got {qid!r}", file=file, row=where, field="qid")
        ids.add(f"slake:{qid}", file=file, row=where, field="qid")
        question = text_field(row, "question", file=file, index=where)
        answer = check.answer(row, "answer", file=file, index=where)
        if answer is None:
            continue
        name = text_field(row, "img_name", file=file, index=where)
        ref = ImageRef(path=str(image_dir / name), root=str(image_dir), name=name)
        if not check.keep(ref, file=file, index=where, field="img_name"):
            continue
        if "answer_type" not in row:
            raise DataFormatError("missing required field", file=file, row=where, field="answer_type")
        atype = annotated_answer_type(row["answer_type"], file=file, index=where, field="answer_type")
        meta: dict[str, MetadataValue] = {"qid": qid, "image_name": name, "layout": "official"}
        for src, dst in _META.items():
            value = row.get(src)
            if isinstance(value, str | int) and not isinstance(value, bool):
                meta[dst] = value.strip() if isinstance(value, str) else value
        out.append(
            VQASample(
                id=f"slake:{qid}",
                question=question,
                answer=answer,
                answer_type=atype,
                answer_type_source="annotation",
                dataset="slake",
                split=split,
                image=ref,
                metadata=meta,
            )
        )
    return out


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
    check_split(split, dataset="slake")
    check_choice(language, LANGUAGES, option="language", dataset="slake")
    check_choice(layout, LAYOUTS, option="layout", dataset="slake")
    check = ImageCheck(on_missing_image, dataset="slake", on_empty_answer=on_empty_answer)
    path = None if is_hf_object(source) else Path(source)
    if layout == "auto":
        if path is None:
            layout = "hf"
        elif path.is_dir() and any(split_file(path, s).is_file() for s in FILES):
            layout = "official"
        elif path.is_file() and path.name in (*FILES.values(), *ALT_FILES["validation"]):
            path, layout = path.parent, "official"
        elif looks_like_hf_folder(path):
            layout = "hf"
        else:
            raise DataFormatError(
                "no SLAKE layout found: expected train.json/validate.json/test.json and imgs/ (official) "
                "or a Hugging Face layout",
                file=str(path),
            )
    if layout == "official":
        if path is None:
            raise ValueError(f"layout 'official' needs a path, got a {type(source).__name__}")
        images = Path(image_dir) if image_dir is not None else path / IMAGE_FOLDER
        samples = _load_official(path, split, language, images, check)
        return VQADataset(
            samples,
            name="slake",
            split=split,
            layout="official",
            source=str(split_file(path, split)),
            skipped_rows=check.skipped,
            notes=[f"language: {language}"],
        )
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
    return VQADataset(
        samples,
        name="slake",
        split=split,
        layout=table.layout,
        source=table.file,
        skipped_rows=check.skipped,
        notes=[f"language: {language}"],
    )
