"""Metric profiles: golden examples per profile, written from the specification."""

from __future__ import annotations

import math
from types import MappingProxyType

import pytest

from medvqa.metrics import PROFILES, StrictProfile, evaluate, get_profile
from medvqa.records import Prediction


def P(ident: str, ref: str, pred: str, kind: str = "open", **meta: object) -> Prediction:
    return Prediction(
        id=ident,
        question="q",
        reference=ref,
        prediction=pred,
        answer_type=kind,
        metadata=MappingProxyType(meta),
    )  # type: ignore[arg-type]


def item(profile: str, ref: str, pred: str, kind: str = "open", **meta: object) -> dict:
    return evaluate([P("x", ref, pred, kind, **meta)], profile=profile, n_boot=0).per_item[0]


def test_profiles_are_the_six_named_ones() -> None:
    assert sorted(PROFILES) == ["llava_med", "lmms_eval", "medevalkit", "multimedeval", "paper", "strict"]
    with pytest.raises(ValueError, match="valid profiles: paper, llava_med"):
        get_profile("vqa")


# --- paper -----------------------------------------------------------------------------------


def test_paper_trailing_period_costs_f1_and_bleu() -> None:
    row = item("paper", "no", "No.", "closed")
    assert row["containment"] == 1.0
    assert row["f1"] == pytest.approx(2 / 3)
    assert row["bleu1"] == 0.5


def test_paper_containment_false_positive_is_kept() -> None:
    assert item("paper", "no", "abnormal")["containment"] == 1.0
    assert item("paper", "left lung", "left")["containment"] == 0.0


def test_paper_truth_is_only_lowercased() -> None:
    # Truth keeps its trailing space; the extracted pred is stripped, so containment fails.
    assert item("paper", "Yes ", "yes")["containment"] == 0.0


def test_paper_extraction_applies() -> None:
    row = item("paper", "yes", "Answer: yes\nQuestion: is it?")
    assert row["extracted"] == "yes"
    assert row["rule"] == "paper_answer_cue"
    assert row["f1"] == 1.0 and row["bleu1"] == 1.0


def test_paper_f1_uses_list_length_denominators() -> None:
    # truth tokens [left, left, lung] (3), pred tokens [left, lung] (2), common set {left, lung}
    row = item("paper", "left left lung", "left lung")
    p, r = 2 / 2, 2 / 3
    assert row["f1"] == 2 * p * r / (p + r)


def test_paper_bleu_brevity_penalty() -> None:
    row = item("paper", "left upper lobe", "left")
    assert row["bleu1"] == pytest.approx(math.exp(1 - 3 / 1))


def test_paper_aggregates_split_by_answer_type() -> None:
    preds = [P("1", "yes", "yes", "closed"), P("2", "no", "yes", "closed"), P("3", "liver", "liver", "open")]
    r = evaluate(preds, profile="paper", n_boot=0)
    assert r["containment"].value == pytest.approx(2 / 3)
    assert (r["containment/closed"].numerator, r["containment/closed"].denominator) == (1.0, 2)
    assert (r["containment/open"].numerator, r["containment/open"].denominator) == (1.0, 1)


# --- llava_med -------------------------------------------------------------------------------


def test_llava_closed_is_substring_of_normalized_strings() -> None:
    r = evaluate(
        [
            P("1", "no", "Normal", "closed"),
            P("2", "yes", "yes and no", "closed"),
            P("3", "no", "yes", "closed"),
        ],
        profile="llava_med",
        n_boot=0,
    )
    assert [row["hit"] for row in r.per_item] == [1.0, 1.0, 0.0]
    assert r["accuracy/closed"].numerator == 2.0 and r["accuracy/closed"].n == 3
    assert r["recall/open"].n == 0 and r["recall/open"].value is None


def test_llava_open_recall_counts_pred_multiplicity() -> None:
    row = item("llava_med", "left lung", "left left")
    # tp = pred count of 'left' = 2; fn = truth count of 'lung' = 1; fp = 0
    assert row["recall"] == pytest.approx(2 / 3)
    assert row["precision"] == 1.0
    assert row["f1"] == pytest.approx(0.8)


def test_llava_exact_is_distinct_truth_words_over_pred_tokens() -> None:
    row = item("llava_med", "left lung", "the left upper lung lobe")
    assert row["exact"] == pytest.approx(2 / 4)  # 'the' dropped: pred has 4 tokens


def test_llava_none_becomes_zero_and_bleu_is_nltk() -> None:
    row = item("llava_med", "none", "None.")
    assert row["truth_norm"] == "0" and row["pred_norm"] == "0"
    assert row["bleu1"] == 1.0
    assert row["bleu"] == pytest.approx(
        math.exp(0.75 * math.log(2.2250738585072014e-308)), rel=1e-9, abs=1e-300
    )


def test_llava_all_zero_when_no_overlap_or_empty() -> None:
    assert item("llava_med", "liver", "spleen")["f1"] == 0.0
    row = item("llava_med", "liver", "")
    assert (row["recall"], row["precision"], row["f1"], row["exact"]) == (0.0, 0.0, 0.0, 0.0)


def test_llava_inferred_answer_type_uses_normalized_truth() -> None:
    r = evaluate([P("1", "No.", "no", "open", answer_type_source="inferred")], profile="llava_med", n_boot=0)
    assert r.per_item[0]["closed"] is True


# --- lmms_eval -------------------------------------------------------------------------------


def test_lmms_eval_requires_equality_after_normalization() -> None:
    assert item("lmms_eval", "Yes", "yeah.")["accuracy"] == 1.0
    assert item("lmms_eval", "X-Ray", "xray")["accuracy"] == 1.0
    assert item("lmms_eval", "lung", "left lung")["accuracy"] == 0.0
    assert item("lmms_eval", "no", "normal", "closed")["accuracy"] == 0.0


def test_lmms_eval_breaks_down_by_modality_and_content_type_by_default() -> None:
    preds = [
        P("1", "yes", "yes", "closed", modality="CT", content_type="Organ"),
        P("2", "lung", "liver", "open", modality="MRI", content_type="Organ"),
        P("3", "liver", "liver", "open", modality="ct "),
    ]
    r = evaluate(preds, profile="lmms_eval", n_boot=0)
    # group values are stripped and lowercased, as lmms-eval does
    assert r["accuracy/modality=ct"].value == 1.0 and r["accuracy/modality=ct"].n == 2
    assert r["accuracy/modality=mri"].value == 0.0
    assert r["accuracy/content_type=(missing)"].n == 1
    assert r["accuracy/open/modality=ct"].subset == "open&modality=ct"
    assert "accuracy/closed/modality=mri" not in r.aggregates  # empty groups are left out


# --- multimedeval ----------------------------------------------------------------------------


def test_multimedeval_no_matches_not() -> None:
    row = item("multimedeval", "No", "not")
    assert row["closed"] is True  # decided from the cleaned truth, whatever the annotation
    assert row["closed_correct"] == 1.0


def test_multimedeval_set_metrics_use_the_original_truth_set() -> None:
    row = item("multimedeval", "no", "No.")
    assert row["recall"] == 1.0 and row["precision"] == 1.0
    assert row["f1"] == 2 / (2 + 1e-8)
    assert row["closed_correct"] == 1.0
    row = item("multimedeval", "no", "Not seen.")
    assert row["recall"] == 0.0 and row["precision"] == 0.0 and row["f1"] == 0.0
    assert row["closed_correct"] == 1.0  # only the closed decision widens no to {no, not}


def test_multimedeval_closed_yes_needs_yes() -> None:
    assert item("multimedeval", "yes", "no")["closed_correct"] == 0.0
    assert item("multimedeval", "yes", "yes it is")["closed_correct"] == 1.0


def test_multimedeval_set_scores_and_epsilon() -> None:
    row = item("multimedeval", "left lung", "left left lung")
    assert row["precision"] == 1.0 and row["recall"] == 1.0
    assert row["f1"] == 2 / (2 + 1e-8)
    assert row["open_correct"] == 1.0
    # BLEU-1 on tokens (not sets): 2 of 3 pred unigrams clip-match ('left' clipped to 1).
    assert row["bleu1"] == pytest.approx(2 / 3)


def test_multimedeval_aggregates_over_all_and_subsets() -> None:
    preds = [
        P("1", "yes", "yes", "open"),
        P("2", "left lung", "left", "open"),
        P("3", "liver", "liver", "closed"),
    ]
    r = evaluate(preds, profile="multimedeval", n_boot=0)
    assert r["recall"].n == 3 and r["recall"].value == pytest.approx((1 + 0.5 + 1) / 3)
    assert r["closedQuestionsAccuracy"].n == 1 and r["closedQuestionsAccuracy"].value == 1.0
    assert r["openQuestionsRecall"].n == 2 and r["openQuestionsRecall"].value == pytest.approx(0.75)
    assert r["openQuestionsAccuracy"].value == pytest.approx(0.5)


# --- strict ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "accuracy", "undecided", "conflicting"),
    [
        ("No.", 1.0, 0.0, 0.0),
        ("No, there is no fracture.", 1.0, 0.0, 0.0),
        ("normal", 0.0, 1.0, 0.0),
        ("not sure", 0.0, 1.0, 0.0),
        ("none", 0.0, 1.0, 0.0),
        ("yes and no", 0.0, 0.0, 1.0),
        ("Nope", 1.0, 0.0, 0.0),
        ("yes", 0.0, 0.0, 0.0),
        ("", 0.0, 1.0, 0.0),
    ],
)
def test_strict_closed_decisive_words(
    pred: str, accuracy: float, undecided: float, conflicting: float
) -> None:
    row = item("strict", "no", pred, "closed")
    assert (row["accuracy"], row["closed_undecided"], row["closed_conflicting"]) == (
        accuracy,
        undecided,
        conflicting,
    )


def test_strict_extra_no_words_are_configurable() -> None:
    prof = StrictProfile(extra_no_words=("not",))
    r = evaluate([P("1", "no", "not present", "closed")], profile=prof, n_boot=0)
    assert r.per_item[0]["accuracy"] == 1.0
    assert r.options["extra_no_words"] == ["not"]
    assert StrictProfile.from_dict(prof.to_dict()) == prof
    with pytest.raises(ValueError, match="both yes and no"):
        StrictProfile(extra_yes_words=("no",))
    with pytest.raises(ValueError, match="fuzzy_threshold"):
        StrictProfile(fuzzy_threshold=120)


def test_strict_closed_non_yes_no_truth_uses_exact_match() -> None:
    assert item("strict", "Left", "left.", "closed")["accuracy"] == 1.0
    assert item("strict", "Left", "right", "closed")["accuracy"] == 0.0


def test_strict_open_metrics() -> None:
    row = item("strict", "left upper lobe", "Answer: the left lobe.")
    assert row["extracted"] == "the left lobe"
    assert row["pred_norm"] == "left lobe"
    assert row["exact_match"] == 0.0 and row["accuracy"] == 0.0
    assert row["f1"] == pytest.approx(0.8)
    assert row["recall"] == pytest.approx(2 / 3)
    assert item("strict", "pneumothorax", "pneumothorx")["fuzzy_match"] == 1.0
    assert item("strict", "pneumothorax", "pneumothorx")["exact_match"] == 0.0


def test_strict_has_bootstrap_intervals_that_contain_the_value() -> None:
    preds = [P(str(i), "yes", "yes" if i % 3 else "no", "closed") for i in range(60)]
    r = evaluate(preds, n_boot=300, seed=1)
    agg = r["accuracy"]
    assert agg.ci_low is not None and agg.ci_high is not None
    assert agg.ci_low <= agg.value <= agg.ci_high
    assert 0.0 < agg.ci_low < agg.ci_high < 1.0
    assert r["closed_undecided"].ci_low is None  # diagnostic counts carry no interval
    assert evaluate(preds, n_boot=300, seed=1)["accuracy"] == agg
    assert evaluate(preds, n_boot=300, seed=2)["accuracy"].ci_low is not None


def test_bootstrap_does_not_depend_on_input_order() -> None:
    preds = [P(str(i), "yes", "yes" if i % 4 else "no", "closed") for i in range(40)]
    a = evaluate(preds, n_boot=200, seed=3)["accuracy"]
    b = evaluate(list(reversed(preds)), n_boot=200, seed=3)["accuracy"]
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)


# --- evaluate: errors and counts ---------------------------------------------------------------


def test_empty_predictions_are_scored_and_counted_in_every_profile() -> None:
    preds = [P("1", "yes", "", "closed"), P("2", "liver", "liver", "open")]
    for name in PROFILES:
        r = evaluate(preds, profile=name, n_boot=0)
        assert r["empty_predictions"].numerator == 1.0, name
        assert r["empty_predictions"].n == 2
        assert r.per_item[0]["empty"] == 1.0


def test_empty_reference_is_an_error_naming_the_item() -> None:
    with pytest.raises(ValueError, match=r"'b'.*empty reference"):
        evaluate([P("a", "yes", "yes"), P("b", "  ", "yes")])


def test_duplicate_ids_are_an_error() -> None:
    with pytest.raises(ValueError, match="duplicate id 'a'"):
        evaluate([P("a", "yes", "yes"), P("a", "no", "yes")])


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="n_boot"):
        evaluate([P("a", "yes", "yes")], n_boot=-1)
    with pytest.raises(ValueError, match="level"):
        evaluate([P("a", "yes", "yes")], level=1.5)


def test_per_item_is_aligned_with_input_and_result_serializes() -> None:
    preds = [P("b", "yes", "yes", "closed"), P("a", "no", "yes", "closed")]
    r = evaluate(preds, n_boot=0)
    assert [row["id"] for row in r.per_item] == ["b", "a"]
    d = r.to_dict(per_item=True)
    assert d["profile"] == "strict" and d["n"] == 2
    assert d["aggregates"]["accuracy"]["numerator"] == 1.0
    assert len(d["per_item"]) == 2
    with pytest.raises(KeyError, match="available"):
        r["nope"]


def test_breakdown_by_dataset_field() -> None:
    preds = [
        Prediction("1", "q", "yes", "yes", "closed", dataset="vqa_rad"),
        Prediction("2", "q", "yes", "no", "closed", dataset="slake"),
    ]
    r = evaluate(preds, n_boot=0, by=["dataset", "organ"])
    assert r["accuracy/dataset=vqa_rad"].value == 1.0
    assert r["accuracy/dataset=slake"].value == 0.0
    assert not any("organ" in k for k in r.aggregates)


def test_evaluate_takes_one_profile_or_a_sequence() -> None:
    from medvqa.metrics import PROFILES, evaluate
    from medvqa.records import Prediction

    preds = [Prediction("1", "q", "no", "No.", "closed"), Prediction("2", "q", "left lung", "lung", "open")]
    one = evaluate(preds, profile="paper", n_boot=0)
    several = evaluate(preds, profile=("strict", "paper"), n_boot=0)
    assert list(several) == ["strict", "paper"]
    assert several["paper"].aggregates == one.aggregates
    assert list(evaluate(preds, profile=["all"], n_boot=0)) == sorted(PROFILES)
    with pytest.raises(ValueError, match="'paper' given twice"):
        evaluate(preds, profile=["paper", "paper"], n_boot=0)
    with pytest.raises(ValueError, match="at least one profile"):
        evaluate(preds, profile=[], n_boot=0)
