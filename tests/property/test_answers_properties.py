"""Properties of extraction and normalization (each test states its property)."""

from __future__ import annotations

from hypothesis import given, settings

from medvqa.answers import (
    extract_answer,
    extract_paper_answer,
    extract_strict_answer,
    normalize_lmms_eval,
    normalize_multimedeval,
    normalize_strict,
    normalize_vqav2,
)
from tests.strategies import answer_text, any_text, model_reply

SETTINGS = settings(max_examples=150, deadline=None)


@SETTINGS
@given(model_reply)
def test_extractors_never_raise_and_return_strings(text: str) -> None:
    """Every extractor accepts any text and returns a string answer and a non-empty rule."""
    for style in ("strict", "paper"):
        out = extract_answer(text, style=style)  # type: ignore[arg-type]
        assert isinstance(out.answer, str) and out.rule


@SETTINGS
@given(model_reply)
def test_strict_extraction_is_idempotent(text: str) -> None:
    """Extracting from an extracted answer gives the same answer."""
    once = extract_strict_answer(text).answer
    assert extract_strict_answer(once).answer == once


@SETTINGS
@given(model_reply)
def test_strict_extraction_returns_a_substring(text: str) -> None:
    """The strict answer is a piece of the reply, never invented text."""
    assert extract_strict_answer(text).answer in text


@SETTINGS
@given(model_reply)
def test_paper_extraction_is_lowercase_and_stripped(text: str) -> None:
    """The paper's extractor lowercases and strips (as its evaluation did)."""
    answer = extract_paper_answer(text).answer
    assert answer == answer.strip()
    assert answer == answer.lower()


@SETTINGS
@given(any_text)
def test_normalizers_never_raise(text: str) -> None:
    """All normalizers are total on arbitrary text and leave no surrounding or doubled spaces."""
    for fn in (normalize_strict, normalize_vqav2, normalize_multimedeval, normalize_lmms_eval):
        out = fn(text)
        assert out == out.strip()
        assert "  " not in out


@SETTINGS
@given(any_text)
def test_strict_normalization_is_idempotent_on_any_text(text: str) -> None:
    """normalize_strict(normalize_strict(s)) == normalize_strict(s) for any s."""
    once = normalize_strict(text)
    assert normalize_strict(once) == once


@SETTINGS
@given(answer_text)
def test_strict_normalization_has_no_articles_or_extra_spaces(text: str) -> None:
    """Normalized strict answers are single-spaced words without articles."""
    out = normalize_strict(text)
    assert out == " ".join(out.split())
    assert not {"a", "an", "the"} & set(out.split())


@SETTINGS
@given(any_text)
def test_lmms_eval_normalization_is_idempotent(text: str) -> None:
    """lmms-eval's normalization reaches its fixed point in one application."""
    once = normalize_lmms_eval(text)
    assert normalize_lmms_eval(once) == once
