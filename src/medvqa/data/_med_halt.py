"""Med-HALT (Pal et al. 2023) ``reasoning_fake``: nonsense questions whose right answer is to abstain.

The ``options`` column is a Python-literal dict string; it is parsed with JSON or
:func:`ast.literal_eval` (literals only, never ``eval``). The abstaining option is the one whose
text is "I do not know" (rule ``exact``), else the last option containing "I do not know" /
"I don't know" (rule ``contains``), else the last option (rule ``last_option``); the rule used is
recorded per sample in ``metadata["abstain_rule"]`` and counted in the dataset notes.

Ids: ``med_halt:<id>`` (the release's UUIDs). Samples are text-only (``image=None``); pair them
with images with :func:`medvqa.data.pair_with_images`.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medvqa._errors import DataFormatError, RowRef
from medvqa.data._common import (
    ImageCheck,
    SplitNotFoundError,
    UniqueIds,
    check_split,
    read_csv_rows,
    split_of,
    text_field,
)
from medvqa.data._dataset import VQADataset
from medvqa.data._sizes import KnownRelease
from medvqa.records import MetadataValue, VQASample

FILE = "reasoning_fake.csv"

KNOWN_SIZES = (
    KnownRelease(
        "official",
        {"train": 1858},
        source="counted in reasoning_fake.csv (every row has split_type 'train')",
    ),
)
"""Split sizes of Med-HALT reasoning_fake."""
REQUIRED = ("id", "question", "options")
_EXACT = frozenset({"i do not know", "i don't know", "i dont know", "i do not know at all"})
_CONTAINS = re.compile(r"\bi (?:do not|don't|dont) know\b")


def parse_options(raw: str, *, file: str, row: RowRef | int) -> dict[str, str]:
    """Parse an options cell (JSON, or a Python literal dict/list) into ``{key: text}``.

    Args:
        raw: The cell text.
        file: The file, for error messages.
        row: Where the row is, for error messages (``RowRef.line(n)`` for a CSV line).

    >>> parse_options("{'0': 'Yes', '1': 'I do not know'}", file="f.csv", row=RowRef.line(2))
    {'0': 'Yes', '1': 'I do not know'}
    >>> parse_options("__import__('os')", file="f.csv", row=RowRef.line(4))
    Traceback (most recent call last):
    ...
    medvqa._errors.DataFormatError: f.csv, line 4, field 'options': not a literal dict or list of options ...
    """
    try:
        value: Any = json.loads(raw)
    except ValueError:
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError) as exc:
            raise DataFormatError(
                f"not a literal dict or list of options ({type(exc).__name__}: {exc})",
                file=file,
                row=row,
                field="options",
            ) from None
    if isinstance(value, list):
        value = {str(i): v for i, v in enumerate(value)}
    if not isinstance(value, dict) or not value:
        raise DataFormatError(
            f"expected a non-empty dict or list of options, got {type(value).__name__}",
            file=file,
            row=row,
            field="options",
        )
    out: dict[str, str] = {}
    for key, text in value.items():
        if not isinstance(text, str | int | float) or isinstance(text, bool):
            raise DataFormatError(
                f"option {key!r} is not text: {text!r}", file=file, row=row, field="options"
            )
        out[str(key)] = str(text)
    return out


def options_from_metadata(
    metadata: Mapping[str, Any], *, row: RowRef | str, file: str | None = None
) -> list[tuple[str, str]] | None:
    """The ``(key, text)`` options that a Med-HALT sample or prediction carries in its metadata.

    This is the one reader of the fields :func:`load_med_halt` writes: ``options`` is a JSON
    list of option texts whose keys are in ``option_keys`` (a JSON list of the same length;
    without it the keys are ``0``, ``1``, ...), or a JSON object ``{key: text}``. Already
    decoded lists and dicts are accepted too. Nothing is dropped: keys and texts must pair up
    one to one.

    Args:
        metadata: The sample's or prediction's metadata.
        row: Where the record is, for error messages (``RowRef.line(3)`` or ``"sample 'x'"``).
        file: The file the record came from, if known.

    Returns:
        The options in their order, or ``None`` when ``options`` is absent or empty.

    Raises:
        DataFormatError: ``options`` or ``option_keys`` is not valid JSON, has the wrong
            type, or the two lists differ in length (the message names file, row and field).

    >>> options_from_metadata({"options": '["Zeus", "I do not know"]', "option_keys": '["4", "5"]'},
    ...                       row="sample 'q1'")
    [('4', 'Zeus'), ('5', 'I do not know')]
    >>> options_from_metadata({"options": '["a", "b"]', "option_keys": '["0"]'}, row="sample 'q1'")
    Traceback (most recent call last):
    ...
    medvqa._errors.DataFormatError: sample 'q1', field 'option_keys': has 1 keys for 2 options; ...
    """
    raw = metadata.get("options")
    if raw is None or raw == "":
        return None
    parsed = _json_field(raw, "options", row=row, file=file)
    if isinstance(parsed, Mapping):
        return [(str(k), _option_text(k, v, row=row, file=file)) for k, v in parsed.items()]
    if not isinstance(parsed, list):
        raise DataFormatError(
            f"expected a JSON list or object of options, got {type(parsed).__name__}",
            file=file,
            row=row,
            field="options",
        )
    keys: list[object] = list(range(len(parsed)))
    raw_keys = metadata.get("option_keys")
    if raw_keys is not None and raw_keys != "":
        loaded = _json_field(raw_keys, "option_keys", row=row, file=file)
        if not isinstance(loaded, list) or len(loaded) != len(parsed):
            got = f"has {len(loaded)} keys" if isinstance(loaded, list) else f"is a {type(loaded).__name__}"
            raise DataFormatError(
                f"{got} for {len(parsed)} options; it must be a JSON list with one key per option",
                file=file,
                row=row,
                field="option_keys",
            )
        keys = loaded
    return [(str(k), _option_text(k, v, row=row, file=file)) for k, v in zip(keys, parsed, strict=True)]


def _json_field(raw: object, name: str, *, row: RowRef | str, file: str | None) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"not valid JSON ({exc})", file=file, row=row, field=name) from None


def _option_text(key: object, text: object, *, row: RowRef | str, file: str | None) -> str:
    if not isinstance(text, str | int | float) or isinstance(text, bool):
        raise DataFormatError(f"option {key!r} is not text: {text!r}", file=file, row=row, field="options")
    return str(text)


def abstain_option(options: dict[str, str]) -> tuple[str, str]:
    """The key of the abstaining option and the rule that found it.

    >>> abstain_option({"0": "A drug", "1": "The answer is 'I do not know'", "2": "I do not know."})
    ('2', 'exact')
    >>> abstain_option({"0": "A drug", "1": "None of the above"})
    ('1', 'last_option')
    """
    norm = {k: " ".join(v.casefold().split()).rstrip(".!?,;: ") for k, v in options.items()}
    exact = [k for k, v in norm.items() if v in _EXACT]
    if exact:
        return exact[-1], "exact"
    contains = [k for k, v in norm.items() if _CONTAINS.search(v)]
    if contains:
        return contains[-1], "contains"
    return list(options)[-1], "last_option"


def _sample(
    rid: str,
    question: str,
    answer: str,
    options: dict[str, str],
    key: str,
    rule: str,
    row: dict[str, str],
    split: str,
) -> VQASample:
    meta: dict[str, MetadataValue] = {
        "options": json.dumps(list(options.values()), ensure_ascii=False),
        "option_keys": json.dumps(list(options), ensure_ascii=False),
        "abstain_option": key,
        "abstain_rule": rule,
        "layout": "official",
    }
    for col in ("subject_name", "topic_name", "dataset", "exam_name", "year"):
        if row.get(col):
            meta["source_dataset" if col == "dataset" else col] = row[col]
    return VQASample(
        id=f"med_halt:{rid}",
        question=question,
        answer=answer.strip(),
        answer_type="open",
        answer_type_source="inferred",
        dataset="med_halt",
        split=split,
        metadata=meta,
    )


def _release_csv(source: Any) -> Path:
    """The release CSV: ``source`` itself or ``reasoning_fake.csv`` inside the folder ``source``."""
    if not isinstance(source, str | os.PathLike):
        raise ValueError(
            f"med_halt reads the release CSV ({FILE}) or a folder holding it, got a {type(source).__name__}"
        )
    path = Path(source)
    if path.is_dir():
        path = path / FILE
    if not path.is_file():
        raise DataFormatError(
            f"file not found (expected the Med-HALT {FILE} or a folder holding it)", file=str(path)
        )
    return path


def _check_columns(header: list[str], *, file: str) -> None:
    """Raise :class:`DataFormatError` naming the first required column the header lacks."""
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataFormatError(
            f"missing column(s) {', '.join(missing)}; columns present: {', '.join(header) or 'none'} "
            f"(required: {', '.join(REQUIRED)})",
            file=file,
            field=missing[0],
        )


def _row_split(row: Mapping[str, str], *, file: str, where: RowRef) -> str:
    """The row's split from ``split_type`` (an empty cell means ``test``)."""
    raw_split = (row.get("split_type") or "").strip()
    row_split = split_of(raw_split) if raw_split else "test"
    if row_split is None:
        raise DataFormatError(
            f"unknown split_type {raw_split!r}; expected train, validation or test",
            file=file,
            row=where,
            field="split_type",
        )
    return row_split


def _no_split_error(file: str, split: str, splits_seen: Counter[str]) -> SplitNotFoundError:
    """The error for a file without rows in ``split``, listing the splits it has."""
    return SplitNotFoundError(
        f"{file}: no rows in split {split!r}; splits present (split_type column): "
        f"{', '.join(f'{k} ({v})' for k, v in sorted(splits_seen.items())) or 'none'}"
    )


def load_med_halt(
    source: Any,
    *,
    split: str = "train",
    on_empty_answer: str = "error",
) -> VQADataset:
    """Load Med-HALT ``reasoning_fake`` rows of one split (see :func:`medvqa.data.load`)."""
    check_split(split, dataset="med_halt")
    check = ImageCheck("error", dataset="med_halt", on_empty_answer=on_empty_answer)
    path = _release_csv(source)
    file = str(path)
    out: list[VQASample] = []
    rules: Counter[str] = Counter()
    splits_seen: Counter[str] = Counter()
    ids = UniqueIds()
    header, rows = read_csv_rows(path)
    _check_columns(header, file=file)
    for where, row in rows:
        row_split = _row_split(row, file=file, where=where)
        splits_seen[row_split] += 1
        rid = text_field(row, "id", file=file, index=where)
        ids.add(f"med_halt:{rid}", file=file, row=where, field="id")
        if row_split != split:
            continue
        question = text_field(row, "question", file=file, index=where)
        options = parse_options(row["options"], file=file, row=where)
        key, rule = abstain_option(options)
        answer = check.answer({"options": options[key]}, "options", file=file, index=where)
        if answer is None:
            continue
        rules[rule] += 1
        out.append(_sample(rid, question, answer, options, key, rule, row, split))
    if not out and not check.skipped:
        raise _no_split_error(file, split, splits_seen)
    notes = [f"abstaining option found by rule {r}: {n}" for r, n in sorted(rules.items())]
    return VQADataset(
        out,
        name="med_halt",
        split=split,
        layout="official",
        source=file,
        skipped_rows=check.skipped,
        notes=notes,
    )


__all__ = ["abstain_option", "load_med_halt", "options_from_metadata", "parse_options"]
