"""Properties of the chat layer and of the prompt/answer split the collators rely on."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medvqa.chat import PROMPTS, build_messages, render_sample
from medvqa.records import VQASample
from tests.strategies import chat_samples, chat_text


def _prompt(sample: VQASample) -> Any:
    return "caption" if sample.task == "caption" else None


@given(chat_samples())
def test_prompt_rendering_is_a_prefix_of_the_training_rendering(sample: VQASample) -> None:
    """The generation prompt is exactly the start of the training text, followed by ' answer'."""
    prompt = render_sample(sample, with_answer=False, add_generation_prompt=True)
    full = render_sample(sample, with_answer=True)
    assert full.startswith(prompt)
    assert full[len(prompt) :] == f" {sample.answer}<end_of_utterance>\n"


@given(chat_samples(), chat_text, st.sampled_from(["closed", "open"]))
def test_the_prompt_never_depends_on_the_answer(sample: VQASample, answer: str, answer_type: str) -> None:
    """Changing the reference answer or its type leaves the prompt unchanged (no leak)."""
    other = sample.replace(answer=answer, answer_type=answer_type)
    for name in PROMPTS:
        if name == "caption" or sample.task == "vqa":
            assert render_sample(sample, prompt=name, with_answer=False) == render_sample(
                other, prompt=name, with_answer=False
            )


@given(chat_samples())
def test_one_image_item_exactly_when_the_sample_has_an_image(sample: VQASample) -> None:
    """The user turn holds one image item if the sample has an image, none otherwise."""
    content = build_messages(sample, with_answer=False)[0]["content"]
    n_images = sum(item["type"] == "image" for item in content)
    assert n_images == (0 if sample.image is None else 1)
    assert render_sample(sample, with_answer=True).count("<image>") == n_images


@pytest.mark.train
@settings(max_examples=60, deadline=None)
@given(chat_samples())
def test_prompt_tokens_are_a_prefix_of_the_training_tokens(sample: VQASample) -> None:
    """With the tiny tokenizer, the prompt-only tokens start the training tokens (masking is exact)."""
    pytest.importorskip("transformers")
    from medvqa.models._tiny import _build_tokenizer

    tok = _cached_tokenizer(_build_tokenizer)
    prompt = tok(render_sample(sample, with_answer=False, add_generation_prompt=True))["input_ids"]
    full = tok(render_sample(sample, with_answer=True))["input_ids"]
    assert full[: len(prompt)] == prompt
    assert full[len(prompt) :].count(tok.convert_tokens_to_ids("<end_of_utterance>")) == 1


_TOKENIZER: list[Any] = []


def _cached_tokenizer(build: Any) -> Any:
    if not _TOKENIZER:
        _TOKENIZER.append(build())
    return _TOKENIZER[0]


_PROCESSOR: list[Any] = []


@pytest.mark.train
@settings(max_examples=40, deadline=None)
@given(st.lists(chat_samples(), min_size=1, max_size=3), st.sampled_from(["answer", "paper"]))
def test_training_labels_supervise_exactly_the_answer(samples: list[VQASample], mode: str) -> None:
    """In answer mode the supervised tokens decode to ' answer<end_of_utterance>'; paper mode supervises more."""
    pytest.importorskip("transformers")
    from medvqa.collate import IGNORE_INDEX, TrainingCollator
    from medvqa.models import tiny_idefics2

    if not _PROCESSOR:
        _PROCESSOR.append(tiny_idefics2(seed=0)[1])
    processor = _PROCESSOR[0]
    text_only = [s.replace(image=None) for s in samples]  # image references here point to no file
    batch = TrainingCollator(processor, mode=mode)(text_only)  # type: ignore[arg-type]
    labels, mask = batch["labels"], batch["attention_mask"]
    assert (labels[mask == 0] == IGNORE_INDEX).all()
    for row, sample in enumerate(text_only):
        supervised = labels[row][labels[row] != IGNORE_INDEX].tolist()
        decoded = processor.tokenizer.decode(supervised, skip_special_tokens=False)
        if mode == "answer":
            assert decoded == f" {sample.answer}<end_of_utterance>"
        else:
            assert decoded.endswith(f" {sample.answer}<end_of_utterance>\n")
