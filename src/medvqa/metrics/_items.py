"""Per-item metric functions: each metric's maths, written once.

Every function takes one reference (``truth``) and one prediction and returns a float in
[0, 1] (or a bool). They are pure and total. Profiles (:mod:`medvqa.metrics._profiles`)
decide which strings they receive (extracted, normalized, tokenized).
"""

from __future__ import annotations

import collections
import functools
import math
import sys
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

_T = TypeVar("_T", bound=Hashable)

__all__ = [
    "containment",
    "ngram_counts",
    "paper_f1",
    "sentence_bleu",
    "sentence_bleus",
    "set_precision_recall_f1",
    "squad_f1",
    "token_recall",
    "torchmetrics_bleu1",
    "vqa_prf",
    "vqa_word_exact",
]


def containment(truth: str, pred: str) -> bool:
    """Whether ``truth`` is a character substring of ``pred`` (the paper's "Exact Match").

    >>> containment("no", "abnormal"), containment("left lung", "left")
    (True, False)
    """
    return truth in pred


def paper_f1(truth_tokens: Sequence[str], pred_tokens: Sequence[str]) -> float:
    """The Med-Idefics paper's token F1.

    ``common = set(truth) & set(pred)``; precision = ``|common| / len(pred)``, recall =
    ``|common| / len(truth)`` (list lengths: duplicates count in the denominators);
    F1 = ``2 * P * R / (P + R)``, and 0 when nothing is shared.

    >>> round(paper_f1(("no",), ("no", ".")), 4)
    0.6667
    """
    common = set(truth_tokens) & set(pred_tokens)
    if not common:
        return 0.0
    precision = len(common) / len(pred_tokens)
    recall = len(common) / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def ngram_counts(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    """Counts of the ``n``-grams of ``tokens`` (empty when there are fewer than ``n``)."""
    if len(tokens) < n:
        return Counter()
    return Counter(zip(*(tokens[i:] for i in range(n))))


# Counter's own C counting loop (a pure-Python fallback where the C module is missing), applied
# to a plain dict: for the few tokens of one answer a Counter's construction costs more.
_count_into: Callable[[dict[Any, int], Iterable[Any]], None] = vars(collections)["_count_elements"]


def _counts(items: Iterable[_T]) -> dict[_T, int]:
    """Counts of ``items`` in a plain dict (the same counts as ``Counter(items)``)."""
    out: dict[_T, int] = {}
    _count_into(out, items)
    return out


def _ngram_dict(tokens: Sequence[str], n: int) -> dict[tuple[str, ...], int]:
    """:func:`ngram_counts` as a plain dict."""
    if len(tokens) < n:
        return {}
    return _counts(zip(*(tokens[i:] for i in range(n))))


def _clipped(hyp: dict[_T, int], ref: dict[_T, int]) -> int:
    """Sum over ``hyp`` of each count clipped to ``ref``'s count (the shared multiset's size)."""
    total = 0
    for gram, count in hyp.items():
        other = ref.get(gram)
        if other:
            total += count if count < other else other
    return total


@functools.lru_cache(maxsize=65536)
def _reference_ngrams(reference: tuple[str, ...], max_n: int) -> tuple[dict[Any, int], ...]:
    """The n-gram counts of a reference for n = 1..``max_n`` (references repeat across items)."""
    return (_counts(reference), *(_ngram_dict(reference, n) for n in range(2, max_n + 1)))


def _modified_precisions(
    reference: Sequence[str], hypothesis: Sequence[str], max_n: int
) -> list[float] | None:
    """NLTK's modified n-gram precisions for n = 1..``max_n``; ``None`` when no unigram matches.

    A zero precision is NLTK's ``method0`` value, the smallest positive float. Once an order
    has no match no higher order can have one (a shared (n+1)-gram starts with a shared
    n-gram), so those precisions are set without counting.
    """
    hyp_len = len(hypothesis)
    if hyp_len == 0:
        return None
    ref_grams = _reference_ngrams(tuple(reference), max_n)
    first = _clipped(_counts(hypothesis), ref_grams[0])
    if first == 0:
        return None
    precisions = [first / hyp_len]
    matched = True
    ref_len = len(reference)
    for n in range(2, max_n + 1):
        if matched and n <= hyp_len and n <= ref_len:
            numerator = _clipped(_ngram_dict(hypothesis, n), ref_grams[n - 1])
        else:
            numerator = 0
        matched = numerator > 0
        precisions.append(numerator / max(1, hyp_len - n + 1) if numerator else sys.float_info.min)
    return precisions


def sentence_bleu(
    reference: Sequence[str],
    hypothesis: Sequence[str],
    weights: Sequence[float] = (0.25, 0.25, 0.25, 0.25),
) -> float:
    """NLTK's ``sentence_bleu([reference], hypothesis, weights)`` without smoothing.

    The same arithmetic as NLTK (so the same floats): modified n-gram precisions for
    n = 1..len(weights); 0 when no unigram matches; a zero higher-order precision is
    replaced by the smallest positive float (NLTK's ``method0``); the score is
    ``BP * exp(fsum(w_n * log p_n))`` with ``BP = exp(1 - r/c)`` when ``c <= r``.

    Args:
        reference: Reference tokens.
        hypothesis: Hypothesis tokens.
        weights: One weight per n-gram order.

    Returns:
        The BLEU score.

    >>> sentence_bleu(["no"], ["no", "."], weights=(1, 0, 0, 0))
    0.5
    """
    order = len(weights)
    while order > 1 and not weights[order - 1]:
        order -= 1  # orders of weight 0 add nothing (see sentence_bleus); they are not counted
    return sentence_bleus(reference, hypothesis, (weights[:order],))[0]


def sentence_bleus(
    reference: Sequence[str],
    hypothesis: Sequence[str],
    weight_sets: Sequence[Sequence[float]],
) -> tuple[float, ...]:
    """:func:`sentence_bleu` under several weight sets, counting the n-grams once.

    Each value equals ``sentence_bleu(reference, hypothesis, weights)`` exactly (the same
    arithmetic on the same modified precisions).

    >>> sentence_bleus(["left", "lung"], ["left", "lung", "."], [(1, 0, 0, 0), (0, 1, 0, 0)])
    (0.6666666666666666, 0.5)
    """
    if not hypothesis or set(reference).isdisjoint(hypothesis):
        return (0.0,) * len(weight_sets)  # no unigram matches: what _modified_precisions says
    precisions = _modified_precisions(reference, hypothesis, max(map(len, weight_sets), default=1))
    if precisions is None:
        return (0.0,) * len(weight_sets)
    hyp_len, ref_len = len(hypothesis), len(reference)
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    log_p = [math.log(p) for p in precisions]
    out = []
    for weights in weight_sets:
        # An order of weight 0 adds w * log(p) = -0.0 or 0.0 in NLTK: the exact sum is unchanged.
        logs = [w * log_p[n] for n, w in enumerate(weights) if w]
        out.append(bp * math.exp(math.fsum(logs)))
    return tuple(out)


def vqa_prf(truth_words: Sequence[str], pred_words: Sequence[str]) -> tuple[float, float, float]:
    """LLaVA-Med's word precision, recall and F1 (``calculate_f1score``).

    Over the union of word types: tp adds pred's count of each shared word, fp pred's count
    of each pred-only word, fn truth's count of each truth-only word. All three are 0 when
    either side is empty or tp = 0.

    Returns:
        ``(precision, recall, f1)``.

    >>> vqa_prf(["left", "lung"], ["left", "left"])
    (1.0, 0.6666666666666666, 0.8)
    """
    if not pred_words or not truth_words or set(truth_words).isdisjoint(pred_words):
        return 0.0, 0.0, 0.0  # tp = 0
    cand = _counts(pred_words)
    ref = _counts(truth_words)
    tp = fp = fn = 0
    for word in set(cand) | set(ref):
        if word in cand and word in ref:
            tp += cand[word]
        elif word in cand:
            fp += cand[word]
        else:
            fn += ref[word]
    if tp == 0:
        return 0.0, 0.0, 0.0
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return precision, recall, 2 * precision * recall / (precision + recall)


def vqa_word_exact(truth_words: Sequence[str], pred_words: Sequence[str]) -> float:
    """LLaVA-Med's "exact match" (``calculate_exactmatch``), which is not exact match.

    The number of distinct truth words that occur in pred, divided by the number of pred
    tokens (0 when pred is empty).

    >>> vqa_word_exact(["left", "lung"], ["left", "upper", "lung", "lobe"])
    0.5
    """
    if not pred_words:
        return 0.0
    cand = set(pred_words)
    count = sum(1 for w in set(truth_words) if w in cand)
    return count / len(pred_words)


def set_precision_recall_f1(truth_set: set[str], pred_set: set[str]) -> tuple[float, float, float]:
    """MultiMedEval's set precision, recall and F1 (with its ``1e-8`` in the F1 denominator).

    >>> set_precision_recall_f1({"left", "lung"}, {"left"})
    (1.0, 0.5, 0.6666666622222223)
    """
    inter = len(truth_set & pred_set)
    precision = inter / len(pred_set) if pred_set else 0.0
    recall = inter / len(truth_set) if truth_set else 0.0
    return precision, recall, 2 * precision * recall / (precision + recall + 1e-8)


def torchmetrics_bleu1(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """torchmetrics ``BLEUScore(n_gram=1)`` on one pair: clipped unigram precision × BP.

    Computed in float64 (torchmetrics computes in float32, so its values differ from these
    in the 7th or 8th significant digit).

    >>> torchmetrics_bleu1(["no"], ["no", "not"])
    0.5
    """
    counts = _counts(hypothesis)
    if not counts:
        return 0.0
    numerator = _clipped(counts, _counts(reference))
    if numerator == 0:
        return 0.0
    c, r = len(hypothesis), len(reference)
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return bp * (numerator / c)


def squad_f1(truth_words: Sequence[str], pred_words: Sequence[str]) -> float:
    """SQuAD-style token F1 over multisets (1.0 when both are empty).

    >>> squad_f1(["left", "lung"], ["left", "lung", "base"])
    0.8
    """
    if not truth_words and not pred_words:
        return 1.0
    same = _clipped(_counts(truth_words), _counts(pred_words))
    if same == 0:
        return 0.0
    precision = same / len(pred_words)
    recall = same / len(truth_words)
    return 2 * precision * recall / (precision + recall)


def _squad_f1_and_recall(truth_words: Sequence[str], pred_words: Sequence[str]) -> tuple[float, float]:
    """``(squad_f1(t, p), token_recall(t, p))``, counting the shared tokens once.

    >>> _squad_f1_and_recall(["left", "lung"], ["left", "lung", "base"])
    (0.8, 1.0)
    """
    if not truth_words:
        return (1.0 if not pred_words else 0.0), 1.0
    if not pred_words or set(truth_words).isdisjoint(pred_words):
        return 0.0, 0.0
    same = _clipped(_counts(truth_words), _counts(pred_words))
    precision = same / len(pred_words)
    recall = same / len(truth_words)
    return 2 * precision * recall / (precision + recall), recall


def token_recall(truth_words: Sequence[str], pred_words: Sequence[str]) -> float:
    """Share of the truth's tokens (a multiset) found in pred (1.0 when truth is empty).

    >>> token_recall(["left", "lung"], ["lung"])
    0.5
    """
    if not truth_words:
        return 1.0
    return _clipped(_counts(truth_words), _counts(pred_words)) / len(truth_words)
