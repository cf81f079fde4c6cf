"""What every scoring profile shares: the :class:`Profile` base class and :class:`AggregateSpec`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from medvqa.records import Prediction

__all__ = ["AggregateSpec", "ItemValue", "Profile"]

ItemValue = float | bool | str
"""A per-item value: a metric (float or bool) or a string (extracted/normalized text, rule)."""

_YES_NO = frozenset({"yes", "no"})


@dataclass(frozen=True)
class AggregateSpec:
    """How a profile aggregates one per-item metric.

    Attributes:
        key: The key in :attr:`ProfileResult.aggregates` (``f1``, ``accuracy/closed``,
            ``closedQuestionsAccuracy``, ...).
        name: The metric name shown in tables.
        item_metric: The per-item key averaged.
        subset: ``all``, ``closed`` or ``open``.
        ci: Whether to compute a bootstrap interval (diagnostic counts have none).
    """

    key: str
    name: str
    item_metric: str
    subset: str = "all"
    ci: bool = True


def _inferred(pred: Prediction) -> bool:
    return pred.metadata.get("answer_type_source") == "inferred"


@dataclass(frozen=True)
class Profile:
    """Base class of the scoring profiles.

    A profile turns one :class:`~medvqa.records.Prediction` into a dict of per-item
    values (:meth:`score_item`) and lists the aggregates it reports (:attr:`aggregates`).
    The per-item dict always has ``closed`` (bool: whether the profile treats the item as a
    closed question), ``empty`` (1.0 when the raw prediction is blank), ``extracted``,
    ``rule``, ``pred_norm`` and ``truth_norm``.
    """

    name: ClassVar[str] = ""
    source: ClassVar[str] = ""
    metric_names: ClassVar[tuple[str, ...]] = ()
    aggregates: ClassVar[tuple[AggregateSpec, ...]] = ()
    default_by: ClassVar[tuple[str, ...]] = ()
    agreement_metrics: ClassVar[tuple[str, ...]] = ()
    fold_group_values: ClassVar[bool] = False
    answers_only: ClassVar[bool] = False
    """True when :meth:`score_item` depends on nothing but the item's id, reference, prediction,
    answer type and ``answer_type_source`` metadata: :func:`evaluate` then scores a repeated
    (reference, prediction, type) once and copies the values."""

    def score_item(self, pred: Prediction) -> dict[str, ItemValue]:
        """Per-item values for one prediction."""
        raise NotImplementedError

    def item_key(self, pred: Prediction) -> tuple[Any, ...] | None:
        """What :meth:`score_item`'s values depend on besides the id (``None``: unknown).

        Two items with equal keys get the same values (but their ids), so :func:`evaluate`
        scores each key once. Without :attr:`answers_only` the key is ``None`` (every item
        is scored).
        """
        if not self.answers_only:
            return None
        return (pred.reference, pred.prediction, pred.answer_type, pred.metadata.get("answer_type_source"))

    def is_closed(self, pred: Prediction, truth_norm: str) -> bool:
        """The dataset's annotation when there is one, else: normalized truth is yes/no."""
        if _inferred(pred):
            return truth_norm in _YES_NO
        return pred.answer_type == "closed"

    def to_dict(self) -> dict[str, Any]:
        """The profile's name and options (for result files)."""
        return {"name": self.name}


def _common(
    pred: Prediction, extracted: str, rule: str, pred_norm: str, truth_norm: str
) -> dict[str, ItemValue]:
    return {
        "id": pred.id,
        "empty": 1.0 if not pred.prediction.strip() else 0.0,
        "extracted": extracted,
        "rule": rule,
        "pred_norm": pred_norm,
        "truth_norm": truth_norm,
    }


def _specs(subset: str, *metrics: str) -> tuple[AggregateSpec, ...]:
    """One aggregate per metric, averaging that per-item metric over ``subset``.

    Keyed ``metric`` over all items and ``metric/subset`` otherwise, named after the metric.
    """
    return tuple(AggregateSpec(m if subset == "all" else f"{m}/{subset}", m, m, subset) for m in metrics)


_EMPTY_SPEC = AggregateSpec("empty_predictions", "empty_predictions", "empty", "all", ci=False)
