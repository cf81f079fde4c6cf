"""What the scorer accepts as references and predictions: one rule, loaders and scorer alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from medvqa._errors import DataFormatError
from medvqa.cli import main
from medvqa.data._common import text_field
from medvqa.metrics import evaluate, read_predictions
from medvqa.records import Prediction


def _file(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "preds.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("value", ["NaN", "Infinity", "2.0", "true", "null", "[1]"])
def test_a_non_text_reference_is_an_error_naming_file_row_field(tmp_path: Path, value: str) -> None:
    path = _file(
        tmp_path,
        [
            '{"id": "a", "reference": "yes", "prediction": "yes"}',
            '{"id": "b", "reference": ' + value + ', "prediction": "nan"}',
        ],
    )
    with pytest.raises(
        DataFormatError, match=r"preds\.jsonl, line 2, field 'reference': answers must be text"
    ):
        read_predictions(path)


def test_an_integer_reference_is_read_as_its_digits(tmp_path: Path) -> None:
    path = _file(tmp_path, ['{"id": "a", "reference": 2, "prediction": "2"}'])
    [p] = read_predictions(path)
    assert p.reference == "2"
    assert evaluate([p], n_boot=0)["accuracy"].value == 1.0


def test_loaders_apply_the_same_rule() -> None:
    assert text_field({"answer": 2}, "answer", file="f.json", index=3) == "2"
    for bad in (2.0, float("nan"), float("inf")):
        with pytest.raises(DataFormatError, match=r"f\.json, row 3, field 'answer': answers must be text"):
            text_field({"answer": bad}, "answer", file="f.json", index=3)


def test_the_resume_reader_applies_the_same_rule() -> None:
    row = Prediction("a", "q", "yes", "yes", "closed").to_dict()
    row["reference"] = float("nan")
    with pytest.raises(DataFormatError, match=r"p\.jsonl, line 4, field 'reference'"):
        Prediction.from_dict(row, file="p.jsonl", line=4)


def test_a_nan_prediction_is_an_empty_prediction_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _file(
        tmp_path,
        [
            '{"id": "a", "reference": "nan", "prediction": NaN}',
            '{"id": "b", "reference": "yes", "prediction": "yes"}',
        ],
    )
    preds = read_predictions(path)
    assert preds[0].prediction == ""
    r = evaluate(preds, n_boot=0)
    assert r["empty_predictions"].numerator == 1
    assert r["accuracy"].numerator == 1  # "nan" vs NaN is not a match
    assert main(["score", str(path), "--n-boot", "0"]) == 0
    assert "1 of 2 predictions are empty" in capsys.readouterr().err


def test_evaluate_refuses_non_text_fields() -> None:
    bad = Prediction("a", "q", float("nan"), "nan", "open")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"item 'a' \(index 0\): reference must be text, got float nan"):
        evaluate([bad], n_boot=0)
