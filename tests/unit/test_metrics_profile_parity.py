"""Per-item parity cases for every profile, computed by hand from the profile specifications.

Each expected value below was worked out on paper from the written rules of the profile
(the metric profiles specification), not by running the implementation; the comments show
the arithmetic.
"""

from __future__ import annotations

from types import MappingProxyType

import pytest

from medvqa.metrics import evaluate
from medvqa.records import Prediction


def _row(profile: str, ref: str, pred: str, kind: str = "open") -> dict:
    p = Prediction("x", "q", ref, pred, kind, metadata=MappingProxyType({}))  # type: ignore[arg-type]
    return evaluate([p], profile=profile, n_boot=0).per_item[0]


# --- paper -----------------------------------------------------------------------------------


def test_paper_answer_cue_and_list_length_denominators() -> None:
    # pred -> "the left lung." (after "answer:", cut at "question:"); tokens the/left/lung/.
    # truth tokens left/lung; common {left, lung}: P = 2/4, R = 2/2, F1 = 2/3.
    row = _row("paper", "Left lung", "Answer: The left lung. Question: why?")
    assert row["extracted"] == "the left lung."
    assert row["containment"] == 1.0
    assert row["f1"] == pytest.approx(2 / 3)
    # BLEU-1: 2 of 4 unigrams clip-match, c = 4 > r = 2 so BP = 1.
    assert row["bleu1"] == pytest.approx(0.5)


def test_paper_containment_quirk_with_zero_overlap() -> None:
    # "no" is a character substring of "not really", but no token is shared.
    row = _row("paper", "no", "Not really", "closed")
    assert (row["containment"], row["f1"], row["bleu1"]) == (1.0, 0.0, 0.0)


# --- llava_med -------------------------------------------------------------------------------


def test_llava_med_closed_substring_quirk() -> None:
    # "normal." -> period removed -> "normal"; "no" in "normal" is a hit; word recall is 0.
    row = _row("llava_med", "No", "Normal.", "closed")
    assert row["hit"] == 1.0 and row["recall"] == 0.0 and row["f1"] == 0.0


def test_llava_med_open_word_counts() -> None:
    # pred -> "left lung left side" (", " present: the comma is deleted; "the" dropped).
    # tp = 2 (left, pred count) + 1 (lung) = 3, fp = 1 (side), fn = 0:
    # P = 3/4, R = 1, F1 = 6/7; exact = 2 distinct truth words / 4 pred tokens.
    row = _row("llava_med", "left lung", "The left lung, left side")
    assert row["pred_norm"] == "left lung left side"
    assert row["precision"] == pytest.approx(0.75)
    assert row["recall"] == pytest.approx(1.0)
    assert row["f1"] == pytest.approx(6 / 7)
    assert row["exact"] == pytest.approx(0.5)
    assert row["hit"] == 1.0
    # BLEU-1: left clipped to 1 + lung = 2 of 4; BLEU-2 (0,1,0,0): 1 of 3 bigrams.
    assert row["bleu1"] == pytest.approx(0.5)
    assert row["bleu2"] == pytest.approx(1 / 3)
    # No trigram can match a two-word truth: NLTK's method0 gives a vanishing score.
    assert row["bleu3"] < 1e-300 and row["bleu"] < 1e-100


# --- lmms_eval -------------------------------------------------------------------------------


def test_lmms_eval_xray_and_parentheses() -> None:
    # truth "x-ray" -> "x ray" -> "xray"; pred "xray (plain film)" -> "xray".
    assert _row("lmms_eval", "X-Ray", "xray (plain film)")["accuracy"] == 1.0


def test_lmms_eval_yes_folding_is_whole_string_only() -> None:
    # "yes, it is." -> "yes it is", not a whole-string yes synonym: unequal to "yes".
    row = _row("lmms_eval", "Yes", "Yes, it is.", "closed")
    assert row["pred_norm"] == "yes it is" and row["accuracy"] == 0.0


# --- multimedeval ----------------------------------------------------------------------------


def test_multimedeval_no_against_no() -> None:
    # G = {no}, P = {no}: P = R = 1, F1 = 2/(2 + 1e-8), BLEU-1 = 1.
    row = _row("multimedeval", "no", "No")
    assert row["recall"] == 1.0 and row["precision"] == 1.0
    assert row["f1"] == pytest.approx(2 / (2 + 1e-8), abs=0)
    assert row["bleu1"] == 1.0 and row["closed_correct"] == 1.0


def test_multimedeval_no_against_not_seen() -> None:
    # P = {not, seen}, G = {no}: nothing shared, so P = R = F1 = 0; for the closed decision
    # G' = {no, not}: |{not}| / 2 = 0.5 >= 0.4, correct.
    row = _row("multimedeval", "no", "Not seen.")
    assert (row["precision"], row["recall"], row["f1"], row["bleu1"]) == (0.0, 0.0, 0.0, 0.0)
    assert row["closed"] is True and row["closed_correct"] == 1.0 and row["correct"] == 1.0


def test_multimedeval_aggregates_on_the_two_no_cases() -> None:
    preds = [
        Prediction("a", "q", "no", "No", "closed"),
        Prediction("b", "q", "no", "Not seen.", "closed"),
        Prediction("c", "q", "yes", "no", "closed"),
    ]
    r = evaluate(preds, profile="multimedeval", n_boot=0)
    assert r["recall"].value == pytest.approx(1 / 3)  # (1 + 0 + 0) / 3
    assert r["closedQuestionsAccuracy"].numerator == 2 and r["closedQuestionsAccuracy"].n == 3


# --- strict ----------------------------------------------------------------------------------


def test_strict_closed_undecided_and_conflicting() -> None:
    row = _row("strict", "no", "Normal.", "closed")  # "normal" is not a decisive no
    assert (row["accuracy"], row["closed_undecided"], row["closed_conflicting"]) == (0.0, 1.0, 0.0)
    row = _row("strict", "yes", "yes and no", "closed")
    assert (row["accuracy"], row["closed_undecided"], row["closed_conflicting"]) == (0.0, 0.0, 1.0)


def test_strict_open_token_scores() -> None:
    # "the left lung" -> "left lung"; pred "left lung base": same = 2, P = 2/3, R = 1,
    # F1 = 0.8; recall 1.0; ratio("left lung base", "left lung") = 2*9/23 = 78 < 90.
    row = _row("strict", "the left lung", "left lung base")
    assert row["truth_norm"] == "left lung"
    assert (row["accuracy"], row["exact_match"], row["fuzzy_match"]) == (0.0, 0.0, 0.0)
    assert row["f1"] == pytest.approx(0.8) and row["recall"] == 1.0
