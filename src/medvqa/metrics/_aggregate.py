"""Corpus aggregation and seeded bootstrap confidence intervals."""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Aggregate",
    "bootstrap_mean_interval",
    "bootstrap_means",
    "percentile_interval",
    "wilson_interval",
]


@dataclass(frozen=True)
class Aggregate:
    """One corpus-level number with its denominator and, when computed, its interval.

    Every aggregate of medvqa is a mean of per-item values over a subset of the items, so
    ``value == numerator / denominator``.

    Attributes:
        name: The metric (``accuracy``, ``f1``, ``containment``, ...).
        subset: Which items it averages: ``all``, ``closed``, ``open``, or a breakdown such
            as ``modality=CT`` or ``closed&modality=CT``.
        value: ``numerator / denominator``; ``None`` when the subset is empty.
        numerator: The sum of the per-item values (a count for 0/1 metrics).
        denominator: The number of items averaged (``n``).
        ci_low: Lower end of the 95% bootstrap interval, or ``None`` when not computed.
        ci_high: Upper end of the 95% bootstrap interval, or ``None``.
        item_metric: The per-item key of :attr:`ProfileResult.per_item` that is averaged.
        key: The key of this aggregate in :attr:`ProfileResult.aggregates`.

    >>> a = Aggregate("accuracy", "closed", 0.75, 3.0, 4, item_metric="correct", key="accuracy/closed")
    >>> a.n, a.to_dict()["value"]
    (4, 0.75)
    """

    name: str
    subset: str
    value: float | None
    numerator: float
    denominator: int
    ci_low: float | None = None
    ci_high: float | None = None
    item_metric: str = ""
    key: str = ""

    @property
    def n(self) -> int:
        """The number of items averaged (the denominator)."""
        return self.denominator

    def format(self, digits: int = 3, *, ci: bool = True, n: bool = False) -> str:
        """The value as text, e.g. ``0.553 [0.507, 0.598]``; ``n/a`` for an empty subset.

        >>> Aggregate("f1", "all", 0.5, 1.0, 2, 0.25, 0.75).format(2, n=True)
        '0.50 [0.25, 0.75] (n=2)'
        """
        if self.value is None:
            text = "n/a"
        else:
            text = f"{self.value:.{digits}f}"
            if ci and self.ci_low is not None and self.ci_high is not None:
                text += f" [{self.ci_low:.{digits}f}, {self.ci_high:.{digits}f}]"
        if n:
            text += f" (n={self.denominator})"
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (inverse of :meth:`from_dict`)."""
        return {
            "key": self.key,
            "name": self.name,
            "subset": self.subset,
            "value": self.value,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "item_metric": self.item_metric,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Aggregate:
        """Rebuild an aggregate written by :meth:`to_dict`."""

        def opt(v: Any) -> float | None:
            return None if v is None else float(v)

        return cls(
            name=str(data["name"]),
            subset=str(data.get("subset", "all")),
            value=opt(data.get("value")),
            numerator=float(data.get("numerator", 0.0)),
            denominator=int(data.get("denominator", 0)),
            ci_low=opt(data.get("ci_low")),
            ci_high=opt(data.get("ci_high")),
            item_metric=str(data.get("item_metric", "")),
            key=str(data.get("key", "")),
        )


def _rng_seed(seed: int, label: str) -> list[int]:
    return [seed & 0xFFFFFFFF, zlib.crc32(label.encode("utf-8"))]


def bootstrap_means(
    values: Sequence[Sequence[float]],
    *,
    n_boot: int,
    seed: int,
    label: str = "",
    chunk: int = 256,
) -> Any:
    """Bootstrap the means of several aligned per-item columns at once.

    Items are resampled with replacement (the same draws for every column). The caller
    orders the items by their stable ids, so the draws do not depend on input order.

    Args:
        values: ``m`` items × ``k`` columns.
        n_boot: Number of bootstrap replicates.
        seed: Seed of the draws; ``label`` (e.g. the subset name) is mixed into it.
        label: Distinguishes independent streams under one seed.
        chunk: Replicates drawn per block at most (bounds memory at ``chunk × m``; fewer
            for large ``m``).

    Returns:
        A NumPy array ``n_boot × k`` of resampled means.

    >>> import numpy as np
    >>> out = bootstrap_means([[1.0], [0.0], [1.0], [1.0]], n_boot=200, seed=0)
    >>> out.shape, bool(((out >= 0) & (out <= 1)).all())
    ((200, 1), True)
    """
    import numpy as np

    arr = np.asarray(values, dtype=np.float64)
    m = arr.shape[0]
    if arr.ndim == 1:
        arr = arr[:, None]
    rng = np.random.default_rng(_rng_seed(seed, label))
    out = np.empty((n_boot, arr.shape[1]), dtype=np.float64)
    if m == 0:
        out.fill(np.nan)
        return out
    # At most about 2**21 draws per block (16 MB per array), whatever m is; the draws form one
    # sequence, so the block size does not change the result.
    chunk = max(1, min(chunk, (1 << 21) // m))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        rows = stop - start
        idx = rng.integers(0, m, size=(rows, m))
        if arr.shape[1] == 1:
            out[start:stop] = arr[idx, 0].sum(axis=1)[:, None] / m
        else:  # resampling counts per item, then one matrix product for every column
            flat = (np.arange(rows)[:, None] * m + idx).ravel()
            counts = np.bincount(flat, minlength=rows * m).reshape(rows, m).astype(np.float64)
            out[start:stop] = (counts @ arr) / m
    return out


def bootstrap_mean_interval(
    values: Any, *, n_boot: int, seed: int, label: str = "", level: float = 0.95
) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of one column of per-item values.

    The mean of a resample depends only on how many draws fall on each distinct value, and
    those counts follow a multinomial law with the values' frequencies. When the column has
    few distinct values (0/1 metrics have two), the counts are drawn directly: ``n_boot``
    multinomial draws over ``d`` values instead of ``n_boot × m`` item indices, the same
    bootstrap distribution at a cost that does not grow with ``m``. Columns with many
    distinct values resample item indices (:func:`bootstrap_means`). The draws depend only
    on ``seed``, ``label`` and the values, so one column's interval does not depend on
    which other columns are computed.

    Args:
        values: The ``m`` per-item values, in a stable order (items sorted by id).
        n_boot: Number of bootstrap replicates.
        seed: Seed of the draws; ``label`` is mixed into it.
        label: Names the stream (e.g. the subset and metric).
        level: Confidence level.

    Returns:
        ``(low, high)``.

    >>> lo, hi = bootstrap_mean_interval([1.0, 0.0] * 50, n_boot=500, seed=0)
    >>> 0.35 < lo < 0.5 < hi < 0.65
    True
    """
    import numpy as np

    arr = np.asarray(values, dtype=np.float64).ravel()
    m = arr.size
    if m == 0:
        return (math.nan, math.nan)
    distinct, counts = np.unique(arr, return_counts=True)
    if distinct.size * 8 > m:
        column: Any = arr[:, None]
        return percentile_interval(
            bootstrap_means(column, n_boot=n_boot, seed=seed, label=label)[:, 0], level
        )
    rng = np.random.default_rng(_rng_seed(seed, label))
    draws = rng.multinomial(m, counts / m, size=n_boot)
    return percentile_interval(draws @ distinct / m, level)


def exact_sum(values: Any) -> float:
    """``math.fsum(values)``, the correctly rounded sum, counted over the distinct values.

    Per-item metrics take few distinct values (ratios of small token counts), so the exact
    sum of ``count × value`` over the distinct values, as integers over a common power-of-two
    denominator, is cheaper than :func:`math.fsum` over every item. Python's integer
    division rounds correctly, as ``fsum`` does, so the two agree to the last bit. Columns
    with many distinct values, non-finite values or a zero sum (whose sign ``fsum`` keeps)
    go to :func:`math.fsum`.

    >>> import math
    >>> values = [0.1] * 10 + [0.7, 1 / 3] * 5
    >>> exact_sum(values) == math.fsum(values), exact_sum([0.1] * 10), sum([0.1] * 10)
    (True, 1.0, 0.9999999999999999)
    """
    import numpy as np

    arr = np.asarray(values, dtype=np.float64).ravel()
    distinct, counts = np.unique(arr, return_counts=True)
    if not arr.size or distinct.size * 4 > arr.size or not np.isfinite(distinct).all():
        return math.fsum(arr.tolist())
    floats: list[float] = distinct.tolist()
    ratios = [v.as_integer_ratio() for v in floats]
    den = max(d for _, d in ratios)  # every denominator is a power of two: this one is a multiple of each
    num: int = sum(c * n * (den // d) for (n, d), c in zip(ratios, counts.tolist(), strict=True))
    if num:
        try:
            return num / den
        except OverflowError:  # beyond the float range: fsum's own error
            pass
    return math.fsum(arr.tolist())


def percentile_interval(samples: Any, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates (one column).

    >>> percentile_interval([0.0, 0.25, 0.5, 0.75, 1.0], 0.5)
    (0.25, 0.75)
    """
    import numpy as np

    arr = np.asarray(samples, dtype=np.float64)
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(arr, [tail, 100.0 - tail])
    return float(lo), float(hi)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (used for human accuracy).

    >>> lo, hi = wilson_interval(240, 400)
    >>> round(lo, 3), round(hi, 3)
    (0.551, 0.647)
    """
    if n == 0:
        return (math.nan, math.nan)
    z = _normal_quantile(0.5 + level / 2.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _normal_quantile(q: float) -> float:
    # Bisection on the normal CDF (200 halvings: exact to double precision).
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {q}")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0
