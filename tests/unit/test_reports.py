"""Results tables: Figure-2 layout in Markdown, CSV, JSON and LaTeX."""

from __future__ import annotations

import csv
import io
import json

import pytest

from medvqa.metrics import Aggregate, evaluate
from medvqa.records import Prediction
from medvqa.reports import PAPER_COLUMNS, ResultsTable, results_table


def _runs() -> dict[str, object]:
    base = [Prediction("1", "q", "no", "No.", "closed"), Prediction("2", "q", "liver", "the liver", "open")]
    tuned = [Prediction("1", "q", "no", "no", "closed"), Prediction("2", "q", "liver", "liver", "open")]
    return {
        "base": evaluate(base, profile="paper", n_boot=100),
        "two-stage": evaluate(tuned, profile="paper", n_boot=100),
    }


def test_default_columns_are_the_papers() -> None:
    t = results_table(_runs())  # type: ignore[arg-type]
    assert t.columns == tuple(PAPER_COLUMNS)
    assert [label for label, _ in t.rows] == ["base", "two-stage"]
    md = t.to_markdown().splitlines()
    assert md[0] == "| run | n | EM (containment) | F1 | BLEU-1 |"
    assert md[3].startswith("| two-stage | 2 | 1.000 [1.000, 1.000] | 1.000")


def test_csv_json_and_latex_carry_values_and_intervals() -> None:
    human = Aggregate("human", "all", 0.6275, 251.0, 400, 0.58, 0.67, key="human")
    t = results_table(_runs(), extra={"two-stage": {"human": human}}, title="VQA-RAD test")  # type: ignore[arg-type]
    rows = list(csv.reader(io.StringIO(t.to_csv())))
    assert rows[0][:5] == [
        "run",
        "EM (containment)",
        "EM (containment) ci_low",
        "EM (containment) ci_high",
        "EM (containment) n",
    ]
    assert rows[1][-4:] == ["", "", "", ""]  # base has no human column
    assert rows[2][-4:] == ["0.6275", "0.58", "0.67", "400"]
    data = json.loads(t.to_json())
    assert data["rows"][1]["values"]["human"]["denominator"] == 400
    assert data["rows"][0]["values"]["human"] is None
    latex = t.render("latex")
    assert "\\toprule" in latex and "two-stage & 1.000 [1.000, 1.000] (n=2) &" in latex  # own n per cell
    assert "$n$" not in latex  # denominators differ (2 and 400): no shared n column
    assert "0.627 [0.580, 0.670]" in latex


def test_latex_and_markdown_escape_labels() -> None:
    agg = Aggregate("f1", "all", 0.5, 1.0, 2)
    t = ResultsTable(columns=("f1",), headers=("F1_%",), rows=(("a|b_&", (agg,)),))
    assert "a\\|b_&" in t.to_markdown()
    assert "a|b\\_\\&" in t.to_latex() and "F1\\_\\%" in t.to_latex()


def test_errors() -> None:
    with pytest.raises(ValueError, match="at least one run"):
        results_table({})
    with pytest.raises(ValueError, match="no run has the column 'bleu4'"):
        results_table(_runs(), columns=["bleu4"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown format"):
        results_table(_runs()).render("html")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cells"):
        ResultsTable(columns=("a", "b"), headers=("a", "b"), rows=(("r", (None,)),))


def test_non_paper_profile_default_columns_skip_diagnostics() -> None:
    r = evaluate([Prediction("1", "q", "yes", "yes", "closed")], n_boot=0)
    t = results_table([("run", r)])
    assert "accuracy" in t.columns and "empty_predictions" not in t.columns
    assert "closed_undecided" not in t.columns
