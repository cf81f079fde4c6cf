"""VQA-RAD (Lau et al. 2018): the official OSF release, the MEVF split, the Hugging Face copy.

Ids: official rows are ``vqa_rad:<qid>``. MEVF rows are joined to the official rows on
(image name, question) and take the official id (frame questions, which MEVF adds from the
official ``question_frame`` field, get ``vqa_rad:<qid>:frame``). Rows of the Hugging Face
copy carry no qid and get content ids (image bytes + question + occurrence).
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
    content_id,
    normalize_question,
    text_field,
)
from medvqa.data._dataset import VQADataset
from medvqa.data._hf import hf_vqa_samples, is_hf_object, looks_like_hf_folder, read_hf
from medvqa.data._sizes import KnownRelease
from medvqa.records import ImageRef, MetadataValue, VQASample

OFFICIAL_JSON = "VQA_RAD Dataset Public.json"
IMAGE_FOLDER = "VQA_RAD Image Folder"
MEVF_FILES = {"train": "trainset.json", "test": "testset.json"}
LAYOUTS = ("auto", "official", "mevf", "hf")
SPLITS = ("train", "test")
_PHRASE_SPLIT = {"freeform": "train", "para": "train", "test_freeform": "test", "test_para": "test"}
_NULL = (None, "", "NULL")

KNOWN_SIZES = (
    KnownRelease(
        "official",
        {"train": 1797, "test": 451},
        source="counted in the OSF release: phrase types freeform 1,206 + para 591; "
        "test_freeform 308 + test_para 143 (2,248 rows)",
    ),
    KnownRelease(
        "MEVF split",
        {"train": 3064, "test": 451},
        source="counted in the MEVF trainset.json / testset.json",
    ),
    KnownRelease(
        "Hugging Face",
        {"train": 1793, "test": 451},
        source="the flaviagiammarino/vqa-rad dataset card (de-duplicated copy)",
    ),
)
"""Split sizes of the VQA-RAD releases and copies this loader reads."""


def _rows(path: Path) -> list[dict[str, Any]]:
    data = read_json(path)
    if not isinstance(data, list):
        raise DataFormatError(
            f"expected a JSON list of question records, got {type(data).__name__}", file=str(path)
        )
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataFormatError(f"expected an object, got {type(row).__name__}", file=str(path), record=i)
    return data


def _qid(row: Mapping[str, Any], *, file: str, index: Where) -> int:
    raw = row.get("qid")
    try:
        if isinstance(raw, bool):
            raise TypeError
        return int(str(raw).strip()) if isinstance(raw, str) else int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataFormatError(
            f"qid must be an integer, got {raw!r}", file=file, row=index, field="qid"
        ) from None


def _official_meta(row: Mapping[str, Any], qid: int) -> dict[str, MetadataValue]:
    meta: dict[str, MetadataValue] = {"qid": qid}
    for src, dst in (
        ("image_name", "image_name"),
        ("image_organ", "organ"),
        ("question_type", "question_type"),
        ("phrase_type", "phrase_type"),
        ("qid_linked_id", "qid_linked_id"),
        ("image_case_url", "image_case_url"),
        ("evaluation", "evaluation"),
    ):
        value = row.get(src)
        if isinstance(value, str) and value not in _NULL:
            meta[dst] = value.strip()
    return meta


def _find_official(root: Path, explicit: str | Path | None) -> Path:
    if explicit is not None:
        p = Path(explicit)
        return p / OFFICIAL_JSON if p.is_dir() else p
    for cand in (root / OFFICIAL_JSON, root.parent / OFFICIAL_JSON, root.parent.parent / OFFICIAL_JSON):
        if cand.is_file():
            return cand
    raise DataFormatError(
        f"the MEVF split is joined to the official rows, but {OFFICIAL_JSON!r} was not found next to it "
        "or one or two folders up; pass official=PATH",
        file=str(root),
    )


def _sample(
    row: Mapping[str, Any],
    *,
    sid: str,
    split: str,
    file: str,
    index: Where,
    image_dir: Path,
    check: ImageCheck,
    meta: dict[str, MetadataValue],
    question: str | None = None,
) -> VQASample | None:
    q = question if question is not None else text_field(row, "question", file=file, index=index)
    answer = check.answer(row, "answer", file=file, index=index)
    if answer is None:
        return None
    name = text_field(row, "image_name", file=file, index=index)
    ref = ImageRef(path=str(image_dir / name), root=str(image_dir), name=name)
    if not check.keep(ref, file=file, index=index, field="image_name"):
        return None
    if "answer_type" not in row:
        raise DataFormatError("missing required field", file=file, row=index, field="answer_type")
    atype = annotated_answer_type(row["answer_type"], file=file, index=index, field="answer_type")
    return VQASample(
        id=sid,
        question=q,
        answer=answer,
        answer_type=atype,
        answer_type_source="annotation",
        dataset="vqa_rad",
        split=split,
        image=ref,
        metadata=meta,
    )


def _load_official(path: Path, split: str, image_dir: Path, check: ImageCheck) -> list[VQASample]:
    file = str(path)
    out: list[VQASample] = []
    ids = UniqueIds()
    for i, row in enumerate(_rows(path)):
        where = RowRef.record(i)
        phrase = row.get("phrase_type")
        if phrase not in _PHRASE_SPLIT:
            raise DataFormatError(
                f"unknown phrase_type {phrase!r}; expected one of {', '.join(_PHRASE_SPLIT)}",
                file=file,
                row=where,
                field="phrase_type",
            )
        qid = _qid(row, file=file, index=where)
        # qids are unique across the whole file, whichever split is asked for
        ids.add(f"vqa_rad:{qid}", file=file, row=where, field="qid")
        if _PHRASE_SPLIT[phrase] != split:
            continue
        s = _sample(
            row,
            sid=f"vqa_rad:{qid}",
            split=split,
            file=file,
            index=where,
            image_dir=image_dir,
            check=check,
            meta={**_official_meta(row, qid), "layout": "official"},
        )
        if s is not None:
            out.append(s)
    return out


def _load_mevf(
    path: Path, official: Path, split: str, image_dir: Path, check: ImageCheck
) -> tuple[list[VQASample], list[str]]:
    official_rows = _rows(official)
    main: dict[tuple[str, str], list[int]] = {}
    frames: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(official_rows):
        name = str(row.get("image_name", ""))
        main.setdefault((name, normalize_question(str(row.get("question", "")))), []).append(i)
        frame = row.get("question_frame")
        if isinstance(frame, str) and frame not in _NULL:
            frames.setdefault((name, normalize_question(frame)), []).append(i)
    used: set[tuple[str, int]] = set()
    file = str(path)
    out: list[VQASample] = []
    ids = UniqueIds()
    unjoined = 0
    for i, row in enumerate(_rows(path)):
        where = RowRef.record(i)
        question = text_field(row, "question", file=file, index=where)
        name = text_field(row, "image_name", file=file, index=where)
        answer = normalize_question(text_field(row, "answer", file=file, index=where))
        is_frame = row.get("phrase_type") == "frame"
        pool = frames if is_frame else main
        cands = [
            j
            for j in pool.get((name, normalize_question(question)), [])
            if ("f" if is_frame else "m", j) not in used
        ]
        if not is_frame:
            cands = [
                j for j in cands if _PHRASE_SPLIT.get(official_rows[j].get("phrase_type", "")) == split
            ] or cands
        best = [
            j for j in cands if normalize_question(str(official_rows[j].get("answer", ""))) == answer
        ] or cands
        meta: dict[str, MetadataValue]
        if best:
            j = best[0]
            used.add(("f" if is_frame else "m", j))
            qid = _qid(official_rows[j], file=str(official), index=RowRef.record(j))
            meta = _official_meta(official_rows[j], qid)
            meta["official_split"] = _PHRASE_SPLIT.get(official_rows[j].get("phrase_type", ""), "")
            sid = f"vqa_rad:{qid}:frame" if is_frame else f"vqa_rad:{qid}"
        else:
            unjoined += 1
            meta = {"image_name": name}
            sid = content_id("vqa_rad", name, question, 0)
        meta.update(
            {
                "layout": "mevf",
                "mevf_qid": row.get("qid") if isinstance(row.get("qid"), int) else None,
                "phrase_type": str(row.get("phrase_type", "")),
                "joined": bool(best),
            }
        )
        if isinstance(row.get("question_type"), str):
            meta["question_type"] = row["question_type"].strip()
        if isinstance(row.get("image_organ"), str):
            meta["organ"] = row["image_organ"].strip()
        ids.add(sid, file=file, row=where, field="question")
        s = _sample(
            row,
            sid=sid,
            split=split,
            file=file,
            index=where,
            image_dir=image_dir,
            check=check,
            meta=meta,
            question=question,
        )
        if s is not None:
            out.append(s)
    notes = []
    frames_n = sum(1 for s in out if s.metadata.get("phrase_type") == "frame")
    if frames_n:
        from_test = sum(
            1
            for s in out
            if s.metadata.get("phrase_type") == "frame" and s.metadata.get("official_split") == "test"
        )
        notes.append(
            f"MEVF {split}: {frames_n} rows are question_frame variants; {from_test} of them are frames of "
            "official test questions"
        )
    if unjoined:
        notes.append(f"MEVF {split}: {unjoined} rows matched no official row (content ids)")
    return out, notes


def load_vqa_rad(
    source: Any,
    *,
    split: str = "train",
    layout: str = "auto",
    on_missing_image: str = "error",
    on_empty_answer: str = "error",
    image_dir: str | Path | None = None,
    official: str | Path | None = None,
) -> VQADataset:
    """Load one split of VQA-RAD (see :func:`medvqa.data.load` for the options)."""
    check_split(split, dataset="vqa_rad", valid=SPLITS)
    check_choice(layout, LAYOUTS, option="layout", dataset="vqa_rad")
    check = ImageCheck(on_missing_image, dataset="vqa_rad", on_empty_answer=on_empty_answer)
    if is_hf_object(source):
        layout = "hf" if layout == "auto" else layout
    path = None if is_hf_object(source) else Path(source)
    if layout == "auto" and path is not None:
        if path.is_file() and path.name in MEVF_FILES.values():
            layout = "mevf"
        elif (path.is_file() and path.suffix == ".json") or (path / OFFICIAL_JSON).is_file():
            layout = "official"
        elif (path / MEVF_FILES["train"]).is_file():
            layout = "mevf"
        elif looks_like_hf_folder(path):
            layout = "hf"
        else:
            raise DataFormatError(
                f"no VQA-RAD layout found: expected {OFFICIAL_JSON!r} (official), trainset.json/testset.json "
                "(MEVF; or layout='mevf' on a folder with mevf_split/), or a Hugging Face layout",
                file=str(path),
            )
    notes: list[str] = []
    if layout == "hf":
        table = read_hf(source, split)
        samples = hf_vqa_samples(
            table, dataset="vqa_rad", split=split, check=check, type_column="answer_type"
        )
        where = table.file
    elif path is None:
        raise ValueError(f"layout {layout!r} needs a path, got a {type(source).__name__}")
    elif layout == "official":
        json_path = path if path.is_file() else path / OFFICIAL_JSON
        images = Path(image_dir) if image_dir is not None else json_path.parent / IMAGE_FOLDER
        samples = _load_official(json_path, split, images, check)
        where = str(json_path)
    else:
        if path.is_file():
            if path.name != MEVF_FILES[split]:
                raise ValueError(f"{path} is not the MEVF {split!r} file ({MEVF_FILES[split]})")
            mevf = path
        else:
            folder = path / "mevf_split" if (path / "mevf_split").is_dir() else path
            mevf = folder / MEVF_FILES[split]
            if not mevf.is_file():
                raise SplitNotFoundError(f"{folder}: no MEVF {split!r} split ({MEVF_FILES[split]})")
        off = _find_official(mevf.parent, official)
        images = Path(image_dir) if image_dir is not None else off.parent / IMAGE_FOLDER
        samples, notes = _load_mevf(mevf, off, split, images, check)
        where = str(mevf)
    return VQADataset(
        samples,
        name="vqa_rad",
        split=split,
        layout=layout if layout != "hf" else table.layout,
        source=where,
        skipped_rows=check.skipped,
        notes=notes,
    )
