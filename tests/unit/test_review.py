"""Human evaluation sheets: export, import with located errors, accuracy and kappa."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from medvqa._errors import DataFormatError
from medvqa.metrics import evaluate
from medvqa.records import Prediction
from medvqa.review import (
    REVIEW_COLUMNS,
    ReviewItem,
    cohen_kappa,
    export_review_sheet,
    human_evaluation,
    read_review_sheet,
)

PREDS = [
    Prediction("a", "Is it normal?", "yes", "Yes.", "closed", image="img/1.jpg"),
    Prediction("b", "Which organ, exactly?", "liver", "the spleen", "open"),
    Prediction("c", "Any fracture?", "no", "no", "closed"),
]


def _fill(path: Path, values: list[str]) -> None:
    rows = list(csv.reader(path.open(encoding="utf-8")))
    for row, value in zip(rows[1:], values):
        row[5] = value
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)


def test_export_writes_the_review_columns(tmp_path: Path) -> None:
    path = export_review_sheet(PREDS, tmp_path / "sheet.csv")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert tuple(rows[0]) == REVIEW_COLUMNS
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["image"] == "img/1.jpg" and rows[1]["question"] == "Which organ, exactly?"
    assert rows[1]["truth"] == "liver" and rows[1]["prediction"] == "the spleen"
    assert all(r["correct"] == "" and r["justification"] == "" for r in rows)


def test_shuffled_export_is_seeded(tmp_path: Path) -> None:
    ids = []
    for name in ("x.csv", "y.csv"):
        path = export_review_sheet(
            PREDS * 1 + [Prediction(str(i), "q", "yes", "yes", "closed") for i in range(20)],
            tmp_path / name,
            shuffle_seed=7,
        )
        ids.append([r["id"] for r in csv.DictReader(path.open(encoding="utf-8"))])
    assert ids[0] == ids[1]
    assert ids[0] != ["a", "b", "c", *map(str, range(20))]


def test_round_trip_and_agreement(tmp_path: Path) -> None:
    path = export_review_sheet(PREDS, tmp_path / "sheet.csv")
    _fill(path, ["Yes", "0", " correct "])
    items = read_review_sheet(path)
    assert [(i.id, i.correct, i.row) for i in items] == [("a", True, 2), ("b", False, 3), ("c", True, 4)]
    h = human_evaluation(items, [evaluate(PREDS, profile="paper", n_boot=0), evaluate(PREDS, n_boot=0)])
    assert h.accuracy.value == pytest.approx(2 / 3) and h.accuracy.n == 3
    assert h.accuracy.ci_low is not None and h.accuracy.ci_low < 2 / 3 < h.accuracy.ci_high
    assert h.agreements["paper:containment"].kappa == 1.0
    assert h.agreements["strict:accuracy"].observed == 1.0
    assert "strict:closed_undecided" not in h.agreements
    assert h.to_dict()["agreements"]["paper:f1"]["n"] == 3


def test_bad_value_names_row_and_field(tmp_path: Path) -> None:
    path = export_review_sheet(PREDS, tmp_path / "sheet.csv")
    _fill(path, ["1", "maybe", "0"])
    with pytest.raises(DataFormatError, match=r"line 3, field 'correct': bad value 'maybe'"):
        read_review_sheet(path)


def test_empty_cells_need_allow_incomplete(tmp_path: Path) -> None:
    path = export_review_sheet(PREDS, tmp_path / "sheet.csv")
    _fill(path, ["1", "", "0"])
    with pytest.raises(DataFormatError, match=r"line 3, field 'correct': not reviewed"):
        read_review_sheet(path)
    items = read_review_sheet(path, require_complete=False)
    h = human_evaluation(items)
    assert (h.reviewed, h.unreviewed, h.accuracy.value) == (2, 1, 0.5)


def test_missing_column_and_duplicate_ids(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,verdict\na,1\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="field 'correct'"):
        read_review_sheet(bad)
    dup = tmp_path / "dup.csv"
    dup.write_text("id,correct\na,1\na,0\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="line 3, field 'id': duplicate id 'a'"):
        read_review_sheet(dup)
    with pytest.raises(DataFormatError, match="file not found"):
        read_review_sheet(tmp_path / "none.csv")


def test_reviewed_id_missing_from_results() -> None:
    with pytest.raises(ValueError, match="not in the 'strict' results"):
        human_evaluation([ReviewItem("zzz", True)], evaluate(PREDS, n_boot=0))


def test_cohen_kappa() -> None:
    assert cohen_kappa([True, False, True, False], [True, False, True, False]) == 1.0
    assert cohen_kappa([True, False], [False, True]) == -1.0
    assert math.isnan(cohen_kappa([True, True], [True, True]))
    assert math.isnan(cohen_kappa([], []))
    with pytest.raises(ValueError):
        cohen_kappa([True], [])
