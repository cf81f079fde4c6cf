"""``medvqa score`` and ``medvqa report`` say so when runs are incomplete or not comparable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvqa._io import atomic_write_jsonl
from medvqa.cli import main
from medvqa.records import Prediction


def _preds(path: Path, n: int, *, start: int = 0) -> Path:
    refs = ["yes", "no", "liver"]
    atomic_write_jsonl(
        path,
        [
            Prediction(f"s{i}", "q", refs[i % 3], refs[i % 3], "open").to_dict()
            for i in range(start, start + n)
        ],
    )
    return path


def test_score_warns_when_the_file_is_shorter_than_its_run_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _preds(tmp_path / "run.jsonl", 17)
    (tmp_path / "run.run.json").write_text(json.dumps({"command": "predict", "n": 40}))
    assert main(["score", str(path), "--n-boot", "0"]) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "23 of 40 predictions are missing" in err and "run.run.json" in err


def test_score_is_quiet_when_the_run_is_complete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _preds(tmp_path / "run.jsonl", 5)
    (tmp_path / "run.run.json").write_text(json.dumps({"command": "predict", "n": 5}))
    assert main(["score", str(path), "--n-boot", "0"]) == 0
    assert "WARNING" not in capsys.readouterr().err


def test_report_warns_when_runs_hold_different_items(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _preds(tmp_path / "a.jsonl", 6)
    b = _preds(tmp_path / "b.jsonl", 5, start=1)
    assert main(["report", f"base={a}", f"tuned={b}", "--n-boot", "0"]) == 0
    err = capsys.readouterr().err
    assert "WARNING: the runs do not hold the same items: base has 6, tuned has 5" in err
    assert "1 of base's missing" in err


def test_report_is_quiet_when_runs_hold_the_same_items(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _preds(tmp_path / "a.jsonl", 4)
    b = _preds(tmp_path / "b.jsonl", 4)
    assert main(["report", f"base={a}", f"tuned={b}", "--n-boot", "0"]) == 0
    assert "WARNING" not in capsys.readouterr().err


def test_report_compares_item_sets_when_a_run_comes_from_score_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _preds(tmp_path / "a.jsonl", 6)
    scores = tmp_path / "b.json"
    assert main(["score", str(_preds(tmp_path / "b.jsonl", 4)), "--profile", "paper", "--n-boot", "0",
                 "--format", "json", "-o", str(scores)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["report", f"base={a}", f"tuned={scores}", "--n-boot", "0"]) == 0
    assert "2 different sets: base (6 items); tuned (4 items)" in capsys.readouterr().err
