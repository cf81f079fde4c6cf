"""Visual reliance: paired differences between a normal run and an ablated run of the same items.

:func:`visual_reliance` pairs a normal run with an ablated run (swapped, blank or missing
images, another prompt) and reports, for every per-item metric of a scoring profile, the
paired difference ``normal - ablated`` with a seeded bootstrap interval (and McNemar's exact
test for 0/1 metrics), plus the share of answers that changed; closed and open questions
separately. A model that reads the image loses accuracy when the image is swapped; a drop
whose interval contains 0 is no evidence that it does. Light core (no torch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from medvqa._errors import MedVQAError
from medvqa.records import Prediction

__all__ = ["MetricDifference", "ProbeError", "RelianceResult", "Subset", "visual_reliance"]

Subset = Literal["all", "closed", "open"]
"""Which items a number is computed on."""

SUBSETS: tuple[Subset, ...] = ("all", "closed", "open")
"""Every :data:`Subset`, in report order."""


class ProbeError(MedVQAError, ValueError):
    """Runs cannot be compared (different items, duplicated ids, ...); the message says which."""


@dataclass(frozen=True)
class MetricDifference:
    """The paired difference of one aggregate between a normal and an ablated run.

    Attributes:
        metric: The aggregate key of the profile (``accuracy/closed``, ``f1/open``, ...).
        subset: The items it averages: ``all``, ``closed`` or ``open``.
        n: Items in that subset.
        normal: The aggregate in the normal run.
        ablated: The aggregate in the ablated run.
        drop: ``normal - ablated`` (positive: the ablation lowered it).
        ci_low: Lower end of the paired bootstrap interval of ``drop``.
        ci_high: Upper end.
        p_bootstrap: Two-sided paired bootstrap p-value.
        only_normal: Items right only in the normal run (0/1 metrics), else ``None``.
        only_ablated: Items right only in the ablated run (0/1 metrics), else ``None``.
        p_mcnemar: Exact McNemar p-value (0/1 metrics), else ``None``.
    """

    metric: str
    subset: str
    n: int
    normal: float | None
    ablated: float | None
    drop: float | None
    ci_low: float | None
    ci_high: float | None
    p_bootstrap: float | None = None
    only_normal: int | None = None
    only_ablated: int | None = None
    p_mcnemar: float | None = None

    @property
    def significant(self) -> bool:
        """Whether the interval of the drop excludes 0."""
        return self.ci_low is not None and self.ci_high is not None and (self.ci_low > 0 or self.ci_high < 0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class RelianceResult:
    """How much a model's answers depend on what an ablation removed or changed.

    Attributes:
        name: The ablation's name (for example ``swap``).
        transform: The transform tag(s) recorded in the ablated predictions' metadata.
        profile: The scoring profile.
        n: Paired items.
        n_closed: Paired closed items (as the profile decides them).
        n_open: Paired open items.
        differences: One :class:`MetricDifference` per aggregate of the profile.
        changed: Per subset (``all``, ``closed``, ``open``), ``(changed, n)``: answers
            whose normalized answer (the profile's ``pred_norm``) differs between the runs.
        level: Confidence level of the intervals.
        n_boot: Bootstrap replicates.
        seed: Bootstrap seed.
    """

    name: str
    transform: str
    profile: str
    n: int
    n_closed: int
    n_open: int
    differences: tuple[MetricDifference, ...]
    changed: Mapping[str, tuple[int, int]]
    level: float = 0.95
    n_boot: int = 1000
    seed: int = 0

    def difference(self, metric: str) -> MetricDifference:
        """The difference of one aggregate (by its key, such as ``accuracy/closed``).

        Raises:
            KeyError: No such aggregate (the message lists them).
        """
        for d in self.differences:
            if d.metric == metric:
                return d
        raise KeyError(f"no aggregate {metric!r}; this profile has: {[d.metric for d in self.differences]}")

    def changed_share(self, subset: Subset = "all") -> float | None:
        """The share of answers that changed on ``subset`` (``None`` when it is empty)."""
        changed, n = self.changed.get(subset, (0, 0))
        return changed / n if n else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "name": self.name,
            "transform": self.transform,
            "profile": self.profile,
            "n": self.n,
            "n_closed": self.n_closed,
            "n_open": self.n_open,
            "level": self.level,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "changed": {k: {"changed": c, "n": n} for k, (c, n) in self.changed.items()},
            "differences": [d.to_dict() for d in self.differences],
        }


def _align(normal: Sequence[Prediction], ablated: Sequence[Prediction], name: str) -> list[Prediction]:
    def index(preds: Sequence[Prediction], which: str) -> dict[str, Prediction]:
        out: dict[str, Prediction] = {}
        for p in preds:
            if p.id in out:
                raise ProbeError(f"{which}: prediction id {p.id!r} occurs more than once")
            out[p.id] = p
        return out

    a = index(normal, "normal run")
    b = index(ablated, f"ablated run {name!r}")
    missing = [i for i in a if i not in b]
    extra = [i for i in b if i not in a]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} items of the normal run are missing from it (e.g. {missing[:3]})")
        if extra:
            parts.append(f"{len(extra)} of its items are not in the normal run (e.g. {extra[:3]})")
        raise ProbeError(
            f"ablated run {name!r} does not hold the same items as the normal run: {'; '.join(parts)}. "
            "Paired comparisons need the same ids in both runs (same dataset, split and --limit)"
        )
    return [b[p.id] for p in normal]


# Over 60 lines only through its signature and docstring; the body is about 30 lines.
def visual_reliance(
    normal: Sequence[Prediction],
    ablated: Sequence[Prediction],
    *,
    name: str = "ablated",
    profile: str = "strict",
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
) -> RelianceResult:
    """The paired drop in every metric between a normal run and an ablated run of the same items.

    Every aggregate of ``profile`` (overall, closed and open; or those named in
    ``metrics``) is compared with :func:`medvqa.metrics.paired_comparison`: the drop is
    ``normal - ablated``, with a paired percentile bootstrap interval (items resampled in
    pairs) and, for 0/1 metrics such as closed accuracy, the discordant counts and the exact
    McNemar p-value. The share of answers that changed compares the profile's normalized
    answers (``pred_norm``) item by item, overall and for closed and open questions.

    Args:
        normal: Predictions of the normal run.
        ablated: Predictions of the ablated run: the same ids, in any order.
        name: The ablation's name in reports.
        profile: A scoring profile name (see ``medvqa.metrics.PROFILES``).
        metrics: Aggregate keys to compare (default: all of the profile's).
        seed: Bootstrap seed.
        n_boot: Bootstrap replicates (0: no intervals).
        level: Confidence level.

    Raises:
        ProbeError: The runs do not hold the same ids, or an id repeats.
        KeyError: A name in ``metrics`` is not an aggregate of the profile.

    >>> from medvqa.records import Prediction
    >>> refs = ["yes", "no"] * 10
    >>> normal = [Prediction(str(i), "q", r, r, "closed") for i, r in enumerate(refs)]
    >>> swapped = [Prediction(str(i), "q", r, "yes", "closed") for i, r in enumerate(refs)]
    >>> r = visual_reliance(normal, swapped, name="swap", n_boot=200)
    >>> d = r.difference("accuracy/closed")
    >>> d.normal, d.ablated, d.drop, d.only_normal, d.significant
    (1.0, 0.5, 0.5, 10, True)
    >>> r.changed_share("closed")
    0.5
    """
    from medvqa.metrics import evaluate

    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    paired = _align(normal, ablated, name)
    result_a = evaluate(list(normal), profile=profile, seed=seed, n_boot=0, by=())
    result_b = evaluate(paired, profile=profile, seed=seed, n_boot=0, by=())
    keys = list(result_a.aggregates)
    if metrics is not None:
        unknown = [m for m in metrics if m not in result_a.aggregates]
        if unknown:
            raise KeyError(f"profile {profile!r} has no aggregate {unknown}; it has {keys}")
        keys = list(metrics)
    differences = [
        _difference(list(normal), paired, key, result_a.aggregates[key].subset, profile, seed, n_boot, level)
        for key in keys
    ]
    closed = [bool(row.get("closed")) for row in result_a.per_item]
    changed = _changed(closed, result_a.per_item, result_b.per_item)
    tags = sorted({str(p.metadata.get("transforms", "")) for p in paired} - {""})
    return RelianceResult(
        name=name,
        transform="; ".join(tags),
        profile=profile,
        n=len(paired),
        n_closed=sum(closed),
        n_open=len(closed) - sum(closed),
        differences=tuple(differences),
        changed=changed,
        level=level,
        n_boot=n_boot,
        seed=seed,
    )


def _difference(
    normal: list[Prediction],
    paired: list[Prediction],
    key: str,
    subset: str,
    profile: str,
    seed: int,
    n_boot: int,
    level: float,
) -> MetricDifference:
    """One aggregate's paired comparison, turned round to read as the drop ``normal - ablated``."""
    from medvqa.metrics import paired_comparison

    c = paired_comparison(normal, paired, profile=profile, metric=key, seed=seed, n_boot=n_boot, level=level)
    return MetricDifference(
        metric=key,
        subset=subset,
        n=c.n,
        normal=c.value_a,
        ablated=c.value_b,
        drop=None if c.difference is None else 0.0 - c.difference,
        ci_low=None if c.ci_high is None else 0.0 - c.ci_high,
        ci_high=None if c.ci_low is None else 0.0 - c.ci_low,
        p_bootstrap=c.p_bootstrap,
        only_normal=c.only_a,
        only_ablated=c.only_b,
        p_mcnemar=c.p_mcnemar,
    )


def _changed(
    closed: Sequence[bool], items_a: Sequence[Mapping[str, Any]], items_b: Sequence[Mapping[str, Any]]
) -> dict[str, tuple[int, int]]:
    """Per subset, ``(answers whose normalized answer changed, items)``."""
    flags = [a.get("pred_norm") != b.get("pred_norm") for a, b in zip(items_a, items_b, strict=True)]
    changed: dict[str, tuple[int, int]] = {}
    for subset in SUBSETS:
        members = [i for i in range(len(flags)) if subset == "all" or closed[i] == (subset == "closed")]
        changed[subset] = (sum(flags[i] for i in members), len(members))
    return changed
