"""Parity with NLTK (a test-time reference only) for the paper profile's tokens, F1 and BLEU.

Strings are generated from a seeded generator over an alphabet that exercises every rule of
the Treebank tokenizer (quotes, brackets, dashes, contractions, final periods, digits).
"""

from __future__ import annotations

import random
import warnings

import pytest

nltk_tokenize = pytest.importorskip("nltk.tokenize")
nltk_bleu = pytest.importorskip("nltk.translate.bleu_score")

from medvqa.metrics import evaluate, paper_f1, sentence_bleu, treebank_tokenize  # noqa: E402
from medvqa.records import Prediction  # noqa: E402

_PIECES = [
    *"abcdexyz XYZ nt'sldm.,;:!?()[]{}<>\"`-$%&@#*/0123456789\t\n",
    "--", "...", "n't", "'ll", "'re", "'ve", "cannot", "gonna", "wanna ", "'tis", "“", "”", "‘", "’",
    "«", "»", "–", "—", "é", "ü", "3.5", "1,000", "no.", "yes", "left lung", " the ", "''", "``",
]  # fmt: skip
_WORDS = [
    "yes",
    "no",
    "no.",
    "left",
    "lung",
    "the",
    "ct",
    "mri",
    "not",
    "normal",
    "lobe",
    "(left)",
    "x-ray",
    ".",
]


def _strings(seed: int, n: int, pieces: list[str], max_len: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, max_len))) for _ in range(n)]


def _nltk_tokens(text: str) -> list[str]:
    return nltk_tokenize.NLTKWordTokenizer().tokenize(text)


def test_treebank_tokenizer_matches_nltk_on_generated_strings() -> None:
    texts = _strings(0, 2500, _PIECES, 18)
    mismatches = [t for t in texts if list(treebank_tokenize(t)) != _nltk_tokens(t)]
    assert mismatches == []


def _nltk_paper_f1(truth: str, pred: str) -> float:
    tt, pt = _nltk_tokens(truth), _nltk_tokens(pred)
    common = set(tt) & set(pt)
    if not common:
        return 0.0
    p = len(common) / len(pt)
    r = len(common) / len(tt)
    return 2 * p * r / (p + r)


def _nltk_bleu1(truth: str, pred: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(nltk_bleu.sentence_bleu([_nltk_tokens(truth)], _nltk_tokens(pred), weights=(1, 0, 0, 0)))


def test_paper_f1_and_bleu1_equal_nltk_exactly() -> None:
    rng = random.Random(1)
    pairs = []
    for _ in range(1500):
        truth = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4)))
        pred = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 7))) + rng.choice(
            ["", ".", " .", "?"]
        )
        pairs.append((truth, pred))
    for truth, pred in pairs:
        tt, pt = treebank_tokenize(truth), treebank_tokenize(pred)
        assert paper_f1(tt, pt) == _nltk_paper_f1(truth, pred), (truth, pred)
        assert sentence_bleu(tt, pt, (1, 0, 0, 0)) == _nltk_bleu1(truth, pred), (truth, pred)


def test_paper_profile_items_equal_a_plain_nltk_implementation() -> None:
    rng = random.Random(2)
    preds = []
    for i in range(300):
        truth = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3))).capitalize()
        raw = rng.choice(["", "Answer: ", "assistant: "]) + " ".join(
            rng.choice(_WORDS) for _ in range(rng.randint(0, 5))
        )
        raw += rng.choice(["", "\nQuestion: more?", "."])
        preds.append(Prediction(str(i), "q", truth, raw, "open"))
    result = evaluate(preds, profile="paper", n_boot=0)
    for p, row in zip(preds, result.per_item):
        truth = p.reference.lower()
        pred = p.prediction.lower()
        if "answer:" in pred:
            pred = pred.split("answer:", 1)[1].split("question:", 1)[0]
        pred = pred.replace("assistant:", "").strip()
        assert row["containment"] == float(truth in pred)
        assert row["f1"] == _nltk_paper_f1(truth, pred)
        assert row["bleu1"] == _nltk_bleu1(truth, pred)


@pytest.mark.parametrize("weights", [(0.25, 0.25, 0.25, 0.25), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0)])
def test_sentence_bleu_matches_nltk_for_llava_weights(weights: tuple[float, ...]) -> None:
    rng = random.Random(3)
    vocab = ["a", "b", "c", "d", "e", "no", "yes", "."]
    for _ in range(1500):
        ref = [rng.choice(vocab) for _ in range(rng.randint(0, 6))]
        hyp = [rng.choice(vocab) for _ in range(rng.randint(0, 6))]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = nltk_bleu.sentence_bleu([ref], hyp, weights=weights)
        assert sentence_bleu(ref, hyp, weights) == expected, (ref, hyp)
