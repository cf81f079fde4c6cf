"""Loss-curve and sweep plots: the data they show, and the files they write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvqa.plots import loss_curve_data, plot_loss_curves, plot_sweep, sweep_plot_data

PNG = b"\x89PNG\r\n\x1a\n"


def test_stages_are_laid_end_to_end() -> None:
    data = loss_curve_data(
        {
            "stage1": [{"step": 5, "loss": 3.0}, {"step": 10, "loss": 2.0}, {"step": 10, "eval_loss": 2.5}],
            "stage2": [{"step": 5, "loss": 1.5}, {"step": 8, "loss": 1.0}],
        }
    )
    assert [s["x"] for s in data["series"]] == [[5, 10], [15, 18]]
    assert data["series"][1]["step"] == [5, 8]
    assert data["boundaries"] == [10]
    assert data["eval_series"] == [{"stage": "stage1", "x": [10], "step": [10], "eval_loss": [2.5]}]


def test_plot_loss_curves_writes_png_and_data(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    hist = {"stage1": [{"step": 1, "loss": 2.0}], "stage2": [{"step": 1, "loss": 1.0}]}
    png = plot_loss_curves(hist, tmp_path / "loss.png", title="t")
    assert png.read_bytes().startswith(PNG)
    saved = json.loads((tmp_path / "loss.json").read_text())
    assert saved["title"] == "t" and [s["x"] for s in saved["series"]] == [[1], [2]]
    plot_loss_curves({}, tmp_path / "empty.png", data_path=tmp_path / "elsewhere.json")
    assert (tmp_path / "elsewhere.json").is_file() and (tmp_path / "empty.png").is_file()


def test_sweep_data_is_sorted_by_size_and_keeps_intervals(tmp_path: Path) -> None:
    rows = [
        {"stage1_size": 7000, "m": 0.6, "m:ci_low": 0.5, "m:ci_high": 0.7},
        {"stage1_size": 0, "m": 0.5, "m:ci_low": 0.4, "m:ci_high": 0.6},
    ]
    data = sweep_plot_data(rows, metrics=["m"])
    assert data["sizes"] == [0, 7000]
    assert data["series"] == [
        {"metric": "m", "value": [0.5, 0.6], "ci_low": [0.4, 0.5], "ci_high": [0.6, 0.7]}
    ]
    pytest.importorskip("matplotlib")
    assert plot_sweep(rows, tmp_path / "sweep.png", metrics=["m"]).read_bytes().startswith(PNG)
    assert json.loads((tmp_path / "sweep.json").read_text())["sizes"] == [0, 7000]
