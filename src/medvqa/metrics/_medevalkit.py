"""The ``medevalkit`` profile: MedEvalKit's VQA rules, quirks included, without its dependencies.

MedEvalKit (alibaba-damo-academy/MedEvalKit, Xu et al. 2025, "Lingshu", arXiv:2506.07044;
``utils/utils.py`` and ``utils/{VQA_RAD,PATH_VQA,SLAKE}/*.py``) is the harness behind the
medical VQA tables of MedGemma, Lingshu, HuatuoGPT-Vision and Qwen2.5-VL. Its rules are
rewritten here as pure functions: BLEU equals NLTK's ``sentence_bleu`` and ROUGE equals the
``rouge`` package (pltrdy/rouge 1.0.1), to the last bit, with neither package installed.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from medvqa.metrics._base import _YES_NO, AggregateSpec, ItemValue, Profile, _common, _specs
from medvqa.metrics._items import sentence_bleu, sentence_bleus
from medvqa.records import Prediction

__all__ = [
    "MEDEVALKIT_CUES",
    "MedEvalKitProfile",
    "medevalkit_bleu",
    "medevalkit_bleu_1_to_4",
    "medevalkit_boxed",
    "medevalkit_parse",
    "medevalkit_pre_extract",
    "medevalkit_rouge",
    "medevalkit_set_prf",
    "medevalkit_tokenize",
]

MEDEVALKIT_CUES: tuple[str, ...] = (
    "**answer**:",
    "**answer**",
    "*answer*:",
    "**answer:**",
    "answer is",
    "answer:",
    "答案:",
    "final answer",
    "final answer is",
)
"""The answer cues of MedEvalKit's ``parse_response``, in the order they are tried."""

_BOXED = "\\boxed{"
_NO_BOX = "None"  # what the boxed extractor returns when it finds no balanced \boxed{...}


def medevalkit_boxed(text: str) -> str:
    """Content of the **last** balanced ``\\boxed{...}`` (stripped), or the string ``"None"``.

    The same rule as ``mathruler.grader.extract_boxed_content``, which MedEvalKit calls;
    the ``"None"`` sentinel is part of the rule (it becomes the parsed answer when a reply
    says "boxed" without a balanced ``\\boxed{}``).

    >>> medevalkit_boxed("so \\\\boxed{a} or \\\\boxed{\\\\frac{1}{2} }"), medevalkit_boxed("boxed in")
    ('\\\\frac{1}{2}', 'None')
    """
    start = text.rfind(_BOXED)
    if start == -1:
        return _NO_BOX
    content = text[start + len(_BOXED) :]
    depth = 0
    for i, char in enumerate(content):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == -1:
                return content[:i].strip()
    return _NO_BOX


def _tag_spans(text: str, tag: str) -> str:
    """Every ``<tag>...</tag>`` span joined by a space and stripped (``""`` if none closes)."""
    start_tag, end_tag = f"<{tag}>", f"</{tag}>"
    parts: list[str] = []
    start = text.find(start_tag)
    while start != -1:
        end = text.find(end_tag, start + len(start_tag))
        if end == -1:
            break
        parts.append(text[start + len(start_tag) : end] + " ")
        start = text.find(start_tag, end + len(end_tag))
    return "".join(parts).strip()


def _extract_tag(text: str, tag: str) -> str:
    """MedEvalKit's ``extract(text, tag)``: the tag spans, or the whole text when none closes."""
    return _tag_spans(text, tag) or text


def medevalkit_pre_extract(response: str) -> tuple[str, str]:
    """The dataset scripts' first step: ``(answer, rule)``.

    A balanced ``\\boxed{}`` wins, else ``<answer>`` spans; then the text is lowercased and
    stripped. ``rule`` is ``boxed``, ``answer_tag`` or ``none``.

    >>> medevalkit_pre_extract("<think>hm</think><answer> Liver </answer>")
    ('liver', 'answer_tag')
    """
    rule = "none"
    boxed = medevalkit_boxed(response)
    if boxed != _NO_BOX:
        response, rule = boxed, "boxed"
    elif "<answer>" in response:
        response, rule = _extract_tag(response, "answer"), "answer_tag"
    return response.lower().strip(), rule


def medevalkit_parse(response: str) -> tuple[str, str]:
    """MedEvalKit's ``parse_response``: ``(answer, rule)``, applied inside every judge.

    Lowercase; if the text contains ``boxed`` (anywhere) take :func:`medevalkit_boxed` (so
    ``"None"`` when no balanced box exists), else if it holds ``<answer>`` take the tag
    spans; then for each cue of :data:`MEDEVALKIT_CUES` in order, if it occurs keep only the
    text after its last occurrence. Nothing is stripped afterwards: ``"the answer is liver"``
    parses to ``" liver"``.

    >>> medevalkit_parse("Final answer: the answer is Liver")
    (' liver', 'cue:answer is')
    """
    text = response.lower()
    rule = "none"
    if "boxed" in text:
        text, rule = medevalkit_boxed(text), "boxed"
    elif "<answer>" in text:
        text, rule = _extract_tag(text, "answer"), "answer_tag"
    for cue in MEDEVALKIT_CUES:
        if cue in text:
            text = text.rsplit(cue, 1)[-1]
            rule = f"cue:{cue}"
    return text, rule


def medevalkit_tokenize(text: str) -> list[str]:
    """BLEU tokens: lowercase, ``.`` becomes `` .``, split on single spaces (empty tokens kept).

    >>> medevalkit_tokenize("Left  lung.")
    ['left', '', 'lung', '.']
    """
    return text.lower().replace(".", " .").split(" ")


_BLEU_1_TO_4 = tuple([1 / n] * n for n in (1, 2, 3, 4))


def medevalkit_bleu(pred: str, truth: str, n: int) -> float:
    """BLEU-``n``: NLTK ``sentence_bleu`` with weights ``(1/n,) * n``, no smoothing.

    >>> medevalkit_bleu("left lung", "left lung", 2), medevalkit_bleu("lung", "liver", 1)
    (1.0, 0.0)
    """
    return sentence_bleu(medevalkit_tokenize(truth), medevalkit_tokenize(pred), [1 / n] * n)


def medevalkit_bleu_1_to_4(pred: str, truth: str) -> tuple[float, float, float, float]:
    """BLEU-1..4 at once, each equal to :func:`medevalkit_bleu` (the n-gram counts are shared).

    >>> medevalkit_bleu_1_to_4("left lung", "left lung") == tuple(
    ...     medevalkit_bleu("left lung", "left lung", n) for n in (1, 2, 3, 4))
    True
    """
    b1, b2, b3, b4 = sentence_bleus(medevalkit_tokenize(truth), medevalkit_tokenize(pred), _BLEU_1_TO_4)
    return b1, b2, b3, b4


def _sentences(text: str) -> list[str]:
    return [" ".join(s.split()) for s in text.split(".") if len(s) > 0]


def _words(sentences: list[str]) -> list[str]:
    return [w for s in sentences for w in s.split(" ")]


def _f(overlap: int, hyp: int, ref: int) -> float:
    precision = overlap / hyp if hyp else 0.0
    recall = overlap / ref if ref else 0.0
    return 2.0 * ((precision * recall) / (precision + recall + 1e-8))


def _lcs_words(x: list[str], y: list[str]) -> set[str]:
    """Words of the LCS of ``x`` and ``y``, reconstructed with the ``rouge`` package's tie-break."""
    n, m = len(x), len(y)
    if n == 1 or m == 1:
        # One word on a side: the walk below finds that word in the other side, or nothing.
        word = x[0] if n == 1 else y[0]
        return {word} if word in (y if n == 1 else x) else set()
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        row, prev, xi = table[i], table[i - 1], x[i - 1]
        for j in range(1, m + 1):
            if xi == y[j - 1]:
                row[j] = prev[j - 1] + 1
            else:
                up, left = prev[j], row[j - 1]
                row[j] = up if up > left else left
    out: set[str] = set()
    i, j = n, m
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            out.add(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return out


@functools.lru_cache(maxsize=65536)
def _rouge_reference(
    truth: str,
) -> tuple[tuple[list[str], ...], frozenset[str], frozenset[tuple[str, str]]] | None:
    """The reference side of :func:`medevalkit_rouge` (references repeat across items).

    Each sentence's words, the set of all words and the set of word bigrams; ``None``
    when the reference has no sentence. Callers must not change the lists.
    """
    ref = _sentences(truth.lower())
    if not ref:
        return None
    rw = _words(ref)
    return tuple(r.split(" ") for r in ref), frozenset(rw), frozenset(pairwise(rw))


def medevalkit_rouge(pred: str, truth: str) -> tuple[float, float, float] | None:
    """ROUGE-1, ROUGE-2 and ROUGE-L F scores as ``rouge.Rouge().get_scores(pred, truth)``.

    Both strings are lowercased and cut into sentences at ``.``; words are split on single
    spaces, n-grams are **sets** over all words (crossing sentence ends), ROUGE-L is the
    summary-level union LCS over word sets, and ``F = 2PR/(P+R+1e-8)``. Returns ``None``
    where the package raises (a side with no sentence: empty, or only periods). Unlike the
    package, long texts never hit Python's recursion limit.

    >>> [round(v, 4) for v in medevalkit_rouge("the left lung", "left lung")]
    [0.8, 0.6667, 0.8]
    >>> medevalkit_rouge("", "liver") is None
    True
    """
    hyp = _sentences(pred.lower())
    ref_side = _rouge_reference(truth)
    if not hyp or ref_side is None:
        return None
    ref_words, r_types, rs = ref_side
    hw = _words(hyp)
    h_types = set(hw)
    if h_types.isdisjoint(r_types):
        return 0.0, 0.0, 0.0  # what the formulas below give with no shared word
    # The unigram sets are the word sets; bigrams are pairs of neighbouring words.
    scores = [_f(len(h_types & r_types), len(h_types), len(r_types))]
    hs = set(pairwise(hw))
    scores.append(_f(len(hs & rs), len(hs), len(rs)))
    union: set[str] = set()
    hyp_words = [s.split(" ") for s in hyp]
    for r_words in ref_words:
        for h_words in hyp_words:
            if not r_types.isdisjoint(h_words):  # else their LCS is empty
                union |= _lcs_words(r_words, h_words)
    m, n_words = len(r_types), len(h_types)
    llcs = len(union)
    r_lcs, p_lcs = llcs / m, llcs / n_words
    scores.append(2.0 * ((p_lcs * r_lcs) / (p_lcs + r_lcs + 1e-8)))
    return scores[0], scores[1], scores[2]


def medevalkit_set_prf(pred: str, truth: str) -> tuple[float, float, float] | None:
    """True token-**set** ``(precision, recall, f1)`` on lowercase whitespace tokens.

    Punctuation stays attached (``cardiomegaly,`` is not ``cardiomegaly``). ``None`` when a
    side has no token (upstream returns a bare 0 there, which crashes its caller). MedEvalKit
    itself returns ``(f1, precision, recall)`` and unpacks it as ``(precision, recall, f1)``;
    see :class:`MedEvalKitProfile` ``swapped_labels``.

    >>> medevalkit_set_prf("left lung lung", "the left lung")
    (1.0, 0.6666666666666666, 0.8)
    """
    p, t = set(pred.lower().split()), set(truth.lower().split())
    if not p or not t:
        return None
    common = len(p & t)
    precision, recall = common / len(p), common / len(t)
    if precision + recall == 0:
        return 0.0, 0.0, 0.0
    return precision, recall, 2 * (precision * recall) / (precision + recall)


_OPEN = ("em", "bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougel", "precision", "recall", "f1")
_ZEROS = dict.fromkeys((*_OPEN, "unscorable", "judge_unparseable"), 0.0)


@dataclass(frozen=True)
class MedEvalKitProfile(Profile):
    """``medevalkit``: MedEvalKit's VQA-RAD, PathVQA and SLAKE scoring, quirks included.

    * Pre-extraction (:func:`medevalkit_pre_extract`): a balanced ``\\boxed{}`` or
      ``<answer>`` spans; truth and reply lowercased and stripped. Every rule then parses
      again (:func:`medevalkit_parse`: ``\\boxed{}`` / ``<answer>``, then the last occurrence
      of each answer cue, in order).
    * Closed: VQA-RAD and PathVQA (any dataset not named SLAKE): the truth is ``yes``/``no``,
      whatever the annotation says. SLAKE: the ``closed`` annotation. With a yes/no truth, the
      parsed reply without newlines and periods is right iff exactly one of the **substrings**
      ``yes``, ``no`` occurs (so ``normal``, ``none``, ``not``, ``know`` count as ``no``) and
      the truth is a substring of it. A SLAKE closed item with another truth (``left``) is
      right iff the same cleaned reply equals the truth.
    * Open: ``em`` = parsed reply equals truth (not stripped: ``"answer: liver"`` parses to
      ``" liver"`` and is wrong); BLEU-1..4 (:func:`medevalkit_bleu`), ROUGE-1/2/L F
      (:func:`medevalkit_rouge`), token-set precision/recall/F1 (:func:`medevalkit_set_prf`).
    * ``swapped_labels=True`` reproduces MedEvalKit's mislabelled columns: its ``precision``
      is F1, its ``recall`` is precision and its ``f1`` is recall. Default: the true values.
    * Where MedEvalKit crashes (an empty parsed reply: ``rouge`` raises, the F1 helper returns
      a bare 0), the item scores 0 and is counted in ``unscorable/open``; blank replies are
      also counted in ``empty_predictions``. Nothing crashes.
    * Aggregates: ``accuracy`` = (closed right + open right) / all; ``accuracy/closed``;
      ``accuracy/open``; open means of every open metric. Without a judge an open item is
      right iff ``em``. With ``judge_verdicts`` (see :func:`medvqa.metrics.judge_predictions`)
      an open item is right iff the judge says so, as in the published tables; a verdict that
      could not be parsed counts as wrong, as upstream, and is counted in
      ``judge_unparseable``. ``em/open`` stays the rule-based exact match.

    Args:
        swapped_labels: Report MedEvalKit's swapped precision/recall/F1 labels (parity mode).
        judge_verdicts: Per-item judge verdicts by prediction id (``True`` right, ``False``
            wrong, ``None`` unparseable), required for every open item when given.
        judge: A description of the judge (model id, prompt version), recorded in options.
    """

    name = "medevalkit"
    source = "MedEvalKit utils/utils.py and utils/{VQA_RAD,PATH_VQA,SLAKE} (commit 9b12e3b)"
    metric_names = ("correct", *_OPEN, "unscorable", "judge_unparseable")
    agreement_metrics = ("correct", "em", "f1", "rougel")
    aggregates = (
        AggregateSpec("accuracy", "accuracy", "correct", "all"),
        AggregateSpec("accuracy/closed", "accuracy", "correct", "closed"),
        AggregateSpec("accuracy/open", "accuracy", "correct", "open"),
        *_specs("open", *_OPEN),
        AggregateSpec("unscorable/open", "unscorable", "unscorable", "open", ci=False),
        AggregateSpec("judge_unparseable", "judge_unparseable", "judge_unparseable", "open", ci=False),
        AggregateSpec("empty_predictions", "empty_predictions", "empty", "all", ci=False),
    )

    swapped_labels: bool = False
    judge_verdicts: Mapping[str, bool | None] | None = field(default=None, compare=False, repr=False)
    judge: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def is_closed(self, pred: Prediction, truth_norm: str) -> bool:
        """SLAKE: its annotation; any other dataset: the truth is ``yes`` or ``no``."""
        if "slake" in pred.dataset.lower() and pred.metadata.get("answer_type_source") != "inferred":
            return pred.answer_type == "closed"
        return truth_norm in _YES_NO

    def to_dict(self) -> dict[str, Any]:
        """Name and options (the judge description when verdicts are used)."""
        out: dict[str, Any] = {"name": self.name, "swapped_labels": self.swapped_labels}
        if self.judge_verdicts is not None:
            out["judge"] = dict(self.judge or {})
        return out

    def item_key(self, pred: Prediction) -> tuple[Any, ...] | None:
        """Answers, type and whether the dataset is SLAKE; ``None`` with judge verdicts (by id)."""
        if self.judge_verdicts is not None:
            return None
        source = pred.metadata.get("answer_type_source")
        return (pred.reference, pred.prediction, pred.answer_type, source, "slake" in pred.dataset.lower())

    def score_item(self, pred: Prediction) -> dict[str, ItemValue]:
        reply, pre_rule = medevalkit_pre_extract(pred.prediction)
        truth = pred.reference.lower().strip()
        parsed, rule = medevalkit_parse(reply)
        closed = self.is_closed(pred, truth)
        out = _common(pred, reply, rule if rule != "none" else pre_rule, parsed, truth)
        out["closed"] = closed
        out.update(_ZEROS)
        if closed:
            cleaned = parsed.replace("\n", "").replace(".", "")
            if truth in _YES_NO:
                right = (("yes" in cleaned) != ("no" in cleaned)) and truth in cleaned
            else:
                right = cleaned == truth
            out["correct"] = 1.0 if right else 0.0
            return out
        self._score_open(parsed, truth, out)
        out["correct"] = out["em"]
        if self.judge_verdicts is not None:
            if pred.id not in self.judge_verdicts:
                raise ValueError(f"item {pred.id!r} is open but has no judge verdict; judge every open item")
            verdict = self.judge_verdicts[pred.id]
            out["correct"] = 1.0 if verdict else 0.0
            out["judge_unparseable"] = 1.0 if verdict is None else 0.0
        return out

    def _score_open(self, parsed: str, truth: str, out: dict[str, ItemValue]) -> None:
        out["em"] = 1.0 if parsed == truth else 0.0
        out["bleu1"], out["bleu2"], out["bleu3"], out["bleu4"] = medevalkit_bleu_1_to_4(parsed, truth)
        rouge = medevalkit_rouge(parsed, truth)
        prf = medevalkit_set_prf(parsed, truth)
        if rouge is None or prf is None:
            out["unscorable"] = 1.0
        if rouge is not None:
            out["rouge1"], out["rouge2"], out["rougel"] = rouge
        if prf is not None:
            precision, recall, f1 = prf
            if self.swapped_labels:
                precision, recall, f1 = f1, precision, recall
            out["precision"], out["recall"], out["f1"] = precision, recall, f1
