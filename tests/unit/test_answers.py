"""Extraction and normalization: golden examples written from the specification."""

from __future__ import annotations

import pytest

from medvqa.answers import (
    ExtractedAnswer,
    extract_answer,
    extract_paper_answer,
    extract_strict_answer,
    normalize_lmms_eval,
    normalize_multimedeval,
    normalize_strict,
    normalize_vqav2,
)


@pytest.mark.parametrize(
    ("text", "answer", "rule"),
    [
        ("Yes", "yes", "paper_verbatim"),
        ("Answer: No. Question: is it big?", "no.", "paper_answer_cue"),
        ("The ANSWER: left lung", "left lung", "paper_answer_cue"),
        ("assistant: yes assistant:", "yes", "paper_verbatim"),
        ("answer: yes answer: no", "yes answer: no", "paper_answer_cue"),
        ("question: why? answer: because", "because", "paper_answer_cue"),
        ("  ", "", "paper_verbatim"),
    ],
)
def test_paper_extractor_follows_the_papers_rule(text: str, answer: str, rule: str) -> None:
    assert extract_paper_answer(text) == ExtractedAnswer(answer, rule)
    assert extract_answer(text, style="paper") == ExtractedAnswer(answer, rule)


@pytest.mark.parametrize(
    ("text", "answer", "rule"),
    [
        ("", "", "empty"),
        ("  \n ", "", "empty"),
        ("Yes", "Yes", "verbatim"),
        ("<answer>left kidney</answer> because it is dense", "left kidney", "answer_tag"),
        ("<ANSWER> no", "no", "answer_tag"),
        ("So \\boxed{a {nested} value} done", "a {nested} value", "boxed"),
        ("The answer is yes. It is clear.", "yes", "answer_cue"),
        ("Final answer: pneumonia.", "pneumonia", "answer_cue"),
        ("Answer: no\nQuestion: anything else?", "no", "answer_cue"),
        ("Assistant: no", "no", "role_prefix+verbatim"),
        ("Human: what is it? Assistant: a cyst", "a cyst", "role_prefix+verbatim"),
        ("No.\nHuman: and the liver?", "No.", "first_line"),
        ("No. There is no fracture.", "No.", "first_sentence"),
        ("The mass measures 3.5 cm", "The mass measures 3.5 cm", "verbatim"),
    ],
)
def test_strict_extractor_golden(text: str, answer: str, rule: str) -> None:
    assert extract_strict_answer(text) == ExtractedAnswer(answer, rule)
    assert extract_answer(text) == ExtractedAnswer(answer, rule)


def test_strict_extractor_reaches_a_fixed_point() -> None:
    out = extract_strict_answer("<answer>The answer is yes. Surely.</answer>")
    assert out.answer == "yes"
    assert out.rule == "answer_tag"
    assert extract_strict_answer(out.answer).answer == out.answer


def test_extract_answer_rejects_unknown_style() -> None:
    with pytest.raises(ValueError, match="strict"):
        extract_answer("x", style="loose")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("yes", "yes"),
        ("none", "0"),
        ("two lesions", "2 lesions"),
        ("the left lung", "left lung"),
        ("an x-ray", "x ray"),
        # '-' is followed by a space somewhere in the original: hyphens are deleted, not spaced.
        ("t2 - weighted x-ray", "t2 weighted xray"),
        ("1,000 cells", "1000 cells"),
        ("no, it is not.", "no it is not"),
        ("3.5 cm", "3.5 cm"),
        ("dont", "don't"),
        ("im", "im"),  # capitalised contraction key "Im" never matches
        ("a.b", "ab"),  # a period not followed by a digit is removed
    ],
)
def test_vqav2_normalization_golden(text: str, expected: str) -> None:
    assert normalize_vqav2(text) == expected


def test_vqav2_period_strip_stops_after_32_periods() -> None:
    text = "." * 40
    assert normalize_vqav2(text) == "." * 8


def test_multimedeval_cleaning_lowercases_first() -> None:
    assert normalize_multimedeval("NONE of THE above") == "0 of above"
    assert normalize_multimedeval("Dont") == "don't"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" Yes ", "yes"),
        ("Yeah!", "yes"),
        ("nope.", "no"),
        ("X-Ray", "xray"),
        ("x ray", "xray"),
        ("left (upper) lobe", "left lobe"),
        ("肺（左）", "肺"),
        ("是", "yes"),
        ("没有", "no"),
        ("T2-weighted, MRI", "t2 weighted mri"),
        ("yes, it is", "yes it is"),
        ("a ((b) c) d", "a c d"),  # one pass up to the first ')', as upstream
        ("left (lung", "left lung"),
    ],
)
def test_lmms_eval_normalization_golden(text: str, expected: str) -> None:
    assert normalize_lmms_eval(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes.", "yes"),
        ("Yep", "yes"),
        ("FALSE", "no"),
        ("The TWO lesions!", "2 lesions"),
        ("3.5 cm.", "3.5 cm"),
        ("1,000", "1,000"),
        ("Isn't it?", "isnt it"),
        ("none", "none"),
        ("normal", "normal"),
        ("ＣＴ", "ct"),  # NFKC folds full-width letters
        ("x-ray", "x ray"),
        ("", ""),
    ],
)
def test_strict_normalization_golden(text: str, expected: str) -> None:
    assert normalize_strict(text) == expected
    assert normalize_strict(expected) == expected
