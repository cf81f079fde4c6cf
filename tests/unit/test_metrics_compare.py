"""Paired comparison: exact McNemar and bootstrap difference."""

from __future__ import annotations

import math

import pytest

from medvqa.metrics import mcnemar_exact, paired_comparison
from medvqa.records import Prediction


def test_mcnemar_exact_values() -> None:
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    # two-sided exact binomial: 2 * P(X <= 0), X ~ Bin(6, 1/2)
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(3, 10) == pytest.approx(2 * sum(math.comb(13, i) for i in range(4)) / 2**13)
    assert mcnemar_exact(10, 3) == mcnemar_exact(3, 10)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def _run(answers: list[str], refs: list[str]) -> list[Prediction]:
    return [Prediction(f"q{i}", "q", r, a, "closed") for i, (a, r) in enumerate(zip(answers, refs))]


def test_paired_comparison_counts_discordant_items_and_aligns_ids() -> None:
    refs = ["yes", "no"] * 10
    a = _run(["yes"] * 20, refs)  # right on the 10 'yes' items
    b = _run(refs[:16] + ["no"] * 4, refs)  # right on 18 items: wrong on the last two 'yes'
    c = paired_comparison(a, list(reversed(b)), metric="accuracy", n_boot=500, seed=0)
    assert c.n == 20
    assert c.value_a == 0.5 and c.value_b == 0.9
    assert c.difference == pytest.approx(0.4)
    # a is right only on the two last 'yes' items b answers 'no'; b alone is right on the 10 'no' items
    assert (c.only_a, c.only_b) == (2, 10)
    assert c.p_mcnemar == pytest.approx(2 * sum(math.comb(12, i) for i in range(3)) / 2**12)
    assert c.ci_low is not None and c.ci_high is not None and 0 < c.ci_low <= 0.4 <= c.ci_high
    assert c.p_bootstrap is not None and c.p_bootstrap < 0.05
    assert c.to_dict()["metric"] == "accuracy"


def test_paired_comparison_continuous_metric_has_no_mcnemar() -> None:
    refs = ["left lung"] * 5
    a = _run(["left"] * 5, refs)
    b = _run(["left lung"] * 5, refs)
    c = paired_comparison(a, b, profile="paper", metric="f1", n_boot=100)
    assert c.p_mcnemar is None and c.only_a is None
    assert c.difference == pytest.approx(1 - 2 / 3)


def test_paired_comparison_rejects_different_items_and_unknown_metric() -> None:
    a = _run(["yes", "no"], ["yes", "no"])
    b = [Prediction("other", "q", "yes", "yes", "closed"), a[1]]
    with pytest.raises(ValueError, match="same items"):
        paired_comparison(a, b)
    with pytest.raises(ValueError, match="no aggregate 'bleu9'"):
        paired_comparison(a, a, metric="bleu9")


def test_paired_comparison_refuses_runs_with_different_references() -> None:
    a = _run(["yes", "no", "liver"], ["yes", "no", "liver"])
    b = [a[0], Prediction(a[1].id, "q", "yes", "no", "closed"), a[2]]
    with pytest.raises(ValueError, match=r"different references for 1 of 3 items \('q1': A 'no', B 'yes'\)"):
        paired_comparison(a, b)
