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
from medvqa.data._common import (
    AnnotatedRows,
    ImageCheck,
    SplitNotFoundError,
    UniqueIds,
    Where,
    content_id,
    normalize_question,
    read_json_list,
    require_object,
    text_field,
)
from medvqa.data._dataset import VQADataset
from medvqa.data._hf import hf_vqa_samples, looks_like_hf_folder, read_hf
from medvqa.data._loader import start_load
from medvqa.data._sizes import KnownRelease
from medvqa.records import MetadataValue, VQASample

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
    file = str(path)
    return [
        require_object(row, file=file, index=RowRef.record(i))
        for i, row in enumerate(read_json_list(path, "question records"))
    ]


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


def _load_official(path: Path, split: str, image_dir: Path, check: ImageCheck) -> list[VQASample]:
    file = str(path)
    rows = AnnotatedRows("vqa_rad", split, file, image_dir, "image_name", check)
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
        s = rows.sample(
            row, sid=f"vqa_rad:{qid}", index=where, meta={**_official_meta(row, qid), "layout": "official"}
        )
        if s is not None:
            out.append(s)
    return out


class _OfficialIndex:
    """The official rows, keyed on (image name, normalized question) and on their frame questions.

    Each official row joins at most one MEVF row as its main question and one as its frame.
    """

    def __init__(self, path: Path) -> None:
        self.file = str(path)
        self.rows = _rows(path)
        self._pools: dict[str, dict[tuple[str, str], list[int]]] = {"m": {}, "f": {}}
        for i, row in enumerate(self.rows):
            name = str(row.get("image_name", ""))
            key = (name, normalize_question(str(row.get("question", ""))))
            self._pools["m"].setdefault(key, []).append(i)
            frame = row.get("question_frame")
            if isinstance(frame, str) and frame not in _NULL:
                self._pools["f"].setdefault((name, normalize_question(frame)), []).append(i)
        self._used: set[tuple[str, int]] = set()

    def join(self, name: str, question: str, answer: str, *, frame: bool, split: str) -> int | None:
        """The index of the official row a MEVF row is, or ``None``.

        Among the unused rows with its image and question, those of the same official
        split (frames excepted) and then those with the same answer are preferred.
        """
        pool = "f" if frame else "m"
        cands = [
            j
            for j in self._pools[pool].get((name, normalize_question(question)), [])
            if (pool, j) not in self._used
        ]
        if not frame:
            cands = [j for j in cands if self.split_of(j) == split] or cands
        best = [
            j for j in cands if normalize_question(str(self.rows[j].get("answer", ""))) == answer
        ] or cands
        if not best:
            return None
        self._used.add((pool, best[0]))
        return best[0]

    def split_of(self, j: int) -> str | None:
        """The official split of row ``j`` (from its phrase type)."""
        return _PHRASE_SPLIT.get(self.rows[j].get("phrase_type", ""))


def _mevf_id_meta(
    row: Mapping[str, Any], official: _OfficialIndex, j: int | None, *, name: str, question: str
) -> tuple[str, dict[str, MetadataValue]]:
    """The id and metadata of a MEVF row joined to official row ``j`` (``None``: not joined)."""
    is_frame = row.get("phrase_type") == "frame"
    meta: dict[str, MetadataValue]
    if j is not None:
        qid = _qid(official.rows[j], file=official.file, index=RowRef.record(j))
        meta = _official_meta(official.rows[j], qid)
        meta["official_split"] = official.split_of(j) or ""
        sid = f"vqa_rad:{qid}:frame" if is_frame else f"vqa_rad:{qid}"
    else:
        meta = {"image_name": name}
        sid = content_id("vqa_rad", name, question, 0)
    meta.update(
        {
            "layout": "mevf",
            "mevf_qid": row.get("qid") if isinstance(row.get("qid"), int) else None,
            "phrase_type": str(row.get("phrase_type", "")),
            "joined": j is not None,
        }
    )
    if isinstance(row.get("question_type"), str):
        meta["question_type"] = row["question_type"].strip()
    if isinstance(row.get("image_organ"), str):
        meta["organ"] = row["image_organ"].strip()
    return sid, meta


def _mevf_notes(samples: list[VQASample], split: str, unjoined: int) -> list[str]:
    notes = []
    frames = [s for s in samples if s.metadata.get("phrase_type") == "frame"]
    if frames:
        from_test = sum(1 for s in frames if s.metadata.get("official_split") == "test")
        notes.append(
            f"MEVF {split}: {len(frames)} rows are question_frame variants; {from_test} of them are frames "
            "of official test questions"
        )
    if unjoined:
        notes.append(f"MEVF {split}: {unjoined} rows matched no official row (content ids)")
    return notes


def _load_mevf(
    path: Path, official: Path, split: str, image_dir: Path, check: ImageCheck
) -> tuple[list[VQASample], list[str]]:
    index = _OfficialIndex(official)
    file = str(path)
    rows = AnnotatedRows("vqa_rad", split, file, image_dir, "image_name", check)
    out: list[VQASample] = []
    ids = UniqueIds()
    unjoined = 0
    for i, row in enumerate(_rows(path)):
        where = RowRef.record(i)
        question = text_field(row, "question", file=file, index=where)
        name = text_field(row, "image_name", file=file, index=where)
        answer = normalize_question(text_field(row, "answer", file=file, index=where))
        j = index.join(name, question, answer, frame=row.get("phrase_type") == "frame", split=split)
        unjoined += j is None
        sid, meta = _mevf_id_meta(row, index, j, name=name, question=question)
        ids.add(sid, file=file, row=where, field="question")
        s = rows.sample(row, sid=sid, index=where, meta=meta, question=question)
        if s is not None:
            out.append(s)
    return out, _mevf_notes(out, split, unjoined)


def _detect_layout(path: Path) -> str:
    if path.is_file() and path.name in MEVF_FILES.values():
        return "mevf"
    if (path.is_file() and path.suffix == ".json") or (path / OFFICIAL_JSON).is_file():
        return "official"
    if (path / MEVF_FILES["train"]).is_file():
        return "mevf"
    if looks_like_hf_folder(path):
        return "hf"
    raise DataFormatError(
        f"no VQA-RAD layout found: expected {OFFICIAL_JSON!r} (official), trainset.json/testset.json "
        "(MEVF; or layout='mevf' on a folder with mevf_split/), or a Hugging Face layout",
        file=str(path),
    )


def _mevf_file(path: Path, split: str) -> Path:
    """The MEVF file of ``split``: ``path`` itself, or in ``path`` or its ``mevf_split/`` folder."""
    if path.is_file():
        if path.name != MEVF_FILES[split]:
            raise ValueError(f"{path} is not the MEVF {split!r} file ({MEVF_FILES[split]})")
        return path
    folder = path / "mevf_split" if (path / "mevf_split").is_dir() else path
    mevf = folder / MEVF_FILES[split]
    if not mevf.is_file():
        raise SplitNotFoundError(f"{folder}: no MEVF {split!r} split ({MEVF_FILES[split]})")
    return mevf


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
    choices = {"layout": (layout, LAYOUTS)}
    run = start_load(source, "vqa_rad", split, on_missing_image, on_empty_answer, choices, splits=SPLITS)
    check, path = run.check, run.path
    if layout == "auto":
        layout = "hf" if path is None else _detect_layout(path)
    notes: list[str] = []
    if layout == "hf":
        table = read_hf(source, split)
        samples = hf_vqa_samples(
            table, dataset="vqa_rad", split=split, check=check, type_column="answer_type"
        )
        where, layout = table.file, table.layout
    elif path is None:
        raise ValueError(f"layout {layout!r} needs a path, got a {type(source).__name__}")
    elif layout == "official":
        json_path = path if path.is_file() else path / OFFICIAL_JSON
        images = Path(image_dir) if image_dir is not None else json_path.parent / IMAGE_FOLDER
        samples = _load_official(json_path, split, images, check)
        where = str(json_path)
    else:
        mevf = _mevf_file(path, split)
        off = _find_official(mevf.parent, official)
        images = Path(image_dir) if image_dir is not None else off.parent / IMAGE_FOLDER
        samples, notes = _load_mevf(mevf, off, split, images, check)
        where = str(mevf)
    return run.result(samples, layout=layout, source=where, notes=notes)
