"""Scoring the ablations: visual reliance and abstention on nonsense questions.

Two probes turn ablation runs (see :mod:`medvqa.transforms`) into numbers with intervals:

* :func:`visual_reliance` pairs a normal run with an ablated run of the same items (swapped,
  blank or missing images, another prompt) and reports, for every per-item metric of a
  scoring profile, the paired difference ``normal - ablated`` with a seeded bootstrap
  interval, plus the share of answers that changed; closed and open questions separately.
  A model that reads the image loses accuracy when the image is swapped; a drop whose
  interval contains 0 is no evidence that it does.
* :func:`abstention` scores answers to nonsense questions: does the model decline, say it
  does not know, or pick the abstaining option, instead of answering confidently?
  Detection follows documented rules (:data:`DEFAULT_ABSTENTION_PATTERNS`) that callers can
  extend or replace through :class:`AbstentionRules`.

:func:`ablation_report` combines both into an :class:`AblationReport` that renders as
Markdown and JSON.

This module is part of the light core (no torch).

>>> detect_abstention("I'm sorry, I cannot determine that from this image.").rule
'cannot_determine'
>>> detect_abstention("No evidence of fracture.").abstained
False
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medvqa._errors import MedVQAError
from medvqa._io import atomic_write_json, atomic_write_text
from medvqa.records import Prediction, VQASample

if TYPE_CHECKING:
    from medvqa.chat import PromptTemplate
    from medvqa.transforms import Transform

__all__ = [
    "DEFAULT_ABSTENTION_PATTERNS",
    "DEFAULT_ABSTENTION_RULES",
    "DEFAULT_WHOLE_ANSWERS",
    "AblationReport",
    "AbstentionDecision",
    "AbstentionResult",
    "AbstentionRules",
    "MetricDifference",
    "ProbeError",
    "RelianceResult",
    "Subset",
    "ablation_report",
    "abstention",
    "detect_abstention",
    "run_ablations",
    "visual_reliance",
]

Subset = Literal["all", "closed", "open"]
"""Which items a number is computed on."""

_SUBSETS: tuple[Subset, ...] = ("all", "closed", "open")


class ProbeError(MedVQAError, ValueError):
    """Runs cannot be compared (different items, duplicated ids, ...); the message says which."""


# --- abstention ----------------------------------------------------------------------------------

_NEG = r"(?:cannot|can ?not|can't|could not|couldn't|am unable to|'m unable to|unable to|am not able to|not able to)"

DEFAULT_ABSTENTION_PATTERNS: tuple[tuple[str, str], ...] = (
    ("dont_know", r"\bi (?:do not|don't|dont|really don't|really do not) know\b"),
    ("dont_know", r"\bi(?: am|'m) (?:not sure|unsure|uncertain|not certain)\b"),
    ("dont_know", r"\b(?:i have )?no idea\b"),
    ("dont_know", r"\bi(?: am|'m) not (?:aware of|familiar with) (?:any|such|a|an|this|that|the)\b"),
    ("dont_know", r"\bnot known\b"),
    (
        "cannot_determine",
        rf"\b{_NEG} (?:be )?(?:determine[ds]?|tell|say|assess|identify|know|infer|conclude|confirm|evaluate)\b",
    ),
    (
        "cannot_determine",
        r"\b(?:cannot|can't|can ?not|could not) be (?:determined|answered|assessed|identified|known|inferred)\b",
    ),
    (
        "cannot_determine",
        r"\b(?:impossible|not possible) to (?:determine|tell|say|assess|answer|know|identify)\b",
    ),
    ("cannot_determine", r"\b(?:insufficient|not enough|inadequate) (?:information|data|context|details)\b"),
    (
        "cannot_determine",
        r"\b(?:limited|no) (?:information|data|context|details) (?:to|about|on|regarding|available|"
        r"(?:is |are )?(?:given|provided|shown|visible))\b",
    ),
    ("cannot_determine", r"\b(?:it is|it's|this is) (?:unclear|not clear)\b"),
    ("cannot_determine", r"\bnot (?:enough|sufficient) (?:information|data|context|evidence) to\b"),
    ("decline", rf"\bi {_NEG} (?:answer|provide|help|comment|respond|give)\b"),
    ("decline", r"\bi (?:will not|won't|must decline|have to decline|decline) to\b"),
    ("decline", r"\bi (?:must|have to) decline\b"),
    ("decline", r"\bunable to (?:answer|respond|provide)\b"),
    (
        "invalid_question",
        r"\b(?:the|this|your) question (?:is|seems|appears|looks)(?: to be)? (?:\w+ )?(?:nonsensical|invalid|unanswerable|meaningless|absurd|fictional|fictitious|made[- ]up|not (?:valid|answerable|meaningful|clear))\b",
    ),
    ("invalid_question", r"\b(?:does|do|did) not (?:make (?:any )?sense|exist)\b"),
    ("invalid_question", r"\b(?:doesn't|don't) (?:make (?:any )?sense|exist)\b"),
    (
        "invalid_question",
        r"\bno such (?:thing|organ|structure|creature|process|condition|disease|entity|procedure|image|finding)\b",
    ),
    (
        "invalid_question",
        r"\b(?:is|are) (?:not real|fictional|fictitious|imaginary|made[- ]up|nonexistent|non-existent)\b",
    ),
    (
        "invalid_question",
        r"\bnot (?:a real|an actual) (?:\w+ )?(?:thing|organ|structure|creature|process|condition|disease|entity|term)\b",
    ),
)
"""The default abstention rules: ``(rule name, regular expression)`` pairs.

Patterns are matched case-insensitively on the answer after Unicode NFKC folding, with curly
apostrophes made straight and whitespace collapsed. They are written to catch declines
("I cannot answer"), admissions of ignorance ("I don't know", "I'm not sure"), statements
that the question cannot be settled ("cannot be determined", "not enough information") and
rejections of the premise ("this question is nonsensical", "there is no such organ"). They
deliberately do not match confident medical negatives ("no evidence of fracture", "there is
no mass", "unknown primary"): a confident "no" is an answer, not an abstention.
"""

DEFAULT_WHOLE_ANSWERS: tuple[str, ...] = (
    "unknown",
    "unsure",
    "uncertain",
    "not sure",
    "n/a",
    "na",
    "not applicable",
    "idk",
    "no answer",
    "cannot say",
    "can't say",
    "not determinable",
    "undetermined",
    "unclear",
    "not clear",
    "?",
)
"""Answers that abstain when they are the whole answer (after folding, punctuation stripped)."""


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    return " ".join(text.split())


def _strip_punct(text: str) -> str:
    return text.strip().strip(".!,;:\"'()[]").strip()


@dataclass(frozen=True)
class AbstentionDecision:
    """Whether one answer abstains, and why.

    Attributes:
        abstained: ``True`` when a rule fired.
        rule: The rule that decided: a pattern rule name (``dont_know``,
            ``cannot_determine``, ``decline``, ``invalid_question``, ``custom``),
            ``whole_answer``, ``abstain_option`` (the answer picks the abstaining option),
            or, when it did not abstain, ``other_option`` (it picks another option),
            ``empty`` (nothing was generated) or ``confident``.
        matched: The text that the rule matched (empty when none).
    """

    abstained: bool
    rule: str
    matched: str = ""

    def to_dict(self) -> dict[str, Any]:
        """``{"abstained", "rule", "matched"}``."""
        return {"abstained": self.abstained, "rule": self.rule, "matched": self.matched}


@dataclass(frozen=True)
class AbstentionRules:
    """Configurable abstention detection (frozen; round-trips through :meth:`to_dict`).

    Rules are tried in this order: an empty answer is ``empty``; then, when the question
    has options, the option the answer picks (by its key, such as ``5``, ``(5)``,
    ``Option 5``, or by quoting an option's text); then the whole-answer list; then the
    patterns in order, then the extra phrases. The first rule that fires decides.

    Attributes:
        patterns: ``(rule name, regular expression)`` pairs (case-insensitive).
        whole_answers: Answers that abstain when they are the whole answer.
        extra_phrases: Plain phrases (not regular expressions) that also count as
            abstaining wherever they occur on word boundaries (rule ``custom``).
        match_options: Use the question's options when the prediction carries them.

    >>> rules = AbstentionRules(extra_phrases=("beyond my knowledge",))
    >>> rules.detect("That is beyond my knowledge.").rule
    'custom'
    >>> AbstentionRules.from_dict(rules.to_dict()) == rules
    True
    """

    patterns: tuple[tuple[str, str], ...] = DEFAULT_ABSTENTION_PATTERNS
    whole_answers: tuple[str, ...] = DEFAULT_WHOLE_ANSWERS
    extra_phrases: tuple[str, ...] = ()
    match_options: bool = True
    _compiled: tuple[tuple[str, re.Pattern[str]], ...] = field(
        default=(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        patterns = tuple((str(name), str(rx)) for name, rx in self.patterns)
        object.__setattr__(self, "patterns", patterns)
        object.__setattr__(self, "whole_answers", tuple(_strip_punct(_fold(a)) for a in self.whole_answers))
        object.__setattr__(self, "extra_phrases", tuple(str(p) for p in self.extra_phrases))
        compiled = []
        for index, (name, rx) in enumerate(patterns):
            if not name:
                raise ValueError(f"AbstentionRules: pattern {index} has an empty rule name")
            try:
                compiled.append((name, re.compile(rx, re.IGNORECASE)))
            except re.error as exc:
                raise ValueError(
                    f"AbstentionRules: pattern {index} ({name}) {rx!r} is not a valid regex: {exc}"
                ) from exc
        for phrase in self.extra_phrases:
            if not phrase.strip():
                raise ValueError("AbstentionRules: extra_phrases may not contain empty phrases")
            compiled.append(("custom", re.compile(rf"(?<!\w){re.escape(_fold(phrase))}(?!\w)")))
        object.__setattr__(self, "_compiled", tuple(compiled))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict that :meth:`from_dict` reads back."""
        return {
            "patterns": [list(p) for p in self.patterns],
            "whole_answers": list(self.whole_answers),
            "extra_phrases": list(self.extra_phrases),
            "match_options": self.match_options,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AbstentionRules:
        """Build rules from :meth:`to_dict` output (missing keys take the defaults)."""
        unknown = sorted(set(data) - {"patterns", "whole_answers", "extra_phrases", "match_options"})
        if unknown:
            raise ValueError(
                f"AbstentionRules: unknown keys {unknown}; valid: patterns, whole_answers, extra_phrases, "
                "match_options"
            )
        return cls(
            patterns=tuple((str(p[0]), str(p[1])) for p in data.get("patterns", DEFAULT_ABSTENTION_PATTERNS)),
            whole_answers=tuple(data.get("whole_answers", DEFAULT_WHOLE_ANSWERS)),
            extra_phrases=tuple(data.get("extra_phrases", ())),
            match_options=bool(data.get("match_options", True)),
        )

    def detect(
        self,
        text: str,
        *,
        options: Sequence[tuple[str, str]] | None = None,
        abstain_option: str | None = None,
    ) -> AbstentionDecision:
        """Decide whether ``text`` abstains (see the class docstring for the order of the rules).

        Args:
            text: The model's answer (raw generated text).
            options: The question's ``(key, text)`` options, if it had any.
            abstain_option: The key of the abstaining option among ``options``.
        """
        folded = _fold(text)
        if not _strip_punct(folded):
            return AbstentionDecision(False, "empty")
        if self.match_options and options and abstain_option is not None:
            picked = _picked_option(folded, options, abstain_option)
            if picked is not None:
                key, how = picked
                if key == abstain_option:
                    return AbstentionDecision(True, "abstain_option", how)
                return AbstentionDecision(False, "other_option", how)
        bare = _strip_punct(folded)
        if bare in self.whole_answers:
            return AbstentionDecision(True, "whole_answer", bare)
        for name, rx in self._compiled:
            m = rx.search(folded)
            if m:
                return AbstentionDecision(True, name, m.group(0))
        return AbstentionDecision(False, "confident")


_CUED_KEY = re.compile(
    r"^(?:the )?(?:correct |right |best )?(?:answer|option|choice)(?: is)?\s*[:#-]?\s*[(\[]?([0-9]+|[a-z])[)\]]?(?=[.:,;)\s]|$)"
)
_BARE_KEY = re.compile(r"^[(\[]?([0-9]+|[a-z])(?:[)\]]|(?=[.:]))")


def _picked_option(
    folded: str, options: Sequence[tuple[str, str]], prefer: str | None = None
) -> tuple[str, str] | None:
    """The key of the option an answer picks, and the text that showed it (or ``None``).

    A key counts when it opens the answer with a cue (``Option 5``, ``Answer: 5``), in
    brackets or followed by ``.``/``:`` (``(5)``, ``5.``, ``b)``), or alone (``5``). An
    answer that quotes an option's text picks it too (longest texts tried first).
    """
    keys = {_fold(k): k for k, _ in options}
    text = folded.strip()
    bare = _strip_punct(text)
    if bare in keys:
        return keys[bare], bare
    for rx in (_CUED_KEY, _BARE_KEY):
        m = rx.match(text)
        if m and m.group(1) in keys:
            return keys[m.group(1)], m.group(0).strip()
    # Longest texts first; among equal texts (a release may list one twice), ``prefer`` first.
    texts = sorted(
        ((k, _strip_punct(_fold(t))) for k, t in options), key=lambda kt: (-len(kt[1]), kt[0] != prefer)
    )
    for key, option in texts:
        if option and (
            bare == option or (len(option) >= 3 and re.search(rf"(?<!\w){re.escape(option)}(?!\w)", text))
        ):
            return key, option
    return None


DEFAULT_ABSTENTION_RULES = AbstentionRules()
"""The rules :func:`detect_abstention` and :func:`abstention` use by default."""


def detect_abstention(
    text: str,
    *,
    options: Sequence[tuple[str, str]] | None = None,
    abstain_option: str | None = None,
    rules: AbstentionRules = DEFAULT_ABSTENTION_RULES,
) -> AbstentionDecision:
    """Decide whether one answer abstains (see :class:`AbstentionRules`).

    >>> detect_abstention("I do not know.").rule
    'dont_know'
    >>> detect_abstention("5", options=[("4", "Zeus"), ("5", "I do not know")], abstain_option="5").rule
    'abstain_option'
    >>> detect_abstention("Option 4: Zeus", options=[("4", "Zeus"), ("5", "I do not know")],
    ...                   abstain_option="5").abstained
    False
    """
    return rules.detect(text, options=options, abstain_option=abstain_option)


def _prediction_options(p: Prediction) -> tuple[list[tuple[str, str]] | None, str | None]:
    raw = p.metadata.get("options")
    key = p.metadata.get("abstain_option")
    if raw is None:
        return None, None
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise ProbeError(f"prediction {p.id!r}: metadata 'options' is not JSON: {exc}") from exc
    if isinstance(parsed, Mapping):
        options = [(str(k), str(v)) for k, v in parsed.items()]
    elif isinstance(parsed, list):
        raw_keys = p.metadata.get("option_keys")
        keys = json.loads(raw_keys) if isinstance(raw_keys, str) else list(range(len(parsed)))
        options = [(str(k), str(v)) for k, v in zip(keys, parsed)]
    else:
        raise ProbeError(f"prediction {p.id!r}: metadata 'options' must be a JSON list or object")
    return options, None if key is None else str(key)


def _order_key(seed: int, item_id: str) -> bytes:
    return hashlib.sha256(f"{seed}\x1f{item_id}".encode()).digest()


@dataclass(frozen=True)
class AbstentionResult:
    """How often a run abstained on nonsense questions.

    Attributes:
        name: The run's name (for example ``nonsense`` or ``nonsense_no_options``).
        n: Number of answers scored.
        abstained: Answers that abstained.
        confident: Answers that did not (including ``other_option``).
        empty: Empty answers (counted in ``n``, neither abstaining nor confident).
        rate: ``abstained / n``.
        ci_low: Lower end of the Wilson score interval of ``rate``.
        ci_high: Upper end.
        by_rule: How many answers each rule decided.
        examples: A few seeded examples of each outcome (``id``, ``question``,
            ``prediction``, ``rule``, ``matched``, ``abstained``).
        decisions: One decision per prediction, in input order.
        level: Confidence level of the interval.
        seed: Seed of the choice of examples.
    """

    name: str
    n: int
    abstained: int
    confident: int
    empty: int
    rate: float | None
    ci_low: float | None
    ci_high: float | None
    by_rule: Mapping[str, int]
    examples: tuple[Mapping[str, Any], ...]
    decisions: tuple[AbstentionDecision, ...] = field(repr=False)
    level: float = 0.95
    seed: int = 0

    def to_dict(self, *, decisions: bool = False) -> dict[str, Any]:
        """A JSON-friendly dict (per-item decisions only when ``decisions=True``)."""
        out: dict[str, Any] = {
            "name": self.name,
            "n": self.n,
            "abstained": self.abstained,
            "confident": self.confident,
            "empty": self.empty,
            "rate": self.rate,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "level": self.level,
            "seed": self.seed,
            "by_rule": dict(self.by_rule),
            "examples": [dict(e) for e in self.examples],
        }
        if decisions:
            out["decisions"] = [d.to_dict() for d in self.decisions]
        return out


def abstention(
    predictions: Sequence[Prediction],
    *,
    name: str = "nonsense",
    rules: AbstentionRules = DEFAULT_ABSTENTION_RULES,
    seed: int = 0,
    level: float = 0.95,
    n_examples: int = 3,
) -> AbstentionResult:
    """Score a run on nonsense questions for abstention.

    Options and the abstaining key are read from each prediction's metadata (``options``,
    ``option_keys``, ``abstain_option``, as :mod:`medvqa.data` writes them for Med-HALT and
    generation copies them). The interval of the rate is the Wilson score interval, which
    stays meaningful at rates of 0 and 1.

    Args:
        predictions: The run's predictions.
        name: A name for the run in reports.
        rules: The detection rules.
        seed: Seed of the choice of examples (keyed on prediction ids).
        level: Confidence level.
        n_examples: How many examples of each outcome (abstained, confident) to keep.

    >>> from medvqa.records import Prediction
    >>> preds = [Prediction(id=str(i), question="q", reference="I do not know", prediction=t,
    ...                     answer_type="open") for i, t in enumerate(["I don't know.", "The liver.",
    ...                                                                "Cannot be determined", ""])]
    >>> r = abstention(preds)
    >>> r.abstained, r.confident, r.empty, r.rate
    (2, 1, 1, 0.5)
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    decisions = []
    for p in predictions:
        options, key = _prediction_options(p) if rules.match_options else (None, None)
        decisions.append(rules.detect(p.prediction, options=options, abstain_option=key))
    n = len(decisions)
    abstained = sum(d.abstained for d in decisions)
    empty = sum(d.rule == "empty" for d in decisions)
    rate = abstained / n if n else None
    lo = hi = None
    if n:
        from medvqa.metrics import wilson_interval

        lo, hi = wilson_interval(abstained, n, level)
    picked: list[Mapping[str, Any]] = []
    for outcome in (True, False):
        chosen = sorted(
            (i for i, d in enumerate(decisions) if d.abstained == outcome and d.rule != "empty"),
            key=lambda i: _order_key(seed, predictions[i].id),
        )[:n_examples]
        for i in chosen:
            picked.append(
                {
                    "id": predictions[i].id,
                    "question": predictions[i].question,
                    "prediction": predictions[i].prediction,
                    "abstained": decisions[i].abstained,
                    "rule": decisions[i].rule,
                    "matched": decisions[i].matched,
                }
            )
    return AbstentionResult(
        name=name,
        n=n,
        abstained=abstained,
        confident=n - abstained - empty,
        empty=empty,
        rate=rate,
        ci_low=lo,
        ci_high=hi,
        by_rule=dict(sorted(Counter(d.rule for d in decisions).items())),
        examples=tuple(picked),
        decisions=tuple(decisions),
        level=level,
        seed=seed,
    )


# --- visual reliance -----------------------------------------------------------------------------


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
    from medvqa.metrics import evaluate, paired_comparison

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
    differences = []
    for key in keys:
        c = paired_comparison(
            list(normal), paired, profile=profile, metric=key, seed=seed, n_boot=n_boot, level=level
        )
        differences.append(
            MetricDifference(
                metric=key,
                subset=result_a.aggregates[key].subset,
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
        )
    closed = [bool(row.get("closed")) for row in result_a.per_item]
    flags = [
        row_a.get("pred_norm") != row_b.get("pred_norm")
        for row_a, row_b in zip(result_a.per_item, result_b.per_item)
    ]
    changed: dict[str, tuple[int, int]] = {}
    for subset in _SUBSETS:
        members = [i for i in range(len(paired)) if subset == "all" or closed[i] == (subset == "closed")]
        changed[subset] = (sum(flags[i] for i in members), len(members))
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


# --- report --------------------------------------------------------------------------------------


def _cell(text: object, limit: int = 160) -> str:
    s = " ".join(str(text).split()).replace("|", "\\|")
    return s if len(s) <= limit else s[: limit - 1] + "\u2026"


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _interval(lo: float | None, hi: float | None, digits: int = 3) -> str:
    return "" if lo is None or hi is None else f" [{lo:.{digits}f}, {hi:.{digits}f}]"


@dataclass(frozen=True)
class AblationReport:
    """Reliance and abstention results of one model, ready to print or save.

    Attributes:
        title: Heading of the Markdown report.
        profile: Scoring profile of the reliance results.
        n_baseline: Items in the normal run.
        reliance: One :class:`RelianceResult` per ablation.
        abstention: One :class:`AbstentionResult` per nonsense-question run.
        config: Free-form settings to record (model, dataset, seed, transforms, ...).
    """

    title: str
    profile: str
    n_baseline: int
    reliance: tuple[RelianceResult, ...] = ()
    abstention: tuple[AbstentionResult, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of everything in the report."""
        return {
            "title": self.title,
            "profile": self.profile,
            "n_baseline": self.n_baseline,
            "config": dict(self.config),
            "reliance": [r.to_dict() for r in self.reliance],
            "abstention": [a.to_dict() for a in self.abstention],
        }

    def to_markdown(self, *, digits: int = 3) -> str:
        """The report as Markdown: tables of paired differences, changed answers and abstention."""
        lines = [f"# {self.title}", ""]
        if self.config:
            lines += ["| setting | value |", "|---|---|"]
            lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in self.config.items()]
            lines.append("")
        if self.reliance:
            first = self.reliance[0]
            lines += [
                "## Paired differences against the normal run",
                "",
                f"Profile `{self.profile}`; {self.n_baseline} items in the normal run. "
                f"*drop* = normal - ablated, mean over the items scored in both runs, with a "
                f"{first.level:.0%} paired percentile bootstrap interval ({first.n_boot} replicates, "
                f"seed {first.seed}). An interval that excludes 0 (marked \\*) is evidence that the "
                "ablated input matters for that metric; one that contains 0 is not.",
                "",
                "| ablation | metric | n | normal | ablated | drop [CI] | McNemar p |",
                "|---|---|---:|---:|---:|---|---:|",
            ]
            for r in self.reliance:
                for d in r.differences:
                    mark = " \\*" if d.significant else ""
                    mc = "" if d.p_mcnemar is None else f"{d.p_mcnemar:.3g}"
                    lines.append(
                        f"| {_cell(r.name)} | {_cell(d.metric)} | {d.n} | {_num(d.normal, digits)} | "
                        f"{_num(d.ablated, digits)} | {_num(d.drop, digits)}"
                        f"{_interval(d.ci_low, d.ci_high, digits)}{mark} | {mc} |"
                    )
            lines += [
                "",
                "### Answers that changed",
                "",
                "Share of items whose normalized extracted answer differs from the normal run's.",
                "",
                "| ablation | transform | all | closed | open |",
                "|---|---|---|---|---|",
            ]
            for r in self.reliance:
                cells = []
                for subset in _SUBSETS:
                    c, n = r.changed.get(subset, (0, 0))
                    cells.append(f"{c}/{n} ({c / n:.1%})" if n else "0/0")
                lines.append(f"| {_cell(r.name)} | `{_cell(r.transform)}` | {' | '.join(cells)} |")
            lines.append("")
        if self.abstention:
            first_a = self.abstention[0]
            lines += [
                "## Abstention on nonsense questions",
                "",
                "A good answer to a nonsense question declines, says it does not know, or picks the "
                f"abstaining option. Rate = abstained / n, with a {first_a.level:.0%} Wilson score "
                "interval. Empty answers count in n but neither as abstaining nor as confident. "
                "Detection follows the documented rules of `medvqa.probes.AbstentionRules`; check "
                "the examples below before trusting the rate.",
                "",
                "| run | n | abstained | rate [CI] | confident | empty | rules that fired |",
                "|---|---:|---:|---|---:|---:|---|",
            ]
            for a in self.abstention:
                rules = ", ".join(f"{k}: {v}" for k, v in a.by_rule.items())
                lines.append(
                    f"| {_cell(a.name)} | {a.n} | {a.abstained} | {_num(a.rate, digits)}"
                    f"{_interval(a.ci_low, a.ci_high, digits)} | {a.confident} | {a.empty} | {_cell(rules)} |"
                )
            for a in self.abstention:
                if not a.examples:
                    continue
                lines += [
                    "",
                    f"### Examples: {_cell(a.name)}",
                    "",
                    "| outcome | rule | question | answer |",
                    "|---|---|---|---|",
                ]
                for e in a.examples:
                    outcome = "abstained" if e["abstained"] else "confident"
                    lines.append(
                        f"| {outcome} | {e['rule']} | {_cell(e['question'], 120)} | {_cell(e['prediction'], 120)} |"
                    )
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def write(self, folder: str | os.PathLike[str], *, stem: str = "report") -> tuple[Path, Path]:
        """Write ``<stem>.md`` and ``<stem>.json`` into ``folder`` (atomically); return both paths."""
        out = Path(folder)
        md, js = out / f"{stem}.md", out / f"{stem}.json"
        atomic_write_text(md, self.to_markdown())
        atomic_write_json(js, self.to_dict())
        return md, js


def ablation_report(
    normal: Sequence[Prediction],
    runs: Mapping[str, Sequence[Prediction]],
    *,
    nonsense: Mapping[str, Sequence[Prediction]] | None = None,
    profile: str = "strict",
    metrics: Sequence[str] | None = None,
    rules: AbstentionRules = DEFAULT_ABSTENTION_RULES,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    title: str = "Ablation report",
    config: Mapping[str, Any] | None = None,
) -> AblationReport:
    """Score every ablation run against the normal run, and every nonsense run for abstention.

    Args:
        normal: The normal (untransformed) run.
        runs: Ablated runs by name; each must hold the normal run's ids.
        nonsense: Nonsense-question runs by name (scored with :func:`abstention`).
        profile: Scoring profile of the paired differences.
        metrics: Per-item metrics to compare (default: all of the profile's).
        rules: Abstention rules.
        seed: Seed of every bootstrap.
        n_boot: Bootstrap replicates.
        level: Confidence level.
        title: Report heading.
        config: Settings to record in the report.
    """
    reliance = tuple(
        visual_reliance(
            normal, preds, name=name, profile=profile, metrics=metrics, seed=seed, n_boot=n_boot, level=level
        )
        for name, preds in runs.items()
    )
    abst = tuple(
        abstention(preds, name=name, rules=rules, seed=seed, level=level)
        for name, preds in (nonsense or {}).items()
    )
    return AblationReport(
        title=title,
        profile=profile,
        n_baseline=len(normal),
        reliance=reliance,
        abstention=abst,
        config=dict(config or {}),
    )


_RESERVED = "baseline"


def _file_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.+=-]+", "_", name).strip("._")
    if not safe:
        raise ValueError(f"run name {name!r} gives an empty file name")
    return safe


def run_ablations(
    model: Any,
    processor: Any,
    samples: Sequence[VQASample],
    transforms: Mapping[str, Transform],
    output: str | os.PathLike[str],
    *,
    nonsense: Mapping[str, Sequence[VQASample]] | None = None,
    profile: str = "strict",
    rules: AbstentionRules = DEFAULT_ABSTENTION_RULES,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    batch_size: int = 8,
    max_new_tokens: int = 20,
    nonsense_max_new_tokens: int = 50,
    prompt: PromptTemplate | str | None = None,
    progress: bool = True,
    config: Mapping[str, Any] | None = None,
    num_workers: int | None = None,
    sort_by_length: bool = False,
    resume_unverified: bool = False,
    on_bad_image: str = "error",
) -> AblationReport:
    """Run a model on the samples as they are and under each transform, then score the probes.

    Writes, under ``output``: ``predictions/baseline.jsonl`` (the untransformed samples),
    ``predictions/<name>.jsonl`` for every transform and every nonsense run (each row's
    metadata says which transform produced it), ``ablations.json`` (the transforms and
    settings), ``report.md`` / ``report.json`` (see :func:`ablation_report`) and
    ``scores.json``, the normal and every ablated run scored under ``profile`` (a score file,
    see :func:`medvqa.metrics.read_scores`). Prediction
    files are streamed and resumed by :func:`medvqa.generation.generate_answers`, so an
    interrupted run started again with the same ``output`` loses nothing.

    Needs the ``medvqa[train]`` extra (generation); torch is imported only here.

    Args:
        model: An Idefics2 model (see :mod:`medvqa.models`).
        processor: Its processor.
        samples: The questions of the normal run.
        transforms: Ablations by name (:class:`medvqa.transforms.Transform` objects, e.g.
            from :func:`medvqa.transforms.parse_transforms`); the name ``baseline`` is reserved.
        output: Output folder.
        nonsense: Nonsense-question sample lists by name (already paired with images, e.g.
            by :class:`medvqa.transforms.NonsenseQuestions`), scored for abstention.
        profile: Scoring profile of the paired differences.
        rules: Abstention rules.
        seed: Seed of the bootstraps.
        n_boot: Bootstrap replicates.
        level: Confidence level.
        batch_size: Generation batch size.
        max_new_tokens: Longest answer for the normal and ablated runs (paper: 20).
        nonsense_max_new_tokens: Longest answer for nonsense questions (paper: 50).
        prompt: Prompt template or name passed to generation (``None``: per-sample default).
        progress: Show progress bars.
        num_workers: Data-loader workers of generation (``None``: the default of
            :func:`medvqa.generation.generate_answers`).
        sort_by_length: Batch by prompt length (same answers, same file order).
        config: Extra settings recorded in the report, and in each prediction file's run
            record (resuming a file with other settings is refused).
        resume_unverified: Resume prediction files that have no run record (see
            :func:`medvqa.generation.generate_answers`).
        on_bad_image: ``error`` or ``skip`` (see :func:`medvqa.generation.generate_answers`);
            a skipped sample is missing from that run's file and listed in its run record.

    Returns:
        The report (also written to ``output``).
    """
    from medvqa.generation import generate_answers

    names = list(transforms) + list(nonsense or {})
    if _RESERVED in names:
        raise ValueError(f"the run name {_RESERVED!r} is reserved for the untransformed run")
    files = [_file_name(n) for n in names]
    clash = sorted({f for f in files if files.count(f) > 1})
    if clash:
        raise ValueError(f"run names map to the same file name {clash}; rename them")
    out = Path(output)
    pred_dir = out / "predictions"
    settings: dict[str, Any] = {
        "profile": profile,
        "seed": seed,
        "n_boot": n_boot,
        "level": level,
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        "nonsense_max_new_tokens": nonsense_max_new_tokens,
        "n_samples": len(samples),
        "transforms": {name: t.to_dict() for name, t in transforms.items()},
        "nonsense": {name: len(v) for name, v in (nonsense or {}).items()},
        "abstention_rules": rules.to_dict(),
        **dict(config or {}),
    }
    from medvqa._distributed import is_main_process

    if is_main_process():
        atomic_write_json(out / "ablations.json", settings)

    described = {name: t.to_dict() for name, t in transforms.items()}

    def generate(name: str, items: Sequence[VQASample], tokens: int) -> list[Prediction]:
        return generate_answers(
            model,
            processor,
            items,
            batch_size=batch_size,
            max_new_tokens=tokens,
            prompt=prompt,
            output=pred_dir / f"{_file_name(name)}.jsonl",
            progress=progress,
            num_workers=num_workers,
            sort_by_length=sort_by_length,
            run={"command": "ablate", "run": name, "transform": described.get(name), **dict(config or {})},
            resume_unverified=resume_unverified,
            on_bad_image=on_bad_image,  # type: ignore[arg-type]
        )

    baseline = generate(_RESERVED, samples, max_new_tokens)
    runs = {name: generate(name, t(samples), max_new_tokens) for name, t in transforms.items()}
    nonsense_runs = {
        name: generate(name, items, nonsense_max_new_tokens) for name, items in (nonsense or {}).items()
    }
    shown = {k: v for k, v in settings.items() if k not in ("transforms", "abstention_rules", "nonsense")}
    shown["runs"] = ", ".join([_RESERVED, *names])
    report = ablation_report(
        baseline,
        runs,
        nonsense=nonsense_runs,
        profile=profile,
        rules=rules,
        seed=seed,
        n_boot=n_boot,
        level=level,
        config=shown,
    )
    if is_main_process():
        report.write(out)
        _write_run_scores(out, pred_dir, {_RESERVED: baseline, **runs}, profile, seed, n_boot, config)
    return report


def _write_run_scores(
    out: Path,
    pred_dir: Path,
    runs: Mapping[str, Sequence[Prediction]],
    profile: str,
    seed: int,
    n_boot: int,
    config: Mapping[str, Any] | None,
) -> None:
    """``scores.json``: the normal and every ablated run scored under ``profile`` (a score file)."""
    from medvqa.metrics import build_score_file, write_scores

    files = {name: str(pred_dir / f"{_file_name(name)}.jsonl") for name in runs}
    scores = build_score_file(runs, profiles=profile, seed=seed, n_boot=n_boot, files=files, info=config)
    write_scores(out / "scores.json", scores)
