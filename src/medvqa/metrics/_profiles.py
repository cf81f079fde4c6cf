"""The registry of named scoring profiles, and :func:`evaluate`.

The profiles themselves live in :mod:`~medvqa.metrics._base` (the base class),
:mod:`~medvqa.metrics._published` (``paper``, ``llava_med``, ``lmms_eval``, ``multimedeval``),
:mod:`~medvqa.metrics._medevalkit` and :mod:`~medvqa.metrics._strict`; they are importable from
here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from types import MappingProxyType
from typing import Any, overload

from medvqa._gc import paused_gc
from medvqa.metrics._aggregate import Aggregate, bootstrap_mean_interval, exact_sum
from medvqa.metrics._base import _EMPTY_SPEC, AggregateSpec, ItemValue, Profile
from medvqa.metrics._medevalkit import MedEvalKitProfile
from medvqa.metrics._published import LlavaMedProfile, LmmsEvalProfile, MultiMedEvalProfile, PaperProfile
from medvqa.metrics._strict import StrictProfile
from medvqa.records import Prediction

__all__ = [
    "PROFILES",
    "AggregateSpec",
    "LlavaMedProfile",
    "LmmsEvalProfile",
    "MultiMedEvalProfile",
    "PaperProfile",
    "Profile",
    "ProfileResult",
    "StrictProfile",
    "evaluate",
    "get_profile",
]

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "paper": PaperProfile(),
        "llava_med": LlavaMedProfile(),
        "lmms_eval": LmmsEvalProfile(),
        "multimedeval": MultiMedEvalProfile(),
        "medevalkit": MedEvalKitProfile(),
        "strict": StrictProfile(),
    }
)
"""The named profiles, by name (``strict`` is the default)."""


def get_profile(profile: str | Profile) -> Profile:
    """The profile of that name (a :class:`Profile` instance is returned as is).

    Raises:
        ValueError: Unknown name; the message lists the valid ones.

    >>> get_profile("paper").name
    'paper'
    """
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}") from None


@dataclass(frozen=True)
class ProfileResult:
    """The scores of one prediction set under one profile.

    Attributes:
        profile: The profile name.
        aggregates: Corpus numbers by key (see :class:`Aggregate`), in the profile's order.
        per_item: One dict per prediction, in input order: ``id``, ``closed``, the per-item
            metrics, and the ``extracted``, ``rule``, ``pred_norm``, ``truth_norm`` strings.
        metric_names: The per-item metric keys of this profile.
        n: Number of items scored.
        seed: Seed of the bootstrap.
        n_boot: Bootstrap replicates (0: no intervals).
        options: The profile's options (``Profile.to_dict()``).
        agreement_metrics: The per-item metrics that judge an answer right or wrong
            (compared with human judgements by :func:`medvqa.review.human_evaluation`).
    """

    profile: str
    aggregates: dict[str, Aggregate]
    per_item: list[dict[str, ItemValue]]
    metric_names: tuple[str, ...]
    n: int
    seed: int = 0
    n_boot: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    agreement_metrics: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> Aggregate:
        try:
            return self.aggregates[key]
        except KeyError:
            raise KeyError(
                f"profile {self.profile!r} has no aggregate {key!r}; available: {', '.join(self.aggregates)}"
            ) from None

    def to_dict(self, *, per_item: bool = False) -> dict[str, Any]:
        """JSON-friendly summary (per-item values only when asked)."""
        out: dict[str, Any] = {
            "profile": self.profile,
            "n": self.n,
            "seed": self.seed,
            "n_boot": self.n_boot,
            "options": dict(self.options),
            "aggregates": {k: a.to_dict() for k, a in self.aggregates.items()},
        }
        if per_item:
            out["per_item"] = [dict(row) for row in self.per_item]
        return out


def _field_value(pred: Prediction, name: str) -> str | None:
    if name in ("dataset", "split", "answer_type"):
        value: Any = getattr(pred, name)
        return str(value) if value != "" else None
    if name in pred.metadata:
        value = pred.metadata[name]
        return None if value is None else str(value)
    return None


def _in_subset(row: Mapping[str, ItemValue], subset: str) -> bool:
    if subset == "all":
        return True
    if subset == "closed":
        return bool(row["closed"])
    if subset == "open":
        return not bool(row["closed"])
    raise ValueError(f"unknown subset {subset!r}")


def _group_keys(keys: Iterable[tuple[Any, ...] | None]) -> tuple[list[int], list[int]]:
    """The first item of each distinct key (``None``: its own group) and each item's group."""
    memo: dict[tuple[Any, ...], int] = {}
    firsts: list[int] = []
    index: list[int] = []
    for i, key in enumerate(keys):
        j = None if key is None else memo.get(key)
        if j is None:
            j = len(firsts)
            firsts.append(i)
            if key is not None:
                memo[key] = j
        index.append(j)
    return firsts, index


def _score_items(
    prof: Profile, predictions: Sequence[Prediction], shared: _Shared | None = None
) -> tuple[list[dict[str, ItemValue]], Any]:
    """Distinct per-item rows and each item's row index; equal :meth:`Profile.item_key` share a row."""
    import numpy as np

    if shared is not None and prof.answers_only and type(prof).item_key is Profile.item_key:
        firsts, index = shared.answer_groups()  # the default key, grouped once for every profile
    else:
        firsts, index = _group_keys(prof.item_key(p) for p in predictions)
    return [prof.score_item(predictions[i]) for i in firsts], np.array(index, dtype=np.intp)


def _per_item(
    rows: Sequence[dict[str, ItemValue]], index: Sequence[int], predictions: Sequence[Prediction]
) -> list[dict[str, ItemValue]]:
    """One dict per item: a shared row's first item gets the row, later ones a copy with their id."""
    used = bytearray(len(rows))
    out: list[dict[str, ItemValue]] = []
    for j, p in zip(index, predictions):
        if used[j]:
            out.append({**rows[j], "id": p.id})
        else:
            used[j] = 1
            out.append(rows[j])
    return out


def _columns(rows: Sequence[Mapping[str, ItemValue]], index: Any, metrics: Sequence[str]) -> dict[str, Any]:
    """Each metric's per-item values as floats in input order, read in one pass over the distinct rows."""
    import numpy as np

    if not metrics:
        return {}
    table = np.array(list(map(itemgetter(*metrics), rows)), dtype=np.float64).reshape(len(rows), len(metrics))
    by_metric = np.ascontiguousarray(table.T)[:, index]  # one contiguous row per metric
    return dict(zip(metrics, by_metric))


def _id_order(predictions: Sequence[Prediction]) -> Any:
    import numpy as np

    ids = [p.id for p in predictions]
    return np.array(sorted(range(len(ids)), key=ids.__getitem__), dtype=np.intp)


def _check_options(n_boot: int, level: float) -> None:
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")


def _check_items(predictions: Sequence[Prediction]) -> None:
    """Raise ValueError for duplicate ids, non-text answers or an empty reference."""
    seen: dict[str, int] = {}
    for i, p in enumerate(predictions):
        if p.id in seen:
            raise ValueError(f"duplicate id {p.id!r} at items {seen[p.id]} and {i}; ids must be unique")
        seen[p.id] = i
        if type(p.reference) is not str or type(p.prediction) is not str:
            for name in ("reference", "prediction"):
                value = getattr(p, name)
                if not isinstance(value, str):
                    raise ValueError(
                        f"item {p.id!r} (index {i}): {name} must be text, got {type(value).__name__} {value!r}"
                    )
        if not p.reference.strip():
            raise ValueError(f"item {p.id!r} (index {i}) has an empty reference answer; it cannot be scored")


class _Shared:
    """What every profile of one :func:`evaluate` call reads from the items, checked and made once."""

    def __init__(self, predictions: Sequence[Prediction]) -> None:
        _check_items(predictions)
        self.predictions = predictions
        self.order = _id_order(predictions)
        self._fields: dict[str, list[str | None]] = {}
        self._groups: tuple[list[int], list[int]] | None = None
        self._groupings: dict[tuple[str, bool], tuple[list[str], Any] | None] = {}

    def answer_groups(self) -> tuple[list[int], list[int]]:
        """:func:`_group_keys` of the default :meth:`Profile.item_key` (answers, type, its source)."""
        if self._groups is None:
            self._groups = _group_keys(
                (p.reference, p.prediction, p.answer_type, p.metadata.get("answer_type_source"))
                for p in self.predictions
            )
        return self._groups

    def field_values(self, name: str) -> list[str | None]:
        """Each item's value of a grouping field (``None`` when it has none)."""
        if name not in self._fields:
            self._fields[name] = [_field_value(p, name) for p in self.predictions]
        return self._fields[name]

    def field_groups(self, name: str, fold: bool) -> tuple[list[str], Any] | None:
        """The sorted group labels of a field and each item's group (``None``: no item has it).

        ``fold`` strips and lowercases the values (blank ones count as missing); items
        without a value are grouped under ``(missing)``.
        """
        import numpy as np

        if (name, fold) not in self._groupings:
            values = self.field_values(name)
            if fold:
                values = [None if v is None or not v.strip() else v.strip().lower() for v in values]
            if all(v is None for v in values):
                self._groupings[name, fold] = None
            else:
                labels = ["(missing)" if v is None else v for v in values]
                levels = sorted(set(labels))
                index = {lv: j for j, lv in enumerate(levels)}
                codes = np.fromiter(map(index.__getitem__, labels), dtype=np.intp, count=len(labels))
                self._groupings[name, fold] = (levels, codes)
        return self._groupings[name, fold]


def _aggregate_specs(
    prof: Profile,
    shared: _Shared,
    closed: Any,
    by: Sequence[str] | None,
) -> list[tuple[AggregateSpec, str, str, Any]]:
    """Every aggregate to compute: its spec, key, subset label and boolean item mask."""
    import numpy as np

    n = len(closed)
    masks = {"all": np.ones(n, dtype=bool), "closed": closed, "open": ~closed}
    for spec in prof.aggregates:
        if spec.subset not in masks:
            raise ValueError(f"unknown subset {spec.subset!r}")
    specs = [(spec, spec.key, spec.subset, masks[spec.subset]) for spec in prof.aggregates]
    fields = prof.default_by if by is None else tuple(by)
    for fname in fields:
        groups = shared.field_groups(fname, prof.fold_group_values)
        if groups is None:
            continue
        levels, codes = groups
        for spec in prof.aggregates:
            if spec is _EMPTY_SPEC:
                continue
            for j, lv in enumerate(levels):
                mask = masks[spec.subset] & (codes == j)
                if not mask.any():
                    continue
                label = f"{fname}={lv}"
                subset = label if spec.subset == "all" else f"{spec.subset}&{label}"
                specs.append((spec, f"{spec.key}/{label}", subset, mask))
    return specs


@overload
def evaluate(  # type: ignore[overload-overlap]  # a str is a Sequence[str]: the first match wins
    predictions: Sequence[Prediction],
    *,
    profile: str | Profile = "strict",
    seed: int = 0,
    n_boot: int = 1000,
    by: Sequence[str] | None = None,
    level: float = 0.95,
) -> ProfileResult: ...


@overload
def evaluate(
    predictions: Sequence[Prediction],
    *,
    profile: Sequence[str | Profile],
    seed: int = 0,
    n_boot: int = 1000,
    by: Sequence[str] | None = None,
    level: float = 0.95,
) -> dict[str, ProfileResult]: ...


def evaluate(
    predictions: Sequence[Prediction],
    *,
    profile: str | Profile | Sequence[str | Profile] = "strict",
    seed: int = 0,
    n_boot: int = 1000,
    by: Sequence[str] | None = None,
    level: float = 0.95,
) -> ProfileResult | dict[str, ProfileResult]:
    """Score predictions under one profile, or under several side by side.

    Args:
        predictions: The items to score (unique ids, text references and predictions).
        profile: A profile name (see :data:`PROFILES`) or :class:`Profile`, or a sequence of
            them (``["paper", "strict"]``, as ``medvqa score --profile paper strict``); the
            sequence form returns one result per profile, keyed by profile name, in the order
            given. ``"all"`` inside a sequence stands for every registered profile.
        seed: Seed of the bootstrap intervals.
        n_boot: Bootstrap replicates per subset (0 disables the intervals).
        by: Metadata fields (or ``dataset``/``split``/``answer_type``) to break every
            aggregate down by; ``None`` uses each profile's default (``lmms_eval``: modality
            and content type). Items without the field are grouped under ``(missing)``.
        level: Confidence level of the intervals.

    Returns:
        A :class:`ProfileResult` for one profile; a ``{name: ProfileResult}`` dict for a sequence.

    Raises:
        ValueError: An unknown profile, the same profile twice, an empty sequence, or any
            error of the single-profile form (duplicate ids, an empty or non-text
            reference, a non-text prediction, bad options).

    >>> from medvqa.records import Prediction
    >>> preds = [Prediction("1", "q", "no", "No.", "closed")]
    >>> results = evaluate(preds, profile=["paper", "strict"], n_boot=0)
    >>> list(results), results["strict"]["accuracy"].value
    (['paper', 'strict'], 1.0)
    """
    if isinstance(profile, (str, Profile)):
        return _score_profile(predictions, profile=profile, seed=seed, n_boot=n_boot, by=by, level=level)
    chosen: list[str | Profile] = []
    for item in profile:
        chosen.extend(sorted(PROFILES) if item == "all" else [item])
    if not chosen:
        raise ValueError("profile: give at least one profile name")
    for item in chosen:
        get_profile(item)  # an unknown name fails before any scoring
    _check_options(n_boot, level)
    with paused_gc():
        shared = _Shared(predictions)
    out: dict[str, ProfileResult] = {}
    for item in chosen:
        result = _score_profile(
            predictions, profile=item, seed=seed, n_boot=n_boot, by=by, level=level, shared=shared
        )
        if result.profile in out:
            raise ValueError(f"profile {result.profile!r} given twice")
        out[result.profile] = result
    return out


# Over 60 lines with its public docstring; the code is 28 lines.
def _score_profile(
    predictions: Sequence[Prediction],
    *,
    profile: str | Profile = "strict",
    seed: int = 0,
    n_boot: int = 1000,
    by: Sequence[str] | None = None,
    level: float = 0.95,
    shared: _Shared | None = None,
    keep_per_item: bool = True,
) -> ProfileResult:
    """Score predictions under one profile (what :func:`evaluate` does for each profile).

    Args:
        predictions: The predictions (unique ids). Empty predictions are scored (as
            whatever the profile gives them, normally wrong) and counted in
            ``empty_predictions``.
        profile: A name from :data:`PROFILES` or a :class:`Profile` (e.g. a configured
            :class:`StrictProfile`).
        seed: Seed of the bootstrap. Draws are made over the items sorted by id, so the
            intervals do not depend on input order.
        n_boot: Bootstrap replicates per subset (0 disables the intervals).
        by: Metadata fields (or ``dataset``/``split``/``answer_type``) to break every
            aggregate down by; ``None`` uses the profile's default (``lmms_eval``:
            modality and content type). Fields absent from every item are ignored; items
            without the field are grouped under ``(missing)``; empty groups are left out.
        level: Confidence level of the intervals.
        shared: The checked items' id order and group values (made here when not given).
        keep_per_item: Whether to return the per-item values (``False``: an empty list).

    Returns:
        The aggregates and per-item values.

    Raises:
        ValueError: Unknown profile, duplicate ids, an empty or non-text reference, a
            non-text prediction, or bad options.

    >>> from medvqa.records import Prediction
    >>> preds = [Prediction("1", "q", "yes", "Yes.", "closed"),
    ...          Prediction("2", "q", "left lung", "The left lung.", "open")]
    >>> r = _score_profile(preds, profile="paper", n_boot=0)
    >>> r["containment"].value, round(r["f1"].value, 3), r["f1"].n
    (1.0, 0.667, 2)
    >>> _score_profile(preds, n_boot=200)["accuracy"].format(2)
    '1.00 [1.00, 1.00]'
    """
    import numpy as np

    prof = get_profile(profile)
    _check_options(n_boot, level)
    with paused_gc():  # many small acyclic objects (see medvqa._gc)
        if shared is None:
            shared = _Shared(predictions)
        rows, index = _score_items(prof, predictions, shared)
        closed = np.fromiter(map(itemgetter("closed"), rows), dtype=bool, count=len(rows))[index]
        specs = _aggregate_specs(prof, shared, closed, by)
        columns = _columns(rows, index, list(dict.fromkeys(spec.item_metric for spec, *_ in specs)))
        aggregates = _aggregates(
            specs, columns.__getitem__, shared.order, n_boot=n_boot, seed=seed, level=level
        )
        per_item = _per_item(rows, index.tolist(), predictions) if keep_per_item else []
        del rows, columns  # freed before the collector runs again, so it does not walk them
    return ProfileResult(
        profile=prof.name,
        aggregates=aggregates,
        per_item=per_item,
        metric_names=prof.metric_names,
        n=len(predictions),
        seed=seed,
        n_boot=n_boot,
        options=prof.to_dict(),
        agreement_metrics=prof.agreement_metrics or prof.metric_names,
    )


def _aggregates(
    specs: Sequence[tuple[AggregateSpec, str, str, Any]],
    column: Callable[[str], Any],
    order: Any,
    *,
    n_boot: int,
    seed: int,
    level: float,
) -> dict[str, Aggregate]:
    """Every aggregate of :func:`_aggregate_specs`, with its interval where one is asked for.

    ``column(metric)`` gives a metric's per-item values in input order; ``order`` sorts the
    items by id (the bootstrap draws over that order). One subset's interval of one metric is
    drawn once, however many aggregates share it.
    """
    aggregates: dict[str, Aggregate] = {}
    intervals: dict[tuple[str, str], tuple[float, float]] = {}
    by_id: dict[str, Any] = {}  # each metric's values, and each subset's mask, in id order

    def in_id_order(name: str, values: Any) -> Any:
        if name not in by_id:
            by_id[name] = values[order]
        return by_id[name]

    zero_one: dict[str, bool] = {}  # whether a metric's values are all 0.0 or 1.0

    for spec, key, subset, mask in specs:
        metric = column(spec.item_metric)
        values = metric[mask]
        count = int(values.size)
        if spec.item_metric not in zero_one:
            zero_one[spec.item_metric] = bool(((metric == 0.0) | (metric == 1.0)).all())
        # A sum of zeros and ones is exact in any order, so it equals math.fsum's.
        total = float(values.sum()) + 0.0 if zero_one[spec.item_metric] else exact_sum(values)
        lo = hi = None
        if n_boot > 0 and spec.ci and count:
            if (subset, spec.item_metric) not in intervals:
                metric_values = in_id_order(f"metric {spec.item_metric}", column(spec.item_metric))
                ordered = metric_values[in_id_order(f"subset {subset}", mask)]  # items sorted by id
                intervals[subset, spec.item_metric] = bootstrap_mean_interval(
                    ordered, n_boot=n_boot, seed=seed, label=f"{subset}|{spec.item_metric}", level=level
                )
            lo, hi = intervals[subset, spec.item_metric]
        aggregates[key] = Aggregate(
            name=spec.name,
            subset=subset,
            value=total / count if count else None,
            numerator=total,
            denominator=count,
            ci_low=lo,
            ci_high=hi,
            item_metric=spec.item_metric,
            key=key,
        )
    return aggregates
