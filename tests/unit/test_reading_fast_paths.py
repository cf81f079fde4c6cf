"""Fast paths of reading and scoring: the collector is paused and restored, read rows are ordinary predictions."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from medvqa._errors import DataFormatError
from medvqa._gc import paused_gc
from medvqa.metrics import evaluate, read_predictions
from medvqa.records import Prediction


@pytest.fixture(autouse=True)
def _collector_on() -> object:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_paused_gc_restores_the_collector_after_an_error() -> None:
    inside: list[bool] = []

    def fail() -> None:
        with paused_gc():
            inside.append(gc.isenabled())
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail()
    assert inside == [False]
    assert gc.isenabled()


def test_paused_gc_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    with paused_gc(), paused_gc():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_reading_and_scoring_leave_the_collector_enabled(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    rows = [{"id": str(i), "reference": "no", "prediction": "No.", "answer_type": "closed"} for i in range(3)]
    good.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    preds = read_predictions(good)
    assert gc.isenabled()
    evaluate(preds, profile=["all"], n_boot=10)
    assert gc.isenabled()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "reference": "no", "prediction": "x"}\n{"id": "1"\n', encoding="utf-8")
    with pytest.raises(DataFormatError):
        read_predictions(bad)
    assert gc.isenabled()
    with pytest.raises(ValueError):
        evaluate([Prediction("1", "q", "", "x", "open")], profile="strict")
    assert gc.isenabled()


def test_predictions_read_from_a_file_are_ordinary_frozen_predictions(tmp_path: Path) -> None:
    import dataclasses
    from types import MappingProxyType

    path = tmp_path / "p.jsonl"
    row = {
        "id": "a",
        "question": "q?",
        "reference": "no",
        "prediction": "No.",
        "answer_type": "closed",
        "organ": "lung",
    }
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    [read] = read_predictions(path)
    made = Prediction("a", "q?", "no", "No.", "closed", metadata=MappingProxyType({"organ": "lung"}))
    assert vars(read).keys() == {f.name for f in dataclasses.fields(Prediction)}
    assert read == made
    with pytest.raises(dataclasses.FrozenInstanceError):
        read.reference = "yes"  # type: ignore[misc]
