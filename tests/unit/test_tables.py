"""The one table module: escaping, missing values, alignment, and every report using it."""

from __future__ import annotations

import math

import pytest

from medvqa._tables import MISSING, cell, interval, markdown_table, number, plain_table


def _cells(line: str) -> list[str]:
    """Split a Markdown row on unescaped pipes (what a Markdown renderer does)."""
    parts, current, i = [], "", 0
    body = line.strip()[1:-1]
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body) and body[i + 1] == "|":
            current += "\\|"
            i += 2
            continue
        if body[i] == "|":
            parts.append(current.strip())
            current = ""
        else:
            current += body[i]
        i += 1
    parts.append(current.strip())
    return parts


def test_pipes_and_newlines_never_split_a_row() -> None:
    text = markdown_table(["a", "b|c"], [["x | y\nz", "|"], [None, "ok"]])
    lines = text.splitlines()
    assert len(lines) == 4
    assert all(len(_cells(line)) == 2 for line in lines if not line.startswith("|-"))
    assert _cells(lines[2]) == ["x \\| y z", "\\|"]


def test_missing_values_are_one_mark_and_empty_text_stays_empty() -> None:
    assert cell(None) == cell(math.nan) == number(None) == number(math.nan) == MISSING
    assert cell("") == ""
    assert interval(None, 1.0) == interval(0.0, None) == ""
    row = markdown_table(["x", "y", "z"], [[None, math.nan, ""]]).splitlines()[2]
    assert _cells(row) == [MISSING, MISSING, ""]
    assert plain_table(["x"], [[None]]).splitlines()[2] == MISSING


def test_alignment_rules_and_padding() -> None:
    text = markdown_table(["l", "r", "c"], [[1, 2, 3]], align=["left", "right", "center"])
    assert text.splitlines()[1] == "|---|---:|:---:|"
    plain = plain_table(["name", "n"], [["a", 5], ["bbbbbb", 12]], align=["left", "right"]).splitlines()
    assert plain[2] == "a        5" and plain[3] == "bbbbbb  12"
    with pytest.raises(ValueError, match="align has 1 entries for 2 columns"):
        markdown_table(["a", "b"], [], align=["left"])
    with pytest.raises(ValueError, match="table row 0 has 1 cells for 2 columns"):
        markdown_table(["a", "b"], [["x"]])


def test_numbers_and_truncation() -> None:
    assert cell(0.123456, digits=2) == "0.12" and cell(3, digits=2) == "3"
    assert number(2) == "2" and number(0.5, 1) == "0.5"
    assert cell("x" * 10, limit=5) == "xxxx\u2026"


def test_two_reports_show_a_missing_value_the_same_way() -> None:
    """A results table and an ablation report both show a missing number as MISSING."""
    from medvqa.ablations import AblationReport, RelianceResult
    from medvqa.ablations.reliance import MetricDifference
    from medvqa.metrics import Aggregate
    from medvqa.reports import ResultsTable

    agg = Aggregate("accuracy", "all", 0.5, 1.0, 2, 0.1, 0.9, item_metric="accuracy", key="accuracy")
    table = ResultsTable(
        columns=("accuracy", "f1"), headers=("accuracy", "f1"), rows=(("run", (agg, None)),)
    ).to_markdown()
    assert _cells(table.splitlines()[2])[-1] == MISSING

    diff = MetricDifference("accuracy/open", "open", 0, None, None, None, None, None)
    reliance = RelianceResult("swap", "swap_images(seed=0)", "strict", 0, 0, 0, (diff,), {"all": (0, 0)})
    report = AblationReport("t", "strict", 0, reliance=(reliance,)).to_markdown()
    row = next(line for line in report.splitlines() if line.startswith("| swap | accuracy/open"))
    assert _cells(row)[3:6] == [MISSING, MISSING, MISSING]
    assert _cells(row)[6] == MISSING  # no McNemar p-value


def test_sweep_and_score_tables_use_the_same_missing_mark() -> None:
    from medvqa._commands.score import _render
    from medvqa.training._sweep import _table_markdown

    sweep = _table_markdown(
        [{"stage1_size": 0, "stage1_steps": None, "n": 4, "accuracy": None}], ["accuracy"]
    )
    assert _cells(sweep.splitlines()[2]) == ["0", MISSING, MISSING, "4", MISSING]
    score = _render(["file", "x|y"], [["a|b.jsonl", MISSING]], markdown=True)
    assert _cells(score.splitlines()[0]) == ["file", "x\\|y"]
    assert _cells(score.splitlines()[2]) == ["a\\|b.jsonl", MISSING]
