"""Reading prediction files with configurable field names."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from medvqa._errors import DataFormatError, RowRef
from medvqa._gc import paused_gc
from medvqa._io import parse_jsonl, read_text
from medvqa.records import AnswerType, Prediction, _answer_text, infer_answer_type

__all__ = ["read_predictions"]

_KNOWN = ("question", "dataset", "split", "image", "extracted")


def _rows(path: Path) -> tuple[Literal["line", "record"], Iterable[tuple[int, Any]]]:
    """How rows are counted in the file (``line`` or ``record``) and its ``(number, row)`` pairs."""
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
        return "record", enumerate(data)
    return "line", parse_jsonl(text, file=str(path), hint="expected JSON Lines or one JSON list")


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
    reader = _RowReader(str(p), id_field, reference_field, prediction_field, answer_type_field)
    with paused_gc():  # many small acyclic objects (see medvqa._gc)
        kind, rows = _rows(p)
        return [reader.prediction(row, kind, number) for number, row in rows]


class _RowReader:
    """Turns the rows of one prediction file into predictions, remembering the ids seen."""

    def __init__(
        self, file: str, id_field: str, reference_field: str, prediction_field: str, type_field: str
    ) -> None:
        self.file = file
        self.id_field = id_field
        self.reference_field = reference_field
        self.prediction_field = prediction_field
        self.type_field = type_field
        self.skip = frozenset({id_field, reference_field, prediction_field, type_field, "metadata", *_KNOWN})
        self.seen: dict[str, int] = {}

    def _error(
        self, message: str, kind: Literal["line", "record"], number: int, field: str | None = None
    ) -> DataFormatError:
        return DataFormatError(message, file=self.file, row=RowRef(kind, number), field=field)

    def prediction(self, row: Any, kind: Literal["line", "record"], number: int) -> Prediction:
        """The prediction of one row (``number`` counted as ``kind`` says)."""
        if type(row) is not dict and not isinstance(row, Mapping):
            raise self._error(f"expected a JSON object, got {type(row).__name__}", kind, number)
        ref_field, pred_field = self.reference_field, self.prediction_field
        if ref_field not in row or pred_field not in row:
            name = ref_field if ref_field not in row else pred_field
            present = ", ".join(sorted(map(str, row))) or "none"
            option = "reference" if name == ref_field else "prediction"
            raise self._error(
                f"missing field (fields present: {present}); choose it with --{option}-field",
                kind,
                number,
                name,
            )
        raw_id = row.get(self.id_field)
        ident = raw_id if type(raw_id) is str else str(number) if raw_id is None else str(raw_id)
        reference = row[ref_field]
        if type(reference) is not str:
            reference = _answer_text(reference, file=self.file, row=RowRef(kind, number), field=ref_field)
        if not reference.strip():
            raise self._error(
                f"item {ident!r} has an empty reference answer; every item needs one", kind, number, ref_field
            )
        prediction = row[pred_field]
        if type(prediction) is not str:
            if isinstance(prediction, (dict, list)):
                message = f"prediction must be text, got {type(prediction).__name__}"
                raise self._error(message, kind, number, pred_field)
            prediction = _prediction_text(prediction)
        if ident in self.seen:
            first = RowRef(kind, self.seen[ident])
            message = f"duplicate id {ident!r} (first seen at {first}); ids must be unique"
            raise self._error(message, kind, number, self.id_field)
        self.seen[ident] = number
        meta = self._metadata(row)
        answer_type = self._answer_type(row, reference, meta, kind, number)
        return _make_prediction(ident, row, reference, prediction, answer_type, meta)

    def _metadata(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The row's ``metadata`` object, plus its other scalar fields."""
        meta: dict[str, Any] = {}
        nested = row.get("metadata")
        if type(nested) is dict or (nested is not None and isinstance(nested, Mapping)):
            meta.update(nested)
        if not self.skip.issuperset(row):
            for key, value in row.items():
                if key not in self.skip and (value is None or isinstance(value, (str, int, float, bool))):
                    meta.setdefault(str(key), value)
        return meta

    def _answer_type(
        self,
        row: Mapping[str, Any],
        reference: str,
        meta: dict[str, Any],
        kind: Literal["line", "record"],
        number: int,
    ) -> AnswerType:
        raw_type = row.get(self.type_field)
        if raw_type == "closed" or raw_type == "open":
            return "closed" if raw_type == "closed" else "open"
        if raw_type is None:
            meta["answer_type_source"] = "inferred"
            return infer_answer_type(reference)
        norm = str(raw_type).strip().lower()
        if norm not in ("closed", "open"):
            raise self._error(
                f"answer type must be 'closed' or 'open' (any case), got {raw_type!r}",
                kind,
                number,
                self.type_field,
            )
        return "closed" if norm == "closed" else "open"


def _make_prediction(
    ident: str,
    row: Mapping[str, Any],
    reference: str,
    prediction: str,
    answer_type: AnswerType,
    meta: dict[str, Any],
) -> Prediction:
    question = row.get("question")
    extracted = row.get("extracted")
    dataset = row.get("dataset")
    split = row.get("split")
    image = row.get("image")
    return Prediction(
        id=ident,
        question=question if type(question) is str else str(question or ""),
        reference=reference,
        prediction=prediction,
        answer_type=answer_type,
        extracted=None if extracted is None else str(extracted),
        dataset=dataset if type(dataset) is str else str(dataset or ""),
        split=split if type(split) is str else str(split or ""),
        image=None if image is None else str(image),
        metadata=MappingProxyType(meta),
    )
