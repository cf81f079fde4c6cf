"""PathVQA (He et al. 2020): the official LXMERT-style QA files and the Hugging Face layout.

Ids: official rows are ``path_vqa:<img_id>:<k>`` (the k-th question of that image record);
rows of the Hugging Face copy carry no ids and get content ids (image bytes + question +
occurrence). The two layouts cannot be joined (the copy renames the images), so their ids differ.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from medvqa._errors import DataFormatError, RowRef
from medvqa.data._common import (
    ImageCheck,
    UniqueIds,
    answer_type_of,
    read_json_list,
    require_object,
    split_not_found,
)
from medvqa.data._dataset import VQADataset
from medvqa.data._hf import hf_vqa_samples, looks_like_hf_folder, read_hf
from medvqa.data._loader import start_load
from medvqa.data._sizes import KnownRelease
from medvqa.records import ImageRef, VQASample

FILES = {"train": "pvqa_train.json", "validation": "pvqa_val.json", "test": "pvqa_test.json"}
IMAGE_SPLIT_DIRS = {"train": "train", "validation": "val", "test": "test"}
LAYOUTS = ("auto", "official", "hf")

KNOWN_SIZES = (
    KnownRelease(
        "official",
        {"train": 19755, "validation": 6279, "test": 6761},
        source="counted in pvqa_train/val/test.json (questions per image record)",
    ),
    KnownRelease(
        "Hugging Face",
        {"train": 19654, "validation": 6259, "test": 6719},
        source="the flaviagiammarino/path-vqa dataset card (num_examples per split)",
    ),
)
"""Split sizes of the PathVQA releases and copies this loader reads."""


def _official_dir(path: Path) -> Path | None:
    for cand in (path, path / "official_qa", path / "qas"):
        if cand.is_dir() and any((cand / f).is_file() for f in FILES.values()):
            return cand
    if path.is_file() and path.name in FILES.values():
        return path.parent
    return None


def _answer(label: Any, *, file: str, index: RowRef) -> str:
    if not isinstance(label, dict) or not label:
        raise DataFormatError(
            f"expected an answer object like {{'yes': 1}}, got {label!r}",
            file=file,
            row=index,
            field="labelf",
        )
    best = max(label.items(), key=lambda kv: kv[1] if isinstance(kv[1], int | float) else 0)[0]
    return str(best).strip()


def _image_split_dir(folder: Path, split: str, image_dir: Path | None) -> Path:
    """The image folder of ``split``: under ``image_dir``, else ``images/`` next to or above ``folder``."""
    if image_dir is None:
        for cand in (folder / "images", folder.parent / "images"):
            if cand.is_dir():
                image_dir = cand
                break
    return (image_dir if image_dir is not None else folder / "images") / IMAGE_SPLIT_DIRS[split]


def _questions(rec: Mapping[str, Any], *, file: str, i: int) -> tuple[list[Any], list[Any]]:
    """The ``sentf.pvqa`` questions and ``labelf.pvqa`` labels of image record ``i``."""
    try:
        questions = rec["sentf"]["pvqa"]
        labels = rec["labelf"]["pvqa"]
    except (KeyError, TypeError):
        field = "sentf" if not isinstance(rec.get("sentf"), dict) or "pvqa" not in rec["sentf"] else "labelf"
        raise DataFormatError("expected {'pvqa': [...]}", file=file, record=i, field=field) from None
    if not isinstance(questions, list) or not isinstance(labels, list) or len(questions) != len(labels):
        raise DataFormatError(
            f"sentf.pvqa and labelf.pvqa must be lists of equal length, got "
            f"{len(questions) if isinstance(questions, list) else questions!r} and "
            f"{len(labels) if isinstance(labels, list) else labels!r}",
            file=file,
            record=i,
            field="labelf",
        )
    return questions, labels


def _record_samples(
    rec: Mapping[str, Any],
    img_id: str,
    *,
    file: str,
    i: int,
    split: str,
    split_dir: Path,
    check: ImageCheck,
    check_images: bool,
) -> Iterator[VQASample]:
    """The samples of image record ``i``, one a question."""
    questions, labels = _questions(rec, file=file, i=i)
    name = f"{img_id}.jpg"
    ref = ImageRef(path=str(split_dir / name), root=str(split_dir), name=name)
    for k, (question, label) in enumerate(zip(questions, labels)):
        loc = RowRef.record(i, f"{img_id}, question {k}")
        # one check per question, so that a skipped image counts every question it drops
        if check_images and not check.keep(ref, file=file, index=loc, field="img_id"):
            continue
        q = str(question).strip() if isinstance(question, str) else ""
        if not q:
            raise DataFormatError(
                f"empty or non-text question {question!r}", file=file, row=loc, field="sentf"
            )
        answer = check.answer(
            {"answer": _answer(label, file=file, index=loc)}, "answer", file=file, index=loc
        )
        if answer is None:
            continue
        atype, source = answer_type_of(answer, None)
        yield VQASample(
            id=f"path_vqa:{img_id}:{k}",
            question=q,
            answer=answer,
            answer_type=atype,
            answer_type_source=source,
            dataset="path_vqa",
            split=split,
            image=ref,
            metadata={"img_id": img_id, "image_name": name, "question_index": k, "layout": "official"},
        )


def _load_official(
    folder: Path, split: str, image_dir: Path | None, check: ImageCheck
) -> tuple[list[VQASample], list[str]]:
    path = folder / FILES[split]
    file = str(path)
    if not path.is_file():
        present = [s for s, f in FILES.items() if (folder / f).is_file()]
        raise split_not_found(folder, split, FILES[split], present)
    data = read_json_list(path, "image records")
    split_dir = _image_split_dir(folder, split, image_dir)
    check_images, notes = check.folder_policy(
        split_dir, indexed="the index is built, opening an image raises an error naming the missing file"
    )
    out: list[VQASample] = []
    ids = UniqueIds()
    for i, raw in enumerate(data):
        rec = require_object(raw, file=file, index=RowRef.record(i))
        img_id = rec.get("img_id")
        if not isinstance(img_id, str) or not img_id.strip():
            raise DataFormatError(
                f"img_id must be a non-empty string, got {img_id!r}", file=file, record=i, field="img_id"
            )
        ids.add(f"path_vqa:{img_id}", file=file, row=RowRef.record(i, img_id), field="img_id")
        out.extend(
            _record_samples(
                rec,
                img_id,
                file=file,
                i=i,
                split=split,
                split_dir=split_dir,
                check=check,
                check_images=check_images,
            )
        )
    return out, notes


def _detect_layout(path: Path | None, folder: Path | None) -> str:
    if folder is not None:
        return "official"
    if path is None or looks_like_hf_folder(path):
        return "hf"
    raise DataFormatError(
        "no PathVQA layout found: expected pvqa_train.json/pvqa_val.json/pvqa_test.json (official, "
        "optionally under official_qa/) or a Hugging Face layout",
        file=str(path),
    )


def load_path_vqa(
    source: Any,
    *,
    split: str = "train",
    layout: str = "auto",
    on_missing_image: str = "error",
    on_empty_answer: str = "error",
    image_dir: str | Path | None = None,
) -> VQADataset:
    """Load one split of PathVQA (see :func:`medvqa.data.load` for the options)."""
    choices = {"layout": (layout, LAYOUTS)}
    run = start_load(source, "path_vqa", split, on_missing_image, on_empty_answer, choices)
    check, path = run.check, run.path
    folder = None if path is None else _official_dir(path)
    if layout == "auto":
        layout = _detect_layout(path, folder)
    notes: list[str] = []
    if layout == "official":
        if folder is None:
            raise DataFormatError("no pvqa_<split>.json files found", file=str(source))
        samples, notes = _load_official(folder, split, None if image_dir is None else Path(image_dir), check)
        where = str(folder / FILES[split])
    else:
        table = read_hf(source, split)
        samples = hf_vqa_samples(table, dataset="path_vqa", split=split, check=check)
        where, layout = table.file, table.layout
    return run.result(samples, layout=layout, source=where, notes=notes)
