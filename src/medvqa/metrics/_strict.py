"""The ``strict`` profile: medvqa's own scoring rule, the default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rapidfuzz.fuzz import ratio

from medvqa.answers import _STRICT_NO, _STRICT_YES, extract_strict_answer, normalize_strict
from medvqa.metrics._base import _EMPTY_SPEC, _YES_NO, AggregateSpec, ItemValue, Profile, _common, _specs
from medvqa.metrics._items import _squad_f1_and_recall
from medvqa.records import Prediction

__all__ = ["StrictProfile"]


@dataclass(frozen=True)
class StrictProfile(Profile):
    """``strict``: medvqa's own rule, the default.

    * Extraction: :func:`medvqa.answers.extract_strict_answer` (answer tags, ``\\boxed{}``,
      answer cues, first line or sentence, role prefixes), the rule recorded per item.
    * Normalization: :func:`medvqa.answers.normalize_strict` (idempotent).
    * Closed items with a yes/no truth: the decisive words of pred (``yes``/``no`` and
      their synonyms, on word boundaries; ``normal``, ``none`` and ``not`` never count
      unless added through ``extra_no_words``) decide; a pred with no decisive word
      (``closed_undecided``) or with both polarities (``closed_conflicting``) is wrong, and
      both are counted. Closed items whose truth is not yes/no (``left or right?``) are
      scored by exact match.
    * Open items: ``exact_match`` after normalization, SQuAD-style multiset token ``f1``,
      token ``recall``; ``fuzzy_match`` (rapidfuzz ratio ≥ ``fuzzy_threshold``) is its own
      column, never merged into exact match.
    * ``accuracy`` = closed decision or open exact match, per item.
    * Every headline number carries a seeded 95% bootstrap interval.

    Args:
        fuzzy_threshold: rapidfuzz ``ratio`` (0-100) at or above which ``fuzzy_match`` is 1.
        extra_yes_words: Extra words that count as a decisive ``yes``.
        extra_no_words: Extra words that count as a decisive ``no`` (e.g. ``("not",)``).
    """

    answers_only = True
    name = "strict"
    source = "medvqa"
    metric_names = (
        "accuracy", "exact_match", "f1", "recall", "fuzzy_match", "closed_undecided", "closed_conflicting",
    )  # fmt: skip
    agreement_metrics = ("accuracy", "exact_match", "f1", "recall", "fuzzy_match")
    aggregates = (
        *_specs("all", "accuracy"),
        *_specs("closed", "accuracy"),
        *_specs("open", "accuracy", "exact_match", "f1", "recall", "fuzzy_match"),
        AggregateSpec("closed_undecided", "closed_undecided", "closed_undecided", "closed", ci=False),
        AggregateSpec("closed_conflicting", "closed_conflicting", "closed_conflicting", "closed", ci=False),
        _EMPTY_SPEC,
    )

    fuzzy_threshold: float = 90.0
    extra_yes_words: tuple[str, ...] = ()
    extra_no_words: tuple[str, ...] = ()
    _yes: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())
    _no: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.fuzzy_threshold) <= 100.0:
            raise ValueError(f"fuzzy_threshold must lie in [0, 100], got {self.fuzzy_threshold!r}")
        object.__setattr__(self, "extra_yes_words", tuple(self.extra_yes_words))
        object.__setattr__(self, "extra_no_words", tuple(self.extra_no_words))
        yes = _STRICT_YES | {normalize_strict(w) for w in self.extra_yes_words}
        no = _STRICT_NO | {normalize_strict(w) for w in self.extra_no_words}
        if yes & no:
            raise ValueError(f"words cannot count as both yes and no: {sorted(yes & no)}")
        object.__setattr__(self, "_yes", frozenset(yes))
        object.__setattr__(self, "_no", frozenset(no))

    def to_dict(self) -> dict[str, Any]:
        """Name and options, JSON-friendly (inverse of :meth:`from_dict`)."""
        return {
            "name": self.name,
            "fuzzy_threshold": self.fuzzy_threshold,
            "extra_yes_words": list(self.extra_yes_words),
            "extra_no_words": list(self.extra_no_words),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StrictProfile:
        """Rebuild the profile from :meth:`to_dict` output."""
        return cls(
            fuzzy_threshold=float(data.get("fuzzy_threshold", 90.0)),
            extra_yes_words=tuple(data.get("extra_yes_words", ())),
            extra_no_words=tuple(data.get("extra_no_words", ())),
        )

    def decide(self, pred_norm: str) -> str:
        """``yes``, ``no``, ``undecided`` or ``conflicting`` for a normalized closed answer.

        >>> StrictProfile().decide("no evidence of fracture"), StrictProfile().decide("normal")
        ('no', 'undecided')
        """
        found: set[str] = set()
        for word in pred_norm.split():
            if word in self._yes:
                found.add("yes")
            elif word in self._no:
                found.add("no")
        if not found:
            return "undecided"
        if len(found) > 1:
            return "conflicting"
        return found.pop()

    def score_item(self, pred: Prediction) -> dict[str, ItemValue]:
        ex = extract_strict_answer(pred.prediction)
        p = normalize_strict(ex.answer)
        t = normalize_strict(pred.reference)
        tw, pw = t.split(), p.split()
        exact = p == t
        closed = self.is_closed(pred, t)
        out = _common(pred, ex.answer, ex.rule, p, t)
        out["closed"] = closed
        undecided = conflicting = 0.0
        correct = exact
        if closed and t in _YES_NO:
            decision = self.decide(p)
            undecided = 1.0 if decision == "undecided" else 0.0
            conflicting = 1.0 if decision == "conflicting" else 0.0
            correct = decision == t
        out["accuracy"] = 1.0 if correct else 0.0
        out["exact_match"] = 1.0 if exact else 0.0
        out["f1"], out["recall"] = _squad_f1_and_recall(tw, pw)
        out["fuzzy_match"] = 1.0 if ratio(p, t) >= self.fuzzy_threshold else 0.0
        out["closed_undecided"] = undecided
        out["closed_conflicting"] = conflicting
        return out
