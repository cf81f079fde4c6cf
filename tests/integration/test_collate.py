"""Training and generation collators on the tiny Idefics2: exact loss masks, padding, overflow."""

from __future__ import annotations

import io
from typing import Any

import pytest

pytest.importorskip("transformers")
pytestmark = pytest.mark.train

from medvqa._errors import MedVQAError  # noqa: E402
from medvqa.chat import CAPTION_INSTRUCTION  # noqa: E402
from medvqa.collate import IGNORE_INDEX, GenerationCollator, TrainingCollator  # noqa: E402
from medvqa.models import TINY_IMAGE_SEQ_LEN, tiny_idefics2  # noqa: E402
from medvqa.records import ImageRef, VQASample  # noqa: E402


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    return tiny_idefics2(seed=0)


@pytest.fixture(scope="module")
def processor(tiny: tuple[Any, Any]) -> Any:
    return tiny[1]


def _png(size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (120, 30, 200)) -> ImageRef:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return ImageRef(data=buf.getvalue(), name="x.png")


def _sample(sid: str, question: str, answer: str, *, image: bool = True, task: str = "vqa") -> VQASample:
    return VQASample(
        id=sid,
        question=question,
        answer=answer,
        answer_type="closed" if answer in ("yes", "no") else "open",
        answer_type_source="annotation",
        dataset="demo",
        split="train",
        task=task,  # type: ignore[arg-type]
        image=_png() if image else None,
    )


FRACTURE = _sample("a", "Is there a fracture?", "no")
LIVER = _sample("b", "What organ is shown?", "the liver", image=False)
CAPTION = _sample("c", CAPTION_INSTRUCTION, "Axial CT of the abdomen.", task="caption")


def _supervised(batch: dict[str, Any], row: int) -> list[int]:
    labels = batch["labels"][row]
    return labels[labels != IGNORE_INDEX].tolist()


def test_answer_mode_supervises_exactly_the_answer_and_end_of_utterance(processor: Any) -> None:
    batch = TrainingCollator(processor, mode="answer")([FRACTURE, LIVER, CAPTION])
    tok = processor.tokenizer
    expected_counts = []
    for row, sample in enumerate((FRACTURE, LIVER, CAPTION)):
        ids = _supervised(batch, row)
        assert tok.decode(ids) == f" {sample.answer}<end_of_utterance>"
        assert ids[-1] == tok.convert_tokens_to_ids("<end_of_utterance>")
        expected_counts.append(len(tok(" " + sample.answer, add_special_tokens=False)["input_ids"]) + 1)
    # known examples, counted by hand on the tiny tokenizer: " no" is 1 token, " the liver" 2
    assert [len(_supervised(batch, r)) for r in range(3)] == expected_counts
    assert expected_counts[:2] == [2, 3]


def test_paper_mode_supervises_every_text_token(processor: Any) -> None:
    batch = TrainingCollator(processor, mode="paper")([FRACTURE, LIVER])
    tok = processor.tokenizer
    assert tok.decode(_supervised(batch, 0)) == (
        "User: Answer briefly. Is there a fracture?<end_of_utterance>\nAssistant: no<end_of_utterance>\n"
    )
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    # all tokens but <s>, and, for the image sample, the 2 + TINY_IMAGE_SEQ_LEN image tokens
    assert len(_supervised(batch, 0)) == lengths[0] - 1 - (TINY_IMAGE_SEQ_LEN + 2) == 17
    assert len(_supervised(batch, 1)) == lengths[1] - 1 == 19


def test_labels_are_ignored_on_padding_and_image_tokens(processor: Any) -> None:
    batch = TrainingCollator(processor, mode="paper")([FRACTURE, LIVER])
    tok = processor.tokenizer
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    image_like = (ids == tok.convert_tokens_to_ids("<image>")) | (
        ids == tok.convert_tokens_to_ids("<fake_token_around_image>")
    )
    assert image_like.sum().item() == TINY_IMAGE_SEQ_LEN + 2
    assert (labels[image_like] == IGNORE_INDEX).all()
    assert (labels[mask == 0] == IGNORE_INDEX).all()
    assert (mask[0] == 1).all()  # right padding: the longer row has none
    assert mask[1, -1].item() == 0 and (ids[1][mask[1] == 0] == tok.pad_token_id).all()


def test_batch_shapes_and_text_only_rows(tiny: tuple[Any, Any]) -> None:
    model, processor = tiny
    batch = TrainingCollator(processor)([FRACTURE, LIVER])
    assert set(batch) == {"input_ids", "attention_mask", "labels", "pixel_values", "pixel_attention_mask"}
    assert tuple(batch["pixel_values"].shape[:3]) == (2, 1, 3)
    assert batch["pixel_values"][1].abs().sum().item() == 0  # text-only row: padding image
    loss = model(**batch).loss
    assert loss.item() > 0
    only_text = TrainingCollator(processor)([LIVER])
    assert "pixel_values" not in only_text
    assert model(**only_text).loss.item() > 0


def test_max_length_truncates_inside_the_answer(processor: Any) -> None:
    long = _sample("long", "Is there a fracture?", "a small mass in the left upper lobe of the lung")
    full = TrainingCollator(processor)([long])
    n = int(full["attention_mask"].sum())
    collator = TrainingCollator(processor, max_length=n - 3)
    batch = collator([long])
    assert batch["input_ids"].shape[1] == n - 3
    assert collator.truncated == ["long"] and collator.dropped == []
    # the 3 tokens cut are the final newline (never supervised), <end_of_utterance> and one answer token
    assert len(_supervised(batch, 0)) == len(_supervised(full, 0)) - 2


def test_max_length_into_image_or_whole_answer_is_an_error_or_counted_drop(processor: Any) -> None:
    with pytest.raises(MedVQAError, match=r"'a'.*image tokens"):
        TrainingCollator(processor, max_length=8)([FRACTURE])
    prompt = "User: Answer briefly.<image>Is there a fracture?<end_of_utterance>\nAssistant:"
    prompt_len = len(processor(text=[prompt])["input_ids"][0])
    with pytest.raises(MedVQAError, match=r"'a'.*whole answer"):
        TrainingCollator(processor, max_length=prompt_len)([FRACTURE])
    collator = TrainingCollator(processor, max_length=prompt_len, on_overflow="drop")
    batch = collator([FRACTURE, LIVER])
    assert collator.dropped == ["a"]
    assert batch["input_ids"].shape[0] == 1
    with pytest.raises(MedVQAError, match="every sample"):
        collator([FRACTURE])
    assert collator.dropped == ["a", "a"]


def test_invalid_options_are_refused(processor: Any) -> None:
    with pytest.raises(ValueError, match="mode must be"):
        TrainingCollator(processor, mode="all")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_overflow"):
        TrainingCollator(processor, on_overflow="skip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown prompt"):
        TrainingCollator(processor, prompt="nope")


def test_generation_collator_left_pads_and_ends_with_assistant(processor: Any) -> None:
    batch = GenerationCollator(processor)([FRACTURE, LIVER])
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values", "pixel_attention_mask"}
    tok = processor.tokenizer
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert (mask[:, -1] == 1).all()
    assert mask[1, 0].item() == 0 and ids[1, 0].item() == tok.pad_token_id
    suffix = tok("\nAssistant:", add_special_tokens=False)["input_ids"]
    for row in range(2):
        assert ids[row, -len(suffix) :].tolist() == suffix
    # the prompt-only part of a training row equals the generation prompt
    train = TrainingCollator(processor)([FRACTURE])
    n = int(mask[0].sum())
    assert train["input_ids"][0, :n].tolist() == ids[0, -n:].tolist()


def test_image_splitting_processors_stay_consistent() -> None:
    model, processor = tiny_idefics2(seed=0)
    processor.image_processor.do_image_splitting = True  # 4 crops + the whole image
    batch = TrainingCollator(processor)([FRACTURE, LIVER])
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert tuple(batch["pixel_values"].shape[:2]) == (2, 5)
    assert int((batch["input_ids"] == image_id).sum()) == 5 * TINY_IMAGE_SEQ_LEN
    assert model(**batch).loss.item() > 0


def test_pure_rendering_equals_the_processors_chat_template(processor: Any) -> None:
    """The no-Jinja shortcut in render_chat gives what transformers' own template engine gives."""
    from medvqa.chat import build_messages, render_messages

    assert processor.chat_template is not None
    for sample in (FRACTURE, LIVER, CAPTION):
        for with_answer, gen in ((True, False), (False, True), (False, False)):
            msgs = build_messages(sample, with_answer=with_answer)
            expected = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
            assert render_messages(msgs, add_generation_prompt=gen) == expected


def test_pad_to_multiple_of_pads_with_ignored_labels(processor: Any) -> None:
    plain = TrainingCollator(processor)([FRACTURE, LIVER])
    padded = TrainingCollator(processor, pad_to_multiple_of=16)([FRACTURE, LIVER])
    width = padded["input_ids"].shape[1]
    assert width % 16 == 0 and width >= plain["input_ids"].shape[1]
    n = plain["input_ids"].shape[1]
    assert (padded["labels"][:, :n] == plain["labels"]).all()
    assert (padded["labels"][:, n:] == IGNORE_INDEX).all() and (padded["attention_mask"][:, n:] == 0).all()
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        TrainingCollator(processor, pad_to_multiple_of=0)


@pytest.mark.parametrize("family", ["idefics2", "qwen2_vl"])
@pytest.mark.parametrize("collator_class", [TrainingCollator, GenerationCollator])
def test_an_image_that_cannot_be_opened_names_its_sample_for_every_family(
    family: str, collator_class: Any
) -> None:
    from medvqa._errors import ImageLoadError
    from medvqa.models import tiny_model

    _, proc = tiny_model(family)
    broken = VQASample(
        id="broken-7",
        question="Is there a fracture?",
        answer="no",
        answer_type="closed",
        answer_type_source="annotation",
        dataset="demo",
        split="test",
        image=ImageRef(data=b"not an image", name="broken.png"),
    )
    with pytest.raises(ImageLoadError, match=r"sample 'broken-7'"):
        collator_class(proc)([FRACTURE, broken])
