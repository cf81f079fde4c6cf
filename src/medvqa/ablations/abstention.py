"""Abstention on nonsense questions: does the model decline instead of answering confidently?

:func:`abstention` scores a run on nonsense questions: each answer is decided by documented
rules (:data:`DEFAULT_ABSTENTION_PATTERNS`, the whole-answer list, and the question's
abstaining option when it had options), which callers can extend or replace through
:class:`AbstentionRules`. The rate comes with a Wilson score interval. Light core (no torch).

>>> detect_abstention("I'm sorry, I cannot determine that from this image.").rule
'cannot_determine'
>>> detect_abstention("No evidence of fracture.").abstained
False
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medvqa.records import Prediction

__all__ = [
    "DEFAULT_ABSTENTION_PATTERNS",
    "DEFAULT_ABSTENTION_RULES",
    "DEFAULT_WHOLE_ANSWERS",
    "AbstentionDecision",
    "AbstentionResult",
    "AbstentionRules",
    "abstention",
    "detect_abstention",
]

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
    """The options and the abstaining key a prediction carries (see :func:`medvqa.data.options_from_metadata`)."""
    from medvqa.data import options_from_metadata

    options = options_from_metadata(p.metadata, row=f"prediction {p.id!r}")
    if options is None:
        return None, None
    key = p.metadata.get("abstain_option")
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


# Over 60 lines only through its signature and docstring; the body is about 25 lines.
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
        examples=_examples(predictions, decisions, seed, n_examples),
        decisions=tuple(decisions),
        level=level,
        seed=seed,
    )


def _examples(
    predictions: Sequence[Prediction], decisions: Sequence[AbstentionDecision], seed: int, n: int
) -> tuple[Mapping[str, Any], ...]:
    """Up to ``n`` seeded examples of each outcome (abstained first), keyed on prediction ids."""
    picked: list[Mapping[str, Any]] = []
    for outcome in (True, False):
        chosen = sorted(
            (i for i, d in enumerate(decisions) if d.abstained == outcome and d.rule != "empty"),
            key=lambda i: _order_key(seed, predictions[i].id),
        )[:n]
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
    return tuple(picked)
