"""Helpers shared by the dataset adapters: splits, field checks, ids, image checks."""

from __future__ import annotations

import csv
import hashlib
import os
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias, get_args

from medvqa._errors import DataFormatError, ImageLoadError, RowRef
from medvqa._io import read_json
from medvqa.records import (
    AnswerType,
    AnswerTypeSource,
    ImageRef,
    MetadataValue,
    VQASample,
    infer_answer_type,
)

Where: TypeAlias = RowRef | int | str
"""Where a row sits in its file: a :class:`~medvqa._errors.RowRef` (``line 3``, ``record 2``)."""

Split = Literal["train", "validation", "test"]
"""The split names every adapter accepts."""

OnMissingImage = Literal["error", "skip"]
"""What to do with a row whose image file does not exist: raise, or skip it and count it."""

SPLITS: tuple[Split, ...] = get_args(Split)

#: Names releases use for each split, in the order they are tried.
SPLIT_ALIASES: Mapping[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "validation": ("validation", "validate", "val", "valid", "dev"),
    "test": ("test", "testing"),
}


class SplitNotFoundError(ValueError):
    """The requested split is a valid name but the given source does not hold it."""


def check_split(split: object, *, dataset: str, valid: Iterable[str] = SPLITS) -> Split:
    """Return ``split`` if it is a known split name, else raise ``ValueError`` listing the valid ones."""
    choices = tuple(valid)
    if not isinstance(split, str) or split not in choices:
        raise ValueError(
            f"unknown split {split!r} for dataset {dataset!r}; valid splits: {', '.join(choices)}"
        )
    return split  # type: ignore[return-value]


def check_choice(value: object, choices: Iterable[str], *, option: str, dataset: str) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` naming the option."""
    valid = tuple(choices)
    if not isinstance(value, str) or value not in valid:
        raise ValueError(
            f"invalid value {value!r} for option {option!r} of dataset {dataset!r}; "
            f"valid values: {', '.join(repr(v) for v in valid)}"
        )
    return value


def split_of(raw: str) -> str | None:
    """Map a release's split name (``val``, ``validate``, ...) to the canonical one, or ``None``."""
    low = raw.strip().lower()
    for split, aliases in SPLIT_ALIASES.items():
        if low in aliases:
            return split
    return None


def text_field(
    row: Mapping[str, Any],
    key: str,
    *,
    file: str,
    index: Where,
    allow_empty: bool = False,
) -> str:
    """A required text field: integers become their digits, floats (``2.0``, NaN) are refused,
    whitespace is stripped, empty is refused."""
    if key not in row:
        present = ", ".join(sorted(map(str, row))) or "none"
        raise DataFormatError(
            f"missing required field (fields present: {present})", file=file, row=index, field=key
        )
    value = row[key]
    if isinstance(value, bool) or value is None or not isinstance(value, str | int | float):
        raise DataFormatError(
            f"expected text, got {type(value).__name__} {value!r}", file=file, row=index, field=key
        )
    from medvqa.records import _answer_text  # the one rule for answers: integers as digits, floats refused

    text = _answer_text(value, file=file, row=index, field=key).strip()
    if not text and not allow_empty:
        raise DataFormatError(f"empty {key}", file=file, row=index, field=key)
    return text


def annotated_answer_type(raw: object, *, file: str, index: Where, field: str) -> AnswerType:
    """Read an OPEN/CLOSED annotation (case and surrounding whitespace ignored)."""
    norm = str(raw).strip().lower() if isinstance(raw, str) else None
    if norm == "closed":
        return "closed"
    if norm == "open":
        return "open"
    raise DataFormatError(
        f"answer type must be 'OPEN' or 'CLOSED', got {raw!r}", file=file, row=index, field=field
    )


def answer_type_of(answer: str, annotation: AnswerType | None) -> tuple[AnswerType, AnswerTypeSource]:
    """The annotation when there is one, otherwise the inferred type; with its source."""
    if annotation is not None:
        return annotation, "annotation"
    return infer_answer_type(answer), "inferred"


def normalize_question(question: str) -> str:
    """The question as compared by ids and the audit: NFKC, case-folded, single spaces.

    >>> normalize_question("  Is there   a Fracture? ")
    'is there a fracture?'
    """
    return " ".join(unicodedata.normalize("NFKC", question).casefold().split())


def content_id(dataset: str, image_key: str, question: str, occurrence: int) -> str:
    """An id for a row of a layout without native ids, keyed on its content.

    The key is the image identity (the SHA-256 of its bytes when readable), the normalized
    question and the occurrence index of that (image, question) pair in the file, so the
    same row gets the same id whatever the row order of other pairs and the layout.

    >>> content_id("vqa_rad", "abc", "Is it normal?", 0)
    'vqa_rad:h:...'
    """
    digest = hashlib.sha256(f"{image_key}\x1f{normalize_question(question)}".encode()).hexdigest()[:16]
    return f"{dataset}:h:{digest}" + (f"~{occurrence}" if occurrence else "")


class Occurrences:
    """Counts how often each key has been seen (for occurrence indices in content ids)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}

    def next(self, image_key: str, question: str) -> int:
        """The 0-based occurrence index of this (image, question) pair, counting this one."""
        key = (image_key, normalize_question(question))
        n = self._seen.get(key, 0)
        self._seen[key] = n + 1
        return n


class ImageIdentity:
    """Image identities for content ids: SHA-256 of the bytes, computed once per file."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def __call__(self, ref: ImageRef | None) -> str:
        if ref is None:
            return "no-image"
        if ref.data is not None:
            return hashlib.sha256(ref.data).hexdigest()
        path = ref.path or ""
        if path not in self._cache:
            try:
                self._cache[path] = ref.content_hash()
            except OSError:
                self._cache[path] = "name:" + os.path.basename(path)
        return self._cache[path]


@dataclass(frozen=True)
class SkippedRow:
    """A release row left out of a dataset because the user asked to skip it.

    Attributes:
        file: The file the row came from.
        row: Where it sits in that file (``line 3`` of a line format, ``record 2`` of a
            JSON array; see :class:`~medvqa._errors.RowRef`).
        reason: Why it was skipped, for example ``image file not found: ...``.
    """

    file: str
    row: Where
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (the row as its text, ``line 3`` or ``record 2``)."""
        return {
            "file": self.file,
            "row": self.row if isinstance(self.row, int) else str(self.row),
            "reason": self.reason,
        }


OnEmptyAnswer = Literal["error", "skip"]
"""What to do with a row whose answer (or caption) is empty: raise, or skip it and count it."""


class ImageCheck:
    """Applies the skip policies: image files must exist (checked without decoding) and
    answers must be non-empty, unless the caller asked to skip such rows (then counted)."""

    def __init__(self, on_missing_image: str, *, dataset: str, on_empty_answer: str = "error") -> None:
        self.policy = check_choice(
            on_missing_image, get_args(OnMissingImage), option="on_missing_image", dataset=dataset
        )
        self.empty_policy = check_choice(
            on_empty_answer, get_args(OnEmptyAnswer), option="on_empty_answer", dataset=dataset
        )
        self.skipped: list[SkippedRow] = []
        self._reasons: dict[str, str | None] = {}

    def answer(self, row: Mapping[str, Any], key: str, *, file: str, index: Where) -> str | None:
        """The row's answer text, or ``None`` (recorded as skipped) when it is empty and skipping was asked."""
        text = text_field(row, key, file=file, index=index, allow_empty=True)
        if text:
            return text
        if self.empty_policy == "skip":
            self.skipped.append(SkippedRow(file=file, row=index, reason=f"empty {key}"))
            return None
        raise DataFormatError(
            f"empty {key} (pass on_empty_answer='skip', or --on-empty-answer skip, "
            "to leave such rows out, counted)",
            file=file,
            row=index,
            field=key,
        )

    def keep(self, ref: ImageRef | None, *, file: str, index: Where, field: str = "image") -> bool:
        """True when the row can be kept; records a skip or raises when its image is missing.

        A path that leaves the dataset folder as written (``..``, absolute, drive paths) is
        refused like a missing file; symbolic links inside the folder are followed (see
        :meth:`~medvqa.records.ImageRef.resolved_path`).
        """
        if ref is None or ref.data is not None:
            return True
        path = ref.path or ""
        if path not in self._reasons:
            try:
                ref.resolved_path()
            except ImageLoadError as exc:
                self._reasons[path] = str(exc)
            else:
                self._reasons[path] = None if ref.exists() else f"image file not found: {path}"
        reason = self._reasons[path]
        if reason is None:
            return True
        if self.policy == "skip":
            self.skipped.append(SkippedRow(file=file, row=index, reason=reason))
            return False
        raise DataFormatError(
            f"{reason} (pass on_missing_image='skip', or --on-missing-image skip, "
            "to leave such rows out, counted)",
            file=file,
            row=index,
            field=field,
        )

    def folder_policy(self, folder: Path, *, indexed: str) -> tuple[bool, list[str]]:
        """Whether rows' images are checked, and the note to give when ``folder`` is absent.

        An absent image folder still gives an index (for text-only uses), unless the caller
        asked to skip rows without images: then every row is skipped and counted.

        Args:
            folder: The image folder of the split.
            indexed: What the note says after ``no image folder ...:`` when rows are kept.
        """
        if folder.is_dir():
            return True, []
        if self.policy == "skip":
            return True, [f"no image folder {folder}: every row skipped (on_missing_image='skip')"]
        return False, [f"no image folder {folder}: {indexed}"]


def split_not_found(root: Path, split: str, expected: str, present: Iterable[str]) -> SplitNotFoundError:
    """The error for a split whose file ``expected`` is not in ``root``, listing the splits present."""
    return SplitNotFoundError(
        f"{root}: no {split!r} split ({expected}); splits present: {', '.join(present) or 'none'}"
    )


def read_json_list(path: Path, what: str) -> list[Any]:
    """The JSON array in ``path``; anything else is an error naming the file and ``what`` was expected."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataFormatError(f"expected a JSON list of {what}, got {type(data).__name__}", file=str(path))
    return data


def require_object(row: object, *, file: str, index: Where) -> dict[str, Any]:
    """``row`` when it is a JSON object, else an error naming the file and row."""
    if not isinstance(row, dict):
        raise DataFormatError(f"expected an object, got {type(row).__name__}", file=file, row=index)
    return row


@dataclass(frozen=True)
class AnnotatedRows:
    """Makes samples of the rows of one release file whose rows hold a question, an answer,
    an image name and an OPEN/CLOSED answer type (VQA-RAD, SLAKE).

    Attributes:
        dataset: The dataset name of the samples.
        split: The split name of the samples.
        file: The release file (for errors).
        image_dir: The folder image names are relative to.
        image_field: The field holding the image name.
        check: The skip policies.
    """

    dataset: str
    split: str
    file: str
    image_dir: Path
    image_field: str
    check: ImageCheck

    def sample(
        self,
        row: Mapping[str, Any],
        *,
        sid: str,
        index: Where,
        meta: dict[str, MetadataValue] | Callable[[str], dict[str, MetadataValue]],
        question: str | None = None,
    ) -> VQASample | None:
        """The sample of ``row``, or ``None`` when the skip policies left it out (counted there).

        Fields are checked in the order question, answer, image, answer type, so the first
        problem of a row is the one reported.

        Args:
            row: The release row.
            sid: The sample id.
            index: Where the row sits in the file.
            meta: The sample's metadata, or a function of the image name that makes it.
            question: The question when already read (else the row's ``question``).
        """
        file, check = self.file, self.check
        q = question if question is not None else text_field(row, "question", file=file, index=index)
        answer = check.answer(row, "answer", file=file, index=index)
        if answer is None:
            return None
        name = text_field(row, self.image_field, file=file, index=index)
        ref = ImageRef(path=str(self.image_dir / name), root=str(self.image_dir), name=name)
        if not check.keep(ref, file=file, index=index, field=self.image_field):
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
            dataset=self.dataset,
            split=self.split,
            image=ref,
            metadata=meta(name) if callable(meta) else meta,
        )


def scalar_metadata(row: Mapping[str, Any], skip: Iterable[str] = ()) -> dict[str, MetadataValue]:
    """The JSON-scalar fields of a row, minus ``skip``; lists/dicts are left out."""
    leave = set(skip)
    out: dict[str, MetadataValue] = {}
    for key, value in row.items():
        if key in leave or not isinstance(key, str):
            continue
        if value is None or isinstance(value, str | int | float | bool):
            out[key] = value
    return out


class UniqueIds:
    """Refuses a sample id seen before, naming the file and row of both occurrences.

    >>> ids = UniqueIds()
    >>> ids.add("vqa_rad:7", file="a.json", row=RowRef.record(3), field="qid")
    >>> ids.add("vqa_rad:7", file="a.json", row=RowRef.record(9), field="qid")
    Traceback (most recent call last):
    ...
    medvqa._errors.DataFormatError: a.json, record 9, field 'qid': duplicate ... first seen at a.json, record 3
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, Where]] = {}

    def add(self, sample_id: str, *, file: str, row: Where, field: str | None = None) -> None:
        """Record ``sample_id`` as seen at ``file``/``row``; raise if it was seen before.

        Raises:
            DataFormatError: The id was seen before (the message names both places).
        """
        first = self._seen.get(sample_id)
        if first is not None:
            where = f"{first[0]}, {first[1] if not isinstance(first[1], int) else f'row {first[1]}'}"
            raise DataFormatError(
                f"duplicate sample id {sample_id!r}: first seen at {where}", file=file, row=row, field=field
            )
        self._seen[sample_id] = (file, row)


def read_csv_rows(path: Path) -> tuple[list[str], Iterator[tuple[RowRef, dict[str, str]]]]:
    """The header of a CSV file and its data rows, each with its 1-based starting line.

    Blank lines are skipped; a row with more or fewer cells than the header is an error
    naming its line. A cell may hold newlines (quoted); the line is where its row starts.

    Raises:
        DataFormatError: The file is missing, not UTF-8, or a row does not fit the header.
    """
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    file = str(path)
    try:
        fh = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError as exc:
        raise DataFormatError("file not found", file=file) from exc
    reader = csv.reader(fh)
    try:
        header = next(reader, [])
    except (UnicodeDecodeError, csv.Error) as exc:
        fh.close()
        raise DataFormatError(f"not a readable UTF-8 CSV file: {exc}", file=file, line=1) from exc

    def rows() -> Iterator[tuple[RowRef, dict[str, str]]]:
        with fh:
            while True:
                start = reader.line_num + 1
                try:
                    cells = next(reader, None)
                except (UnicodeDecodeError, csv.Error) as exc:
                    raise DataFormatError(f"not readable CSV: {exc}", file=file, line=start) from exc
                if cells is None:
                    return
                if not cells:
                    continue
                where = RowRef.line(start)
                if len(cells) > len(header):
                    raise DataFormatError(
                        f"row has {len(cells)} cells, more than the header's {len(header)} columns",
                        file=file,
                        row=where,
                    )
                if len(cells) < len(header):
                    raise DataFormatError(
                        f"row has {len(cells)} cells, fewer than the header's {len(header)} columns",
                        file=file,
                        row=where,
                        field=header[len(cells)],
                    )
                yield where, dict(zip(header, cells))

    return header, rows()
