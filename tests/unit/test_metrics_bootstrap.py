"""The per-column bootstrap interval: same law as resampling items, streams named per column."""

from __future__ import annotations

import numpy as np

from medvqa.metrics import bootstrap_means, evaluate, percentile_interval
from medvqa.metrics._aggregate import bootstrap_mean_interval
from medvqa.records import Prediction


def test_class_counts_and_item_resampling_agree_on_a_large_column() -> None:
    rng = np.random.default_rng(5)
    values = (rng.random(4000) < 0.3).astype(float)  # two distinct values: class counts
    lo, hi = bootstrap_mean_interval(values, n_boot=4000, seed=1, label="x")
    ref_lo, ref_hi = percentile_interval(bootstrap_means(values, n_boot=4000, seed=2)[:, 0])
    assert abs(lo - ref_lo) < 0.004 and abs(hi - ref_hi) < 0.004
    mean = values.mean()
    assert lo < mean < hi


def test_interval_is_seeded_and_order_free() -> None:
    values = [1.0, 0.0, 0.5] * 40
    a = bootstrap_mean_interval(values, n_boot=300, seed=3, label="s")
    assert a == bootstrap_mean_interval(sorted(values), n_boot=300, seed=3, label="s")
    assert a != bootstrap_mean_interval(values, n_boot=300, seed=4, label="s")


def test_an_interval_does_not_depend_on_the_breakdowns_asked_for() -> None:
    preds = [
        Prediction(
            f"q{i}",
            "q",
            "yes" if i % 3 else "no",
            "yes",
            "closed",
            metadata={"modality": "CT" if i % 2 else "MR"},
        )
        for i in range(90)
    ]
    plain = evaluate(preds, n_boot=400, seed=0)["accuracy"]
    broken_down = evaluate(preds, n_boot=400, seed=0, by=["modality"])["accuracy"]
    assert (plain.ci_low, plain.ci_high) == (broken_down.ci_low, broken_down.ci_high)
