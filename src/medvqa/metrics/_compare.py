"""Paired comparison of two runs on the same items."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medvqa.metrics._aggregate import bootstrap_means, percentile_interval
from medvqa.metrics._profiles import Profile, _in_subset, evaluate, get_profile
from medvqa.records import Prediction

__all__ = ["PairedComparison", "mcnemar_exact", "paired_comparison"]


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    ``b`` items are right only in run A, ``c`` only in run B; under the null hypothesis
    each discordant item is equally likely to go either way (binomial, p = 1/2).

    >>> mcnemar_exact(0, 0), round(mcnemar_exact(2, 10), 4)
    (1.0, 0.0386)
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b} and {c}")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


@dataclass(frozen=True)
class PairedComparison:
    """Run B minus run A on one aggregate, over the items both runs share.

    Attributes:
        profile: Profile name.
        metric: Aggregate key compared (e.g. ``accuracy/closed``).
        n: Items in the compared subset.
        value_a: The aggregate for run A.
        value_b: The aggregate for run B.
        difference: ``value_b - value_a``.
        ci_low: Lower end of the paired bootstrap interval of the difference (``None``
            without bootstrap).
        ci_high: Upper end.
        p_bootstrap: Two-sided bootstrap p-value (twice the share of replicates on the
            other side of zero, at most 1), or ``None``.
        only_a: Items right in A and wrong in B (0/1 metrics only, else ``None``).
        only_b: Items right in B and wrong in A.
        p_mcnemar: Exact McNemar p-value (0/1 metrics only, else ``None``).
    """

    profile: str
    metric: str
    n: int
    value_a: float | None
    value_b: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_bootstrap: float | None
    only_a: int | None
    only_b: int | None
    p_mcnemar: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return dict(self.__dict__)


# Over 60 lines with its public docstring; the code is 42 lines.
def paired_comparison(
    a: Sequence[Prediction],
    b: Sequence[Prediction],
    *,
    profile: str | Profile = "strict",
    metric: str = "accuracy",
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
) -> PairedComparison:
    """Compare two runs on the same items: bootstrap difference and exact McNemar.

    Both runs must hold exactly the same ids (any order), with the same reference answer
    for each id. The subset of ``metric`` (e.g.
    the closed items of ``accuracy/closed``) is taken from run A's per-item values.

    Args:
        a: Run A's predictions.
        b: Run B's predictions (same ids).
        profile: Profile name or instance.
        metric: An aggregate key of that profile.
        seed: Bootstrap seed (draws over items sorted by id).
        n_boot: Bootstrap replicates (0: no interval or bootstrap p-value).
        level: Confidence level.

    Raises:
        ValueError: The id sets differ, an id has different references in the two runs,
            or ``metric`` is not an aggregate of the profile.

    >>> from medvqa.records import Prediction
    >>> ref = ["yes", "no", "yes", "no"]
    >>> a = [Prediction(str(i), "q", r, "yes", "closed") for i, r in enumerate(ref)]
    >>> b = [Prediction(str(i), "q", r, r, "closed") for i, r in enumerate(ref)]
    >>> c = paired_comparison(a, b, metric="accuracy", n_boot=0)
    >>> c.difference, c.only_b, c.p_mcnemar
    (0.5, 2, 0.5)
    """
    prof = get_profile(profile)
    ids_a = [p.id for p in a]
    b_aligned = _aligned(a, b)
    ra = evaluate(a, profile=prof, n_boot=0, by=())
    rb = evaluate(b_aligned, profile=prof, n_boot=0, by=())
    if metric not in ra.aggregates:
        raise ValueError(
            f"profile {prof.name!r} has no aggregate {metric!r}; valid: {', '.join(ra.aggregates)}"
        )
    agg = ra.aggregates[metric]
    subset = agg.subset
    members = [i for i, row in enumerate(ra.per_item) if _in_subset(row, subset)]
    members.sort(key=lambda i: ids_a[i])
    va = [float(ra.per_item[i][agg.item_metric]) for i in members]
    vb = [float(rb.per_item[i][agg.item_metric]) for i in members]
    n = len(members)
    mean_a = sum(va) / n if n else None
    mean_b = sum(vb) / n if n else None
    diff = None if mean_a is None or mean_b is None else mean_b - mean_a
    lo = hi = p_boot = None
    if n_boot > 0 and n > 0:
        lo, hi, p_boot = _bootstrap_difference(va, vb, metric=metric, n_boot=n_boot, seed=seed, level=level)
    only_a = only_b = None
    p_mc = None
    if all(v in (0.0, 1.0) for v in va + vb):
        only_a = sum(1 for x, y in zip(va, vb) if x == 1.0 and y == 0.0)
        only_b = sum(1 for x, y in zip(va, vb) if x == 0.0 and y == 1.0)
        p_mc = mcnemar_exact(only_a, only_b)
    return PairedComparison(
        profile=prof.name,
        metric=metric,
        n=n,
        value_a=mean_a,
        value_b=mean_b,
        difference=diff,
        ci_low=lo,
        ci_high=hi,
        p_bootstrap=p_boot,
        only_a=only_a,
        only_b=only_b,
        p_mcnemar=p_mc,
    )


def _aligned(a: Sequence[Prediction], b: Sequence[Prediction]) -> list[Prediction]:
    """Run B's predictions in run A's order, after checking that both hold the same questions."""
    ids_a = [p.id for p in a]
    ids_b = {p.id: p for p in b}
    if len(ids_b) != len(b) or len(set(ids_a)) != len(ids_a):
        raise ValueError("ids must be unique within each run")
    if set(ids_a) != set(ids_b):
        missing = sorted(set(ids_a) - set(ids_b))[:5]
        extra = sorted(set(ids_b) - set(ids_a))[:5]
        raise ValueError(
            f"the runs do not hold the same items: only in A {missing}, only in B {extra} (first 5 shown)"
        )
    b_aligned = [ids_b[i] for i in ids_a]
    differing = [
        (pa.id, pa.reference, pb.reference) for pa, pb in zip(a, b_aligned) if pa.reference != pb.reference
    ]
    if differing:
        shown = "; ".join(f"{i!r}: A {ra!r}, B {rb!r}" for i, ra, rb in differing[:3])
        raise ValueError(
            f"the runs give different references for {len(differing)} of {len(ids_a)} items "
            f"({shown}{'; ...' if len(differing) > 3 else ''}): they were not run on the same "
            "questions, so a paired comparison would be meaningless"
        )
    return b_aligned


def _bootstrap_difference(
    va: Sequence[float], vb: Sequence[float], *, metric: str, n_boot: int, seed: int, level: float
) -> tuple[float, float, float]:
    """The percentile interval of the mean difference B - A and its two-sided bootstrap p-value."""
    diffs = [[y - x] for x, y in zip(va, vb)]
    boots = bootstrap_means(diffs, n_boot=n_boot, seed=seed, label=f"paired:{metric}")[:, 0]
    lo, hi = percentile_interval(boots, level)
    below = float((boots <= 0).mean())
    above = float((boots >= 0).mean())
    p_boot = min(1.0, 2.0 * min(below, above))
    return lo, hi, p_boot
