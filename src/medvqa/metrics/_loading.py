"""Reading prediction files with configurable field names."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from medvqa._errors import DataFormatError, RowRef
from medvqa._io import parse_jsonl, read_text
from medvqa.records import Prediction, _answer_text, infer_answer_type

__all__ = ["read_predictions"]

_KNOWN = ("question", "dataset", "split", "image", "extracted")


def _rows(path: Path) -> Iterator[tuple[RowRef, Any]]:
    if path.is_dir():
        raise DataFormatError(
            "is a folder, not a prediction file (JSON Lines or one JSON list)", file=str(path)
        )
    text = read_text(path)
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DataFormatError(
                f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=str(path)
            ) from exc
        for index, row in enumerate(data):
            yield RowRef.record(index), row
        return
    for number, row in parse_jsonl(text, file=str(path), hint="expected JSON Lines or one JSON list"):
        yield RowRef.line(number), row


def _prediction_text(raw: Any) -> str:
    """``null``, NaN and infinities are empty predictions; other scalars are their text."""
    if raw is None or (isinstance(raw, float) and not math.isfinite(raw)):
        return ""
    return str(raw)


def read_predictions(
    path: str | os.PathLike[str],
    *,
    id_field: str = "id",
    reference_field: str = "reference",
    prediction_field: str = "prediction",
    answer_type_field: str = "answer_type",
) -> list[Prediction]:
    """Read a prediction file (JSON Lines, or one JSON list of objects).

    The default field names are those of the library's own prediction files
    (:meth:`medvqa.records.Prediction.to_dict`). The paper's result files read with
    ``reference_field="true_answer", prediction_field="predicted_answer"``.

    * A row without the id field gets its position as id (``"0"``, ``"1"``, ... for a JSON
      list; the 1-based line number for JSON Lines).
    * A row without the answer-type field gets :func:`medvqa.records.infer_answer_type` of
      its reference and ``metadata["answer_type_source"] = "inferred"`` (profiles then apply
      their own closed rule). Values are matched case-insensitively after stripping
      (``"CLOSED "`` is closed).
    * A reference must be text; an integer (``2``, as some releases write numeric answers)
      is read as its digits, the same rule the dataset loaders apply. Floats (``2.0``,
      ``NaN``, ``Infinity``), booleans and ``null`` are errors: turned into text they would
      be scored as ``"2.0"`` or ``"nan"``.
    * A ``null``, ``NaN`` or infinite prediction is read as an empty prediction (scored as
      wrong, and counted in ``empty_predictions``).
    * Other scalar fields are kept in ``metadata`` (with any ``metadata`` object).

    Raises:
        DataFormatError: Names the file, row and field: a missing reference or prediction
            field, an empty or non-text reference, an unknown answer type, a duplicate id, a row that is
            not an object.

    >>> import json, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "paper.json")
    >>> rows = [{"question": "Is it normal?", "true_answer": "Yes", "predicted_answer": "yes."}]
    >>> _ = open(path, "w").write(json.dumps(rows))
    >>> [p] = read_predictions(path, reference_field="true_answer", prediction_field="predicted_answer")
    >>> p.id, p.answer_type, p.metadata["answer_type_source"]
    ('0', 'closed', 'inferred')
    """
    p = Path(path)
    file = str(p)
    out: list[Prediction] = []
    seen: dict[str, RowRef] = {}
    skip = {id_field, reference_field, prediction_field, answer_type_field, "metadata", *_KNOWN}
    for row_no, row in _rows(p):
        if type(row) is not dict and not isinstance(row, Mapping):
            raise DataFormatError(f"expected a JSON object, got {type(row).__name__}", file=file, row=row_no)
        if reference_field not in row or prediction_field not in row:
            name = reference_field if reference_field not in row else prediction_field
            present = ", ".join(sorted(map(str, row))) or "none"
            raise DataFormatError(
                f"missing field (fields present: {present}); choose it with "
                f"--{'reference' if name == reference_field else 'prediction'}-field",
                file=file,
                row=row_no,
                field=name,
            )
        raw_id = row.get(id_field)
        ident = raw_id if type(raw_id) is str else str(row_no.number) if raw_id is None else str(raw_id)
        reference = row[reference_field]
        if type(reference) is not str:
            reference = _answer_text(reference, file=file, row=row_no, field=reference_field)
        if not reference.strip():
            raise DataFormatError(
                f"item {ident!r} has an empty reference answer; every item needs one",
                file=file,
                row=row_no,
                field=reference_field,
            )
        raw_pred = row[prediction_field]
        if type(raw_pred) is str:
            prediction = raw_pred
        elif isinstance(raw_pred, (dict, list)):
            raise DataFormatError(
                f"prediction must be text, got {type(raw_pred).__name__}",
                file=file,
                row=row_no,
                field=prediction_field,
            )
        else:
            prediction = _prediction_text(raw_pred)
        if ident in seen:
            raise DataFormatError(
                f"duplicate id {ident!r} (first seen at {seen[ident]}); ids must be unique",
                file=file,
                row=row_no,
                field=id_field,
            )
        seen[ident] = row_no
        meta: dict[str, Any] = {}
        nested = row.get("metadata")
        if isinstance(nested, Mapping):
            meta.update(nested)
        if not skip.issuperset(row):
            for key, value in row.items():
                if key not in skip and (value is None or isinstance(value, (str, int, float, bool))):
                    meta.setdefault(str(key), value)
        raw_type = row.get(answer_type_field)
        if raw_type is None:
            answer_type = infer_answer_type(reference)
            meta["answer_type_source"] = "inferred"
        else:
            norm = str(raw_type).strip().lower()
            if norm not in ("closed", "open"):
                raise DataFormatError(
                    f"answer type must be 'closed' or 'open' (any case), got {raw_type!r}",
                    file=file,
                    row=row_no,
                    field=answer_type_field,
                )
            answer_type = "closed" if norm == "closed" else "open"
        extracted = row.get("extracted")
        out.append(
            Prediction(
                id=ident,
                question=str(row.get("question", "") or ""),
                reference=reference,
                prediction=prediction,
                answer_type=answer_type,
                extracted=None if extracted is None else str(extracted),
                dataset=str(row.get("dataset", "") or ""),
                split=str(row.get("split", "") or ""),
                image=None if row.get("image") is None else str(row["image"]),
                metadata=MappingProxyType(meta),
            )
        )
    return out
