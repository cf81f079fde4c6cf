"""The local judge end to end with a tiny random causal LM built offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from medvqa.judge import LocalJudge, judge_predictions, judge_report, judged_profile
from medvqa.metrics import evaluate
from medvqa.models._tiny_judge import save_tiny_judge
from medvqa.records import Prediction

PREDS = [
    Prediction("c", "Is it normal?", "no", "No.", "closed", dataset="vqa_rad"),
    Prediction("o1", "Which organ?", "liver", "The liver", "open", dataset="vqa_rad"),
    Prediction("o2", "Which side?", "left", "right", "open", dataset="vqa_rad"),
]


def test_tiny_local_judge_is_greedy_cached_and_reported(tmp_path: Path) -> None:
    folder = save_tiny_judge(tmp_path / "judge", seed=0)
    cache = tmp_path / "verdicts.jsonl"
    judge = LocalJudge(folder, max_new_tokens=6, device="cpu", batch_size=2)
    first = judge_predictions(PREDS, judge, cache=cache)
    assert [v.id for v in first] == ["o1", "o2"]
    assert judge.revision.startswith("local-")  # a digest of the folder's config and weights
    records = [json.loads(line) for line in cache.read_text(encoding="utf-8").splitlines()]
    assert [r["judge_model"] for r in records] == [str(folder)] * 2
    assert "The standard answer: liver" in records[0]["prompt"][0]["content"]
    # greedy: a fresh judge without cache gives the same replies
    fresh = judge_predictions(PREDS, LocalJudge(folder, max_new_tokens=6, device="cpu"), cache=None)
    assert [v.reply for v in fresh] == [v.reply for v in first]
    # rerun from the cache: nothing generated
    lazy = LocalJudge(folder, max_new_tokens=6, device="cpu")
    again = judge_predictions(PREDS, lazy, cache=cache)
    assert all(v.cached for v in again)
    assert lazy._model is None  # served from the cache without loading the model
    # random weights: whatever it says is parsed, unparseable replies are counted, not guessed
    result = evaluate(PREDS, profile=judged_profile(again), n_boot=0)
    unparseable = sum(v.verdict is None for v in again)
    assert result["judge_unparseable"].numerator == unparseable
    report = judge_report(PREDS, again)
    assert len(report.unparseable) == unparseable
    assert report.judged_accuracy.n == 2 - unparseable


def test_demo_judged_column_with_the_tiny_judge(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from medvqa._demo_steps import DemoRun, judge_rows
    from medvqa.pipeline import DemoConfig, _judged_markdown

    cfg = DemoConfig(output_dir=str(tmp_path))
    evals = {"base": SimpleNamespace(predictions=PREDS), "two-stage": SimpleNamespace(predictions=PREDS[1:])}
    rows = judge_rows(DemoRun(cfg, tmp_path, lambda msg: None, False), evals, ["base", "two-stage"])
    assert list(rows) == ["base", "two-stage"]
    base = rows["base"]
    assert base["rules"]["denominator"] == base["judged"]["denominator"] == 3
    assert base["judge_on_open"]["denominator"] + base["unparseable"] == 2
    assert (tmp_path / "judge_cache.jsonl").read_text().count("\n") == 2  # both rows share the verdicts
    md = _judged_markdown(cfg, rows)
    assert "| base |" in md and "random weights" in md
    assert (
        judge_rows(
            DemoRun(DemoConfig(output_dir=str(tmp_path), judge="none"), tmp_path, print, False),
            evals,
            ["base"],
        )
        == {}
    )
