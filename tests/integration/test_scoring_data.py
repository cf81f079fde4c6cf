"""Scoring on the real releases in ../shared/data (skipped when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvqa.metrics import PROFILES, evaluate
from medvqa.records import Prediction, infer_answer_type

pytestmark = pytest.mark.data

TABLES = Path(__file__).resolve().parents[2] / "src" / "medvqa" / "metrics" / "_tables"


@pytest.mark.parametrize("name", ["vqav2_normalization.json", "slake_normalization.json"])
def test_packaged_tables_equal_the_specification(shared_data: Path, name: str) -> None:
    spec = shared_data.parent / "metrics" / name
    if not spec.is_file():
        pytest.skip(f"{spec} not found")
    assert json.loads((TABLES / name).read_text(encoding="utf-8")) == json.loads(
        spec.read_text(encoding="utf-8")
    )


def _pathvqa_pairs(shared_data: Path, limit: int) -> list[tuple[str, str]]:
    path = shared_data / "pathvqa" / "official_qa" / "pvqa_test.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    pairs = []
    for record in json.loads(path.read_text(encoding="utf-8")):
        for question, label in zip(record["sentf"]["pvqa"], record["labelf"]["pvqa"]):
            pairs.append((question, next(iter(label))))
    return pairs[:limit]


def test_reference_answers_score_perfectly_where_the_rule_allows(shared_data: Path) -> None:
    pairs = _pathvqa_pairs(shared_data, 400)
    preds = [Prediction(f"pvqa:{i}", q, a, a, infer_answer_type(a)) for i, (q, a) in enumerate(pairs)]
    results = {name: evaluate(preds, profile=name, n_boot=0) for name in PROFILES}
    # The paper strips the prediction but not the truth: PathVQA answers with surrounding
    # spaces (" region of epiphysis") are not "contained" in themselves.
    padded = sum(a != a.strip() for _, a in pairs)
    assert padded > 0
    assert results["paper"]["containment"].numerator == 400 - padded
    assert results["paper"]["containment"].n == 400
    assert results["paper"]["bleu1"].value == 1.0
    assert results["lmms_eval"]["accuracy"].value == 1.0
    assert results["strict"]["accuracy"].value == 1.0
    assert results["llava_med"]["accuracy/closed"].value == 1.0
    assert results["multimedeval"]["closedQuestionsAccuracy"].value == 1.0
    closed = results["strict"]["accuracy/closed"].n
    assert closed + results["strict"]["accuracy/open"].n == 400 and closed > 0


def test_yes_for_everything_scores_the_closed_yes_share(shared_data: Path) -> None:
    pairs = _pathvqa_pairs(shared_data, 400)
    preds = [Prediction(f"pvqa:{i}", q, a, "Yes.", infer_answer_type(a)) for i, (q, a) in enumerate(pairs)]
    yes_share = sum(a.lower() == "yes" for _, a in pairs) / 400
    r = evaluate(preds, profile="strict", n_boot=200)
    assert r["accuracy"].value == pytest.approx(yes_share)
    assert r["accuracy"].ci_low is not None and r["accuracy"].ci_low < yes_share < r["accuracy"].ci_high
    assert evaluate(preds, profile="paper", n_boot=0)["containment"].value >= yes_share
