"""ROCO (Pelka et al. 2018) radiology image-caption pairs for stage-1 pretraining.

Layouts: the official release (``<split>/radiology/captions.txt``, images under
``<split>/radiology/images/`` named ``<ROCO id>.jpg`` as its download script stores them, or by
the PMC file name listed in ``licences.txt``), the LLaVA-style ``roco-instruct`` JSON/JSON Lines
(``id``, ``image``, ``conversations``) and the Hugging Face image/caption layout.

Ids: ``roco:<ROCO id>`` (``roco:<id>`` for roco-instruct; content ids for Hugging Face copies
without an id column). Caption samples carry the stage-1 instruction as their question.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from medvqa._errors import DataFormatError, RowRef
from medvqa._io import read_jsonl
from medvqa.data._common import (
    SPLIT_ALIASES,
    ImageCheck,
    SplitNotFoundError,
    UniqueIds,
    read_json_list,
    require_object,
    text_field,
)
from medvqa.data._dataset import VQADataset
from medvqa.data._hf import hf_vqa_samples, looks_like_hf_folder, read_hf
from medvqa.data._loader import start_load
from medvqa.data._sizes import KnownRelease
from medvqa.records import ImageRef, MetadataValue, VQASample

STAGE1_INSTRUCTION = "The following image is a radiology scan. Deeply analyze and diagnose this image."
"""The stage-1 captioning instruction every ROCO sample carries as its question."""

LAYOUTS = ("auto", "official", "instruct", "hf")
SUBSETS = ("radiology", "non-radiology")

KNOWN_SIZES = (
    KnownRelease(
        "official",
        {"validation": 8180, "test": 8179},
        {"subset": "radiology"},
        source="counted in <split>/radiology/captions.txt of the release; the train size is not "
        "recorded, so train loads are not checked",
    ),
)
"""Split sizes of the ROCO release (radiology captions)."""


def _split_dir(root: Path, split: str, subset: str) -> Path | None:
    for alias in SPLIT_ALIASES[split]:
        cand = root / alias / subset
        if (cand / "captions.txt").is_file():
            return cand
    return None


def _pmc_names(folder: Path) -> dict[str, str]:
    path = folder / "licences.txt"
    if not path.is_file():
        return {}
    names: dict[str, str] = {}
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for i, row in enumerate(csv.reader(fh)):
            if i == 0 and row and row[0].strip().upper() == "ROCO_ID":
                continue
            if len(row) >= 2:
                names[row[0].strip()] = row[1].strip()
    return names


def _caption_sample(
    sid: str, caption: str, split: str, ref: ImageRef | None, meta: dict[str, MetadataValue]
) -> VQASample:
    return VQASample(
        id=sid,
        question=STAGE1_INSTRUCTION,
        answer=caption,
        answer_type="open",
        answer_type_source="inferred",
        dataset="roco",
        split=split,
        task="caption",
        image=ref,
        metadata=meta,
    )


def _load_official(folder: Path, split: str, check: ImageCheck) -> tuple[list[VQASample], list[str]]:
    path = folder / "captions.txt"
    file = str(path)
    images = folder / "images"
    pmc = _pmc_names(folder)
    images_present = images.is_dir()
    # As for PathVQA: an absent folder gives a caption index unless skipping was asked.
    check_images, notes = check.folder_policy(
        images, indexed="captions indexed, opening an image raises an error naming the file"
    )
    out: list[VQASample] = []
    ids = UniqueIds()
    with path.open(encoding="utf-8-sig", newline="\n") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = RowRef.line(line_no)
            roco_id, tab, rest = line.rstrip("\r\n").partition("\t")
            roco_id = roco_id.strip()
            if not tab or not roco_id:
                raise DataFormatError(
                    "expected 'ROCO_id<TAB>caption'", file=file, row=where, field="captions"
                )
            ids.add(f"roco:{roco_id}", file=file, row=where, field="id")
            caption = check.answer({"caption": rest}, "caption", file=file, index=where)
            if caption is None:
                continue
            ref = ImageRef(path=str(images / f"{roco_id}.jpg"), root=str(images), name=f"{roco_id}.jpg")
            if images_present and not ref.exists() and roco_id in pmc:
                alt = ImageRef(path=str(images / pmc[roco_id]), root=str(images), name=pmc[roco_id])
                if alt.exists():
                    ref = alt
            if check_images and not check.keep(ref, file=file, index=where, field="image"):
                continue
            meta: dict[str, MetadataValue] = {
                "roco_id": roco_id,
                "image_name": ref.name,
                "layout": "official",
            }
            if roco_id in pmc:
                meta["pmc_name"] = pmc[roco_id]
            out.append(_caption_sample(f"roco:{roco_id}", caption, split, ref, meta))
    return out, notes


def _load_instruct(path: Path, split: str, image_dir: Path, check: ImageCheck) -> list[VQASample]:
    file = str(path)
    rows: list[tuple[RowRef, Any]]
    if path.suffix == ".jsonl":
        rows = [(RowRef.line(n), obj) for n, obj in read_jsonl(path)]
    else:
        rows = [(RowRef.record(i), obj) for i, obj in enumerate(read_json_list(path, "records"))]
    out: list[VQASample] = []
    ids = UniqueIds()
    for index, raw in rows:
        row = require_object(raw, file=file, index=index)
        rid = text_field(row, "id", file=file, index=index)
        ids.add(f"roco:{rid}", file=file, row=index, field="id")
        name = text_field(row, "image", file=file, index=index)
        turns = row.get("conversations")
        if not isinstance(turns, list):
            raise DataFormatError(
                "expected a list of {'from', 'value'} turns", file=file, row=index, field="conversations"
            )
        answers = [
            t.get("value") for t in turns if isinstance(t, dict) and t.get("from") in ("gpt", "assistant")
        ]
        if not answers:
            raise DataFormatError(
                "no 'gpt' turn holding the caption", file=file, row=index, field="conversations"
            )
        caption = check.answer(
            {"caption": answers[0] if isinstance(answers[0], str) else ""}, "caption", file=file, index=index
        )
        if caption is None:
            continue
        ref = ImageRef(path=str(image_dir / name), root=str(image_dir), name=name)
        if not check.keep(ref, file=file, index=index, field="image"):
            continue
        meta: dict[str, MetadataValue] = {"image_name": name, "layout": "instruct"}
        humans = [t.get("value") for t in turns if isinstance(t, dict) and t.get("from") in ("human", "user")]
        if humans and isinstance(humans[0], str):
            meta["instruct_prompt"] = humans[0].replace("<image>", "").strip()
        out.append(_caption_sample(f"roco:{rid}", caption, split, ref, meta))
    return out


def _detect_layout(path: Path | None, subset: str) -> str:
    if path is None:
        return "hf"
    if path.is_file() and path.suffix in (".json", ".jsonl"):
        return "instruct"
    if path.is_dir() and any(
        (path / a / subset / "captions.txt").is_file() for v in SPLIT_ALIASES.values() for a in v
    ):
        return "official"
    if looks_like_hf_folder(path):
        return "hf"
    raise DataFormatError(
        f"no ROCO layout found: expected <split>/{subset}/captions.txt (official), a roco-instruct "
        ".json/.jsonl file, or a Hugging Face image/caption layout",
        file=str(path),
    )


def _official_folder(path: Path | None, source: Any, split: str, subset: str) -> Path:
    if path is None:
        raise ValueError(f"layout 'official' needs a path, got a {type(source).__name__}")
    folder = _split_dir(path, split, subset)
    if folder is None:
        present = sorted({p.parent.parent.name for p in path.glob(f"*/{subset}/captions.txt")})
        raise SplitNotFoundError(
            f"{path}: no {split!r} split (expected {split}/{subset}/captions.txt); splits present: "
            f"{', '.join(present) or 'none'}"
        )
    return folder


def _load_hf(source: Any, split: str, check: ImageCheck) -> tuple[list[VQASample], str, str]:
    table = read_hf(source, split)
    id_col = next((c for c in ("roco_id", "id", "image_id") if c in table.columns), None)
    samples = hf_vqa_samples(
        table,
        dataset="roco",
        split=split,
        check=check,
        answer_columns=("caption", "text"),
        id_column=id_col,
        task="caption",
        fixed_question=STAGE1_INSTRUCTION,
    )
    return samples, table.file, table.layout


def load_roco(
    source: Any,
    *,
    split: str = "train",
    layout: str = "auto",
    subset: str = "radiology",
    on_missing_image: str = "error",
    on_empty_answer: str = "error",
    image_dir: str | Path | None = None,
) -> VQADataset:
    """Load one split of ROCO captions (see :func:`medvqa.data.load` for the options)."""
    choices = {"layout": (layout, LAYOUTS), "subset": (subset, SUBSETS)}
    run = start_load(source, "roco", split, on_missing_image, on_empty_answer, choices)
    check, path = run.check, run.path
    if layout == "auto":
        layout = _detect_layout(path, subset)
    notes: list[str] = []
    if layout == "official":
        folder = _official_folder(path, source, split, subset)
        samples, notes = _load_official(folder, split, check)
        where = str(folder / "captions.txt")
    elif layout == "instruct":
        if path is None or not path.is_file():
            raise ValueError("layout 'instruct' needs the path of a roco-instruct .json or .jsonl file")
        images = (
            Path(image_dir)
            if image_dir is not None
            else (path.parent / "images" if (path.parent / "images").is_dir() else path.parent)
        )
        samples, where = _load_instruct(path, split, images, check), str(path)
    else:
        samples, where, layout = _load_hf(source, split, check)
    return run.result(samples, layout=layout, source=where, notes=notes)
