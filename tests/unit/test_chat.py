"""The chat layer: exact Idefics2 renderings, templates as data, overrides, no answer-type leak."""

from __future__ import annotations

import subprocess
import sys

import pytest

from medvqa.chat import (
    CAPTION_INSTRUCTION,
    CAPTION_PROMPT,
    EXPERT_INSTRUCTION,
    EXPERT_PROMPT,
    IDEFICS2_CHAT_TEMPLATE,
    PAPER_VQA_PROMPT,
    PROMPTS,
    PromptTemplate,
    build_messages,
    default_prompt,
    get_prompt,
    render_messages,
    render_sample,
)
from medvqa.records import ImageRef, VQASample


def _vqa(answer: str = "no", *, image: bool = True, **meta: object) -> VQASample:
    return VQASample(
        id="vqa_rad:1",
        question="Is there a fracture?",
        answer=answer,
        answer_type="closed" if answer in ("yes", "no") else "open",
        answer_type_source="annotation",
        dataset="vqa_rad",
        split="test",
        image=ImageRef(path="synpic1.jpg") if image else None,
        metadata=meta,  # type: ignore[arg-type]
    )


def _caption() -> VQASample:
    return VQASample(
        id="roco:ROCO_00001",
        question=CAPTION_INSTRUCTION,
        answer="Axial CT showing a liver lesion.",
        answer_type="open",
        answer_type_source="inferred",
        dataset="roco",
        split="train",
        task="caption",
        image=ImageRef(path="ROCO_00001.jpg"),
    )


def test_paper_vqa_rendering_matches_the_paper_exactly() -> None:
    text = render_sample(_vqa(), with_answer=True)
    assert text == (
        "User: Answer briefly.<image>Is there a fracture?<end_of_utterance>\n"
        "Assistant: no<end_of_utterance>\n"
    )


def test_generation_prompt_ends_with_assistant_colon() -> None:
    text = render_sample(_vqa(), with_answer=False, add_generation_prompt=True)
    assert text == "User: Answer briefly.<image>Is there a fracture?<end_of_utterance>\nAssistant:"


def test_caption_rendering_matches_stage_one() -> None:
    text = render_sample(_caption(), with_answer=True)
    assert text == (
        "User:<image>The following image is a radiology scan. Deeply analyze and diagnose this image."
        "<end_of_utterance>\nAssistant: Axial CT showing a liver lesion.<end_of_utterance>\n"
    )
    assert default_prompt(_caption()) is CAPTION_PROMPT


def test_expert_prompt_replaces_only_the_instruction() -> None:
    text = render_sample(_vqa(), prompt="expert", with_answer=False)
    assert text == f"User: {EXPERT_INSTRUCTION}<image>Is there a fracture?<end_of_utterance>\n"
    assert EXPERT_PROMPT.layout == PAPER_VQA_PROMPT.layout


def test_messages_have_the_processor_format() -> None:
    msgs = build_messages(_vqa(), with_answer=True)
    assert msgs == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Answer briefly."},
                {"type": "image"},
                {"type": "text", "text": "Is there a fracture?"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "no"}]},
    ]


def test_text_only_sample_has_no_image_item_and_joined_text() -> None:
    msgs = build_messages(_vqa(image=False), with_answer=False)
    assert msgs == [
        {"role": "user", "content": [{"type": "text", "text": "Answer briefly. Is there a fracture?"}]}
    ]
    assert "<image>" not in render_sample(_vqa(image=False), with_answer=True)


def test_metadata_instruction_override_is_used() -> None:
    s = _vqa(prompt_instruction="Reply with one word.")
    assert render_sample(s, with_answer=False) == (
        "User: Reply with one word.<image>Is there a fracture?<end_of_utterance>\n"
    )
    # the override wins over an explicit template too
    assert "Reply with one word." in render_sample(s, prompt="expert", with_answer=False)


def test_override_on_a_template_without_instruction_is_an_error() -> None:
    s = _caption().with_metadata(prompt_instruction="Describe.")
    with pytest.raises(ValueError, match=r"roco:ROCO_00001.*no instruction slot"):
        build_messages(s, with_answer=False)


def test_empty_override_is_an_error() -> None:
    with pytest.raises(ValueError, match="must be a non-empty string"):
        build_messages(_vqa(prompt_instruction="  "), with_answer=False)


def test_prompt_does_not_leak_the_answer_type() -> None:
    closed = render_sample(_vqa("yes"), with_answer=False, add_generation_prompt=True)
    open_ = render_sample(_vqa("a liver lesion"), with_answer=False, add_generation_prompt=True)
    assert closed == open_


def test_custom_layout() -> None:
    t = PromptTemplate(name="q_first", instruction="Be brief.", layout=("question", "image", "instruction"))
    assert render_sample(_vqa(), prompt=t, with_answer=False) == (
        "User: Is there a fracture?<image>Be brief.<end_of_utterance>\n"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "x", "instruction": "a", "layout": ("image", "image", "question")}, "repeats"),
        ({"name": "x", "instruction": "a", "layout": ("image", "answer", "question")}, "unknown layout part"),
        ({"name": "x", "instruction": "", "layout": ("instruction", "question")}, "instruction is empty"),
        ({"name": "", "instruction": "a"}, "name must be"),
    ],
)
def test_invalid_templates_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PromptTemplate(**kwargs)  # type: ignore[arg-type]


def test_template_round_trips_and_builtins_are_registered() -> None:
    for name, t in PROMPTS.items():
        assert t.name == name
        assert PromptTemplate.from_dict(t.to_dict()) == t
        assert get_prompt(name) is t
    with pytest.raises(ValueError, match="missing"):
        PromptTemplate.from_dict({"name": "x"})


def test_render_messages_equals_the_jinja_template() -> None:
    jinja2 = pytest.importorskip("jinja2")
    template = jinja2.Environment().from_string(IDEFICS2_CHAT_TEMPLATE)
    for sample in (_vqa(), _caption(), _vqa(image=False)):
        for with_answer in (True, False):
            msgs = build_messages(sample, with_answer=with_answer)
            for gen in (True, False):
                assert render_messages(msgs, add_generation_prompt=gen) == template.render(
                    messages=msgs, add_generation_prompt=gen
                )


def test_chat_is_light() -> None:
    code = "import sys, medvqa.chat; print(any(m in sys.modules for m in ('torch', 'transformers')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("field", ["question", "answer"])
def test_reserved_tokens_in_the_data_are_refused(field: str) -> None:
    s = _vqa().replace(**{field: "see <image> here"})
    with pytest.raises(ValueError, match=f"field '{field}' contains the reserved token '<image>'"):
        build_messages(s, with_answer=True)


# The chat_template entry of processor_config.json in the HuggingFaceM4/idefics2-8b-chatty repository
# (https://huggingface.co/HuggingFaceM4/idefics2-8b-chatty/blob/791b4b5e58fee17aac2d20b99e1287de761948b4/processor_config.json), verbatim.
PUBLISHED_IDEFICS2_TEMPLATE = (
    "{% for message in messages %}{{message['role'].capitalize()}}{% if message['content'][0]['type'] "
    "== 'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if "
    "line['type'] == 'text' %}{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif "
    "%}{% endfor %}<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% "
    "endif %}"
)


def test_the_template_is_idefics2s_published_one() -> None:
    assert IDEFICS2_CHAT_TEMPLATE == PUBLISHED_IDEFICS2_TEMPLATE


def test_image_first_turn_and_multi_turn_render_like_the_template() -> None:
    jinja2 = pytest.importorskip("jinja2")
    template = jinja2.Environment().from_string(IDEFICS2_CHAT_TEMPLATE)
    msgs = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A chest x-ray."}]},
        {"role": "user", "content": [{"type": "text", "text": "Which side?"}, {"type": "image"}]},
    ]
    for gen in (True, False):
        assert render_messages(msgs, add_generation_prompt=gen) == template.render(
            messages=msgs, add_generation_prompt=gen
        )
    assert render_messages(msgs).startswith("User:<image>What is it?<end_of_utterance>\nAssistant: A chest")
