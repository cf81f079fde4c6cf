"""Named scoring profiles and :func:`evaluate`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from types import MappingProxyType
from typing import Any, ClassVar, overload

from medvqa.answers import (
    _STRICT_NO,
    _STRICT_YES,
    extract_paper_answer,
    extract_strict_answer,
    normalize_lmms_eval,
    normalize_multimedeval,
    normalize_strict,
    normalize_vqav2,
)
from medvqa.metrics._aggregate import Aggregate, bootstrap_mean_interval
from medvqa.metrics._items import (
    containment,
    paper_f1,
    sentence_bleu,
    sentence_bleus,
    set_precision_recall_f1,
    squad_f1,
    token_recall,
    torchmetrics_bleu1,
    vqa_prf,
    vqa_word_exact,
)
from medvqa.metrics._tokenize import treebank_tokenize
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

ItemValue = float | bool | str
"""A per-item value: a metric (float or bool) or a string (extracted/normalized text, rule)."""

_YES_NO = frozenset({"yes", "no"})
_LLAVA_BLEU_WEIGHTS = ((0.25, 0.25, 0.25, 0.25), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0))


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


_EMPTY_SPEC = AggregateSpec("empty_predictions", "empty_predictions", "empty", "all", ci=False)


@dataclass(frozen=True)
class PaperProfile(Profile):
    """``paper``: the Med-Idefics paper's evaluation, quirks included.

    * Truth is only lowercased; pred is lowercased and passed through the paper's extractor
      (:func:`medvqa.answers.extract_paper_answer`).
    * ``containment`` (the paper's "Exact Match"): truth is a character substring of pred, so
      ``no`` matches ``not`` and ``abnormal`` (a known false positive).
    * ``f1``: Treebank tokens with punctuation kept, set intersection over list-length
      denominators: a correct ``"no."`` against ``"no"`` scores 0.667.
    * ``bleu1``: NLTK ``sentence_bleu`` with weights (1, 0, 0, 0), no smoothing (``"no."``
      against ``"no"`` scores 0.5).
    * Aggregates: plain means over all items, and over closed and open items.

    Reproduces the paper's per-item values to floating-point rounding without NLTK.
    """

    answers_only: ClassVar[bool] = True
    name: ClassVar[str] = "paper"
    source: ClassVar[str] = "Med-Idefics paper evaluation code (NLTK Treebank tokens, sentence_bleu)"
    metric_names: ClassVar[tuple[str, ...]] = ("containment", "f1", "bleu1")
    agreement_metrics: ClassVar[tuple[str, ...]] = ("containment", "f1", "bleu1")
    aggregates: ClassVar[tuple[AggregateSpec, ...]] = (
        *(AggregateSpec(m, m, m, "all") for m in ("containment", "f1", "bleu1")),
        *(AggregateSpec(f"{m}/closed", m, m, "closed") for m in ("containment", "f1", "bleu1")),
        *(AggregateSpec(f"{m}/open", m, m, "open") for m in ("containment", "f1", "bleu1")),
        _EMPTY_SPEC,
    )

    def score_item(self, pred: Prediction) -> dict[str, ItemValue]:
        truth = pred.reference.lower()
        ex = extract_paper_answer(pred.prediction)
        tt = treebank_tokenize(truth)
        pt = treebank_tokenize(ex.answer)
        out = _common(pred, ex.answer, ex.rule, ex.answer, truth)
        out["closed"] = self.is_closed(pred, truth.strip())
        out["containment"] = 1.0 if containment(truth, ex.answer) else 0.0
        out["f1"] = paper_f1(tt, pt)
        out["bleu1"] = sentence_bleu(tt, pt, (1, 0, 0, 0))
        return out


@dataclass(frozen=True)
class LlavaMedProfile(Profile):
    """``llava_med``: LLaVA-Med v1.0's ``run_eval_batch.py`` (the paper-table variant).

    * No extraction. Both strings are lowercased and passed once through
      :func:`medvqa.answers.normalize_vqav2` (VQA v2 rules, with the upstream look-ahead
      typo: periods are removed whether or not a digit precedes them, at most 32).
    * ``accuracy/closed``: normalized truth is a Python substring of normalized pred, so
      ``no`` matches ``normal`` and a pred holding both ``yes`` and ``no`` is right for
      either. Averaged over CLOSED items.
    * ``recall``, ``precision``, ``f1``, ``exact``: the upstream functions normalize their
      inputs a second time (so normalization is applied twice); word counts over the union
      of word types (see :func:`~medvqa.metrics.vqa_prf`). ``exact`` is *not* exact
      match: distinct truth words found in pred divided by the number of pred tokens.
    * ``hit/open``: normalized truth ⊂ normalized pred, over OPEN items.
    * ``bleu`` (4-gram, equal weights) and ``bleu1``/``bleu2``/``bleu3`` (weights (1,0,0,0),
      (0,1,0,0), (0,0,1,0)): NLTK ``sentence_bleu`` on whitespace tokens, no smoothing.
    * Open-question metrics average over OPEN items only; ``recall/closed`` (upstream's
      ``recall_closed``) is the same recall over CLOSED items.

    The sampling decoding LLaVA-Med used (temperature 0.7) is not part of the profile.
    """

    answers_only: ClassVar[bool] = True
    name: ClassVar[str] = "llava_med"
    source: ClassVar[str] = "LLaVA-Med v1.0 llava/eval/run_eval_batch.py and eval_metrics/utils.py"
    metric_names: ClassVar[tuple[str, ...]] = (
        "hit", "recall", "precision", "f1", "exact", "bleu", "bleu1", "bleu2", "bleu3",
    )  # fmt: skip
    agreement_metrics: ClassVar[tuple[str, ...]] = ("hit", "recall", "f1")
    aggregates: ClassVar[tuple[AggregateSpec, ...]] = (
        AggregateSpec("accuracy/closed", "accuracy", "hit", "closed"),
        AggregateSpec("recall/open", "recall", "recall", "open"),
        AggregateSpec("precision/open", "precision", "precision", "open"),
        AggregateSpec("f1/open", "f1", "f1", "open"),
        AggregateSpec("exact/open", "exact", "exact", "open"),
        AggregateSpec("hit/open", "hit", "hit", "open"),
        AggregateSpec("bleu/open", "bleu", "bleu", "open"),
        AggregateSpec("bleu1/open", "bleu1", "bleu1", "open"),
        AggregateSpec("bleu2/open", "bleu2", "bleu2", "open"),
        AggregateSpec("bleu3/open", "bleu3", "bleu3", "open"),
        AggregateSpec("recall/closed", "recall", "recall", "closed"),
        _EMPTY_SPEC,
    )

    def score_item(self, pred: Prediction) -> dict[str, ItemValue]:
        t1 = normalize_vqav2(pred.reference.lower())
        p1 = normalize_vqav2(pred.prediction.lower())
        t2 = normalize_vqav2(t1).split()
        p2 = normalize_vqav2(p1).split()
        tw, pw = t1.split(), p1.split()
        precision, recall, f1 = vqa_prf(t2, p2)
        out = _common(pred, pred.prediction, "none", p1, t1)
        out["closed"] = self.is_closed(pred, t1)
        out["hit"] = 1.0 if t1 in p1 else 0.0
        out["recall"] = recall
        out["precision"] = precision
        out["f1"] = f1
        out["exact"] = vqa_word_exact(t2, p2)
        out["bleu"], out["bleu1"], out["bleu2"], out["bleu3"] = sentence_bleus(tw, pw, _LLAVA_BLEU_WEIGHTS)
        return out


@dataclass(frozen=True)
class LmmsEvalProfile(Profile):
    """``lmms_eval``: lmms-eval's SLAKE task.

    * No extraction; both strings pass through :func:`medvqa.answers.normalize_lmms_eval`
      (parenthesised groups removed, punctuation to spaces, ``x ray`` → ``xray``, whole-string
      yes/no synonyms in English and Chinese folded).
    * ``accuracy``: normalized pred **equals** normalized truth, the same rule for open and
      closed questions; reported overall, for closed and open items, and (by default)
      broken down by ``modality`` and ``content_type`` when the items carry them (group
      values stripped and lowercased, as upstream: ``CT`` and ``ct`` are one group).
    """

    answers_only: ClassVar[bool] = True
    name: ClassVar[str] = "lmms_eval"
    source: ClassVar[str] = "lmms-eval lmms_eval/tasks/slake (SLAKE task normalization and scoring)"
    metric_names: ClassVar[tuple[str, ...]] = ("accuracy",)
    agreement_metrics: ClassVar[tuple[str, ...]] = ("accuracy",)
    aggregates: ClassVar[tuple[AggregateSpec, ...]] = (
        AggregateSpec("accuracy", "accuracy", "accuracy", "all"),
        AggregateSpec("accuracy/closed", "accuracy", "accuracy", "closed"),
        AggregateSpec("accuracy/open", "accuracy", "accuracy", "open"),
        _EMPTY_SPEC,
    )
    default_by: ClassVar[tuple[str, ...]] = ("modality", "content_type")
    fold_group_values: ClassVar[bool] = True

    def score_item(self, pred: Prediction) -> dict[str, ItemValue]:
        t = normalize_lmms_eval(pred.reference)
        p = normalize_lmms_eval(pred.prediction)
        out = _common(pred, pred.prediction, "none", p, t)
        out["closed"] = self.is_closed(pred, t)
        out["accuracy"] = 1.0 if p == t else 0.0
        return out


@dataclass(frozen=True)
class MultiMedEvalProfile(Profile):
    """``multimedeval``: MultiMedEval's VQA family (VQA-RAD, SLAKE, PathVQA tasks).

    * Cleaning: lowercase, then :func:`medvqa.answers.normalize_vqav2`
      (:func:`medvqa.answers.normalize_multimedeval`). Tokens are the **set** of whitespace
      tokens.
    * Per item: precision ``|P∩G|/|P|``, recall ``|P∩G|/|G|``, ``F1 = 2PR/(P+R+1e-8)`` (so a
      perfect answer scores 0.99999999), BLEU-1 = clipped unigram precision × brevity
      penalty (torchmetrics ``BLEUScore(n_gram=1)``, here in float64).
    * Precision, recall, F1 and BLEU-1 always use the **original** truth set G: truth
      ``no`` against pred ``No`` scores recall 1.0; against ``Not seen.`` recall 0.0 and
      F1 0.0.
    * Closed is decided by the profile itself, ignoring annotations: the cleaned truth is
      ``yes`` or ``no``. Only for the closed-correct decision is a truth ``no`` widened to
      G' = {``no``, ``not``}: a closed item is correct when ``|P∩G'|/|G'|`` ≥ 0.4 (so
      ``not`` alone, or ``no`` alone, is right for ``no``: ``Not seen.`` is closed-correct
      with recall 0.0).
    * Not reproduced: some MultiMedEval versions also lemmatize tokens with NLTK's WordNet
      lemmatizer (which needs downloaded data) and split on single spaces; this profile
      follows the cleaning above.
    * Aggregates: ``bleu``, ``F1``, ``recall`` are means over **all** items;
      ``closedQuestionsAccuracy`` over closed items; ``openQuestionsRecall`` (mean recall)
      and ``openQuestionsAccuracy`` (share with recall ≥ 0.75) over open items. The per-item
      ``correct`` (closed rule for closed items, recall ≥ 0.75 for open ones) serves the
      agreement with human judgements.
    """

    answers_only: ClassVar[bool] = True
    name: ClassVar[str] = "multimedeval"
    source: ClassVar[str] = "MultiMedEval multimedeval/vqa.py (VQA family scoring)"
    metric_names: ClassVar[tuple[str, ...]] = (
        "bleu1", "precision", "recall", "f1", "closed_correct", "open_correct", "correct",
    )  # fmt: skip
    agreement_metrics: ClassVar[tuple[str, ...]] = ("correct", "f1", "recall", "bleu1")
    aggregates: ClassVar[tuple[AggregateSpec, ...]] = (
        AggregateSpec("bleu", "bleu", "bleu1", "all"),
        AggregateSpec("F1", "F1", "f1", "all"),
        AggregateSpec("recall", "recall", "recall", "all"),
        AggregateSpec("closedQuestionsAccuracy", "closedQuestionsAccuracy", "closed_correct", "closed"),
        AggregateSpec("openQuestionsRecall", "openQuestionsRecall", "recall", "open"),
        AggregateSpec("openQuestionsAccuracy", "openQuestionsAccuracy", "open_correct", "open"),
        _EMPTY_SPEC,
    )

    def is_closed(self, pred: Prediction, truth_norm: str) -> bool:
        """MultiMedEval decides by itself: the cleaned truth is ``yes`` or ``no``."""
        return truth_norm in _YES_NO

    def score_item(self, pred: Prediction) -> dict[str, ItemValue]:
        t = normalize_multimedeval(pred.reference)
        p = normalize_multimedeval(pred.prediction)
        tw, pw = t.split(), p.split()
        gset, pset = set(tw), set(pw)
        precision, recall, f1 = set_precision_recall_f1(gset, pset)
        closed = self.is_closed(pred, t)
        closed_recall = recall
        if closed and gset == {"no"}:
            # Only the closed-correct decision widens a "no" truth to {no, not}.
            closed_recall = set_precision_recall_f1({"no", "not"}, pset)[1]
        out = _common(pred, pred.prediction, "none", p, t)
        out["closed"] = closed
        out["bleu1"] = torchmetrics_bleu1(tw, pw)
        out["precision"] = precision
        out["recall"] = recall
        out["f1"] = f1
        out["closed_correct"] = 1.0 if closed and closed_recall >= 0.4 else 0.0
        out["open_correct"] = 1.0 if recall >= 0.75 else 0.0
        out["correct"] = out["closed_correct"] if closed else out["open_correct"]
        return out


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

    answers_only: ClassVar[bool] = True
    name: ClassVar[str] = "strict"
    source: ClassVar[str] = "medvqa"
    metric_names: ClassVar[tuple[str, ...]] = (
        "accuracy", "exact_match", "f1", "recall", "fuzzy_match", "closed_undecided", "closed_conflicting",
    )  # fmt: skip
    agreement_metrics: ClassVar[tuple[str, ...]] = ("accuracy", "exact_match", "f1", "recall", "fuzzy_match")
    aggregates: ClassVar[tuple[AggregateSpec, ...]] = (
        AggregateSpec("accuracy", "accuracy", "accuracy", "all"),
        AggregateSpec("accuracy/closed", "accuracy", "accuracy", "closed"),
        AggregateSpec("accuracy/open", "accuracy", "accuracy", "open"),
        AggregateSpec("exact_match/open", "exact_match", "exact_match", "open"),
        AggregateSpec("f1/open", "f1", "f1", "open"),
        AggregateSpec("recall/open", "recall", "recall", "open"),
        AggregateSpec("fuzzy_match/open", "fuzzy_match", "fuzzy_match", "open"),
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
        from rapidfuzz.fuzz import ratio

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
        out["f1"] = squad_f1(tw, pw)
        out["recall"] = token_recall(tw, pw)
        out["fuzzy_match"] = 1.0 if ratio(p, t) >= self.fuzzy_threshold else 0.0
        out["closed_undecided"] = undecided
        out["closed_conflicting"] = conflicting
        return out


from medvqa.metrics._medevalkit import MedEvalKitProfile  # noqa: E402  (it subclasses Profile)

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


def _column(rows: Sequence[Mapping[str, ItemValue]], index: Any, metric: str) -> Any:
    """One metric's per-item values as floats, read once per distinct row."""
    import numpy as np

    return np.fromiter(map(itemgetter(metric), rows), dtype=np.float64, count=len(rows))[index]


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
        values = shared.field_values(fname)
        if prof.fold_group_values:
            values = [None if v is None or not v.strip() else v.strip().lower() for v in values]
        if all(v is None for v in values):
            continue
        labels = ["(missing)" if v is None else v for v in values]
        levels = sorted(set(labels))
        index = {lv: j for j, lv in enumerate(levels)}
        codes = np.fromiter((index[lv] for lv in labels), dtype=np.intp, count=n)
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
    if shared is None:
        shared = _Shared(predictions)
    rows, index = _score_items(prof, predictions, shared)
    closed = np.fromiter((bool(row["closed"]) for row in rows), dtype=bool, count=len(rows))[index]
    specs = _aggregate_specs(prof, shared, closed, by)
    order = shared.order
    columns: dict[str, Any] = {}

    def column(metric: str) -> Any:
        if metric not in columns:
            columns[metric] = _column(rows, index, metric)
        return columns[metric]

    aggregates: dict[str, Aggregate] = {}
    intervals: dict[tuple[str, str], tuple[float, float]] = {}
    for spec, key, subset, mask in specs:
        values = column(spec.item_metric)[mask]
        count = int(values.size)
        total = math.fsum(values.tolist())
        lo = hi = None
        if n_boot > 0 and spec.ci and count:
            if (subset, spec.item_metric) not in intervals:
                ordered = column(spec.item_metric)[order][mask[order]]  # items sorted by id
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
    return ProfileResult(
        profile=prof.name,
        aggregates=aggregates,
        per_item=_per_item(rows, index.tolist(), predictions) if keep_per_item else [],
        metric_names=prof.metric_names,
        n=len(predictions),
        seed=seed,
        n_boot=n_boot,
        options=prof.to_dict(),
        agreement_metrics=prof.agreement_metrics or prof.metric_names,
    )
