"""Idefics2 chat format: prompt templates as data, samples turned into chat messages.

This module is part of the light core: it imports neither torch nor transformers. It owns
the one place where a :class:`~medvqa.records.VQASample` becomes the conversation that an
Idefics2 processor renders, so that training, generation and the documentation all agree.

Idefics2's chat template (:data:`IDEFICS2_CHAT_TEMPLATE`, copied from the
``processor_config.json`` of ``HuggingFaceM4/idefics2-8b-chatty``) writes each turn as its role,
``:`` (followed by a space unless the turn starts with an image), the turn's items (an image
becomes ``<image>``) and ``<end_of_utterance>`` plus a newline; with a generation prompt it
appends ``Assistant:``. There is no system turn.

>>> from medvqa.records import ImageRef, VQASample
>>> s = VQASample(id="rad:test:1", question="Is there a fracture?", answer="no",
...               answer_type="closed", answer_type_source="annotation",
...               dataset="vqa_rad", split="test", image=ImageRef(path="img.jpg"))
>>> print(render_sample(s, with_answer=True))
User: Answer briefly.<image>Is there a fracture?<end_of_utterance>
Assistant: no<end_of_utterance>
<BLANKLINE>
>>> render_sample(s, with_answer=False, add_generation_prompt=True)[-38:]
'fracture?<end_of_utterance>\\nAssistant:'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from medvqa.records import VQASample

__all__ = [
    "CAPTION_INSTRUCTION",
    "CAPTION_PROMPT",
    "EXPERT_INSTRUCTION",
    "EXPERT_PROMPT",
    "IDEFICS2_CHAT_TEMPLATE",
    "MEDEVALKIT_OPEN_INSTRUCTION",
    "MEDEVALKIT_PROMPT",
    "MEDEVALKIT_YES_NO_INSTRUCTION",
    "PAPER_VQA_PROMPT",
    "PROMPTS",
    "PROMPT_INSTRUCTION_KEY",
    "RESERVED_TOKENS",
    "PromptPart",
    "PromptTemplate",
    "build_messages",
    "default_prompt",
    "get_prompt",
    "render_messages",
    "render_sample",
]

PromptPart = Literal["instruction", "image", "question"]
"""One slot of a prompt layout: the template's instruction, the image, or the sample's question."""

PROMPT_INSTRUCTION_KEY = "prompt_instruction"
"""Sample metadata key whose value replaces the template's instruction (set by prompt transforms)."""

CAPTION_INSTRUCTION = "The following image is a radiology scan. Deeply analyze and diagnose this image."
"""The stage-1 captioning instruction of the paper (the question of ROCO caption samples)."""

EXPERT_INSTRUCTION = (
    "You are an expert radiologist evaluating the case, answer the question succinctly "
    "based on the medical image."
)
"""The paper's "expert prompt", used at inference only in place of ``Answer briefly.``."""

IDEFICS2_CHAT_TEMPLATE = (
    "{% for message in messages %}{{message['role'].capitalize()}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}"
    "<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
"""The Jinja chat template of Idefics2, verbatim.

Source: the ``chat_template`` entry of ``processor_config.json`` in the
``HuggingFaceM4/idefics2-8b-chatty`` repository on the Hugging Face hub
(https://huggingface.co/HuggingFaceM4/idefics2-8b-chatty/blob/791b4b5e58fee17aac2d20b99e1287de761948b4/processor_config.json);
the base ``HuggingFaceM4/idefics2-8b`` repository's ``processor_config.json`` holds no template.
The other families' templates are bundled with :mod:`medvqa.models` (:func:`medvqa.models.chat_template`).
:func:`render_messages` is its pure-Python twin; tests check that both render every kind of
sample identically, with plain Jinja and with ``processor.apply_chat_template``.
"""


@dataclass(frozen=True)
class PromptTemplate:
    """How a sample becomes the user turn: an instruction and the order of the parts.

    Attributes:
        name: Short name recorded with every prediction (``paper``, ``expert``, ...).
        instruction: Instruction text. It may be empty only when ``layout`` has no
            ``instruction`` part.
        layout: The order of the user turn's items; each part appears at most once and
            ``question`` must appear.

    >>> t = PromptTemplate(name="terse", instruction="One word.", layout=("image", "instruction", "question"))
    >>> PromptTemplate.from_dict(t.to_dict()) == t
    True
    >>> PromptTemplate(name="bad", instruction="x", layout=("image",))
    Traceback (most recent call last):
    ...
    ValueError: prompt template 'bad': layout ('image',) must contain 'question'
    """

    name: str
    instruction: str
    layout: tuple[PromptPart, ...] = ("instruction", "image", "question")

    def __post_init__(self) -> None:
        where = f"prompt template {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError("prompt template: name must be a non-empty string")
        if not isinstance(self.instruction, str):
            raise TypeError(f"{where}: instruction must be a string, got {type(self.instruction).__name__}")
        object.__setattr__(self, "layout", tuple(self.layout))
        valid = get_args(PromptPart)
        for part in self.layout:
            if part not in valid:
                raise ValueError(f"{where}: unknown layout part {part!r}; valid parts are {valid}")
        if len(set(self.layout)) != len(self.layout):
            raise ValueError(f"{where}: layout {self.layout} repeats a part")
        if "question" not in self.layout:
            raise ValueError(f"{where}: layout {self.layout} must contain 'question'")
        if "instruction" in self.layout and not self.instruction.strip():
            raise ValueError(f"{where}: the layout has an 'instruction' part but the instruction is empty")

    @property
    def has_instruction(self) -> bool:
        """Whether the layout has an instruction slot."""
        return "instruction" in self.layout

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict that :meth:`from_dict` reads back."""
        return {"name": self.name, "instruction": self.instruction, "layout": list(self.layout)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptTemplate:
        """Build a template from :meth:`to_dict` output.

        Raises:
            ValueError: A key is missing or a value is invalid.
        """
        missing = [k for k in ("name", "instruction") if k not in data]
        if missing:
            raise ValueError(f"prompt template dict is missing {missing}; keys are name, instruction, layout")
        layout = data.get("layout", ("instruction", "image", "question"))
        return cls(name=str(data["name"]), instruction=str(data["instruction"]), layout=tuple(layout))


PAPER_VQA_PROMPT = PromptTemplate(name="paper", instruction="Answer briefly.")
"""The paper's stage-2 and evaluation prompt: ``[text "Answer briefly.", image, text question]``."""

EXPERT_PROMPT = PromptTemplate(name="expert", instruction=EXPERT_INSTRUCTION)
"""The paper's expert-radiologist prompt, same layout as :data:`PAPER_VQA_PROMPT`."""

CAPTION_PROMPT = PromptTemplate(name="caption", instruction="", layout=("image", "question"))
"""The stage-1 caption prompt ``[image, text instruction]``: for caption samples the question
*is* the instruction (:data:`CAPTION_INSTRUCTION` for ROCO samples)."""

MEDEVALKIT_YES_NO_INSTRUCTION = "\nPlease output 'yes' or 'no'(no extra output)."
"""MedEvalKit's instruction for a question whose **truth** is yes/no (after a newline)."""

MEDEVALKIT_OPEN_INSTRUCTION = "\nPlease answer the question concisely."
"""MedEvalKit's instruction for every other question (after a newline)."""

MEDEVALKIT_PROMPT = PromptTemplate(
    name="medevalkit", instruction=MEDEVALKIT_OPEN_INSTRUCTION, layout=("image", "question", "instruction")
)
"""MedEvalKit's prompt layout: ``[image, question, newline + instruction]``.

On its own it gives every question the open-ended instruction. MedEvalKit chooses the
instruction from the reference answer (yes/no truth: :data:`MEDEVALKIT_YES_NO_INSTRUCTION`),
which **leaks the answer type** to the model; that choice is made only by the
:class:`medvqa.transforms.MedEvalKitPrompt` transform (``medvqa ablate --transforms
medevalkit``), to reproduce MedEvalKit's numbers.
"""

PROMPTS: Mapping[str, PromptTemplate] = {
    t.name: t for t in (PAPER_VQA_PROMPT, EXPERT_PROMPT, CAPTION_PROMPT, MEDEVALKIT_PROMPT)
}
"""The built-in templates by name."""


def get_prompt(prompt: str | PromptTemplate) -> PromptTemplate:
    """Look up a built-in template by name (a template is returned unchanged).

    >>> get_prompt("expert").instruction[:30]
    'You are an expert radiologist '
    >>> get_prompt("nope")
    Traceback (most recent call last):
    ...
    ValueError: unknown prompt 'nope'; built-in prompts are: caption, expert, medevalkit, paper
    """
    if isinstance(prompt, PromptTemplate):
        return prompt
    try:
        return PROMPTS[prompt]
    except KeyError:
        raise ValueError(
            f"unknown prompt {prompt!r}; built-in prompts are: {', '.join(sorted(PROMPTS))}"
        ) from None


def default_prompt(sample: VQASample) -> PromptTemplate:
    """The template used when none is given: the caption prompt for caption samples, else the paper's.

    >>> from medvqa.records import VQASample
    >>> s = VQASample(id="r:1", question=CAPTION_INSTRUCTION, answer="CT of the chest.",
    ...               answer_type="open", answer_type_source="inferred", dataset="roco",
    ...               split="train", task="caption")
    >>> default_prompt(s).name
    'caption'
    """
    return CAPTION_PROMPT if sample.task == "caption" else PAPER_VQA_PROMPT


RESERVED_TOKENS: tuple[str, ...] = ("<image>", "<fake_token_around_image>", "<end_of_utterance>")
"""Idefics2 control tokens that may not appear in questions, answers or instructions."""


def _check_text(sample: VQASample, field: str, text: str) -> None:
    for token in RESERVED_TOKENS:
        if token in text:
            raise ValueError(
                f"sample {sample.id!r}: field {field!r} contains the reserved token {token!r}, which "
                "would corrupt the chat; remove it from the data"
            )


def _instruction(sample: VQASample, template: PromptTemplate) -> str:
    override = sample.metadata.get(PROMPT_INSTRUCTION_KEY)
    if override is None:
        return template.instruction
    if not isinstance(override, str) or not override.strip():
        raise ValueError(
            f"sample {sample.id!r}: metadata[{PROMPT_INSTRUCTION_KEY!r}] must be a non-empty string, "
            f"got {override!r}"
        )
    if not template.has_instruction:
        raise ValueError(
            f"sample {sample.id!r}: metadata[{PROMPT_INSTRUCTION_KEY!r}] overrides the instruction, but "
            f"prompt template {template.name!r} has no instruction slot (layout {template.layout}); "
            "use a template whose layout contains 'instruction'"
        )
    return override


def build_messages(
    sample: VQASample,
    *,
    prompt: PromptTemplate | str | None = None,
    with_answer: bool,
) -> list[dict[str, Any]]:
    """Turn a sample into Idefics2 chat messages.

    The user turn follows the template's layout. The template's instruction is replaced by
    ``sample.metadata["prompt_instruction"]`` when present. A sample without image
    (``image=None``) gets no image item, and its adjacent text items are joined with one
    space. The answer type is never used: the prompt does not leak it.

    Args:
        sample: The sample.
        prompt: A template or a built-in name; ``None`` picks :func:`default_prompt`.
        with_answer: Append the assistant turn holding the reference answer (training).

    Returns:
        A list of ``{"role", "content"}`` dicts with ``{"type": "text", "text"}`` and
        ``{"type": "image"}`` items, in the format of ``processor.apply_chat_template``.

    Raises:
        ValueError: The instruction override is invalid, or a text contains one of
            :data:`RESERVED_TOKENS`.

    >>> from medvqa.records import VQASample
    >>> s = VQASample(id="t:1", question="Is it normal?", answer="yes", answer_type="closed",
    ...               answer_type_source="inferred", dataset="demo", split="test")
    >>> build_messages(s, with_answer=False)
    [{'role': 'user', 'content': [{'type': 'text', 'text': 'Answer briefly. Is it normal?'}]}]
    """
    template = default_prompt(sample) if prompt is None else get_prompt(prompt)
    instruction = _instruction(sample, template)
    _check_text(sample, "question", sample.question)
    _check_text(sample, "instruction", instruction)
    if with_answer:
        _check_text(sample, "answer", sample.answer)
    content: list[dict[str, Any]] = []
    for part in template.layout:
        if part == "image":
            if sample.image is not None:
                content.append({"type": "image"})
            continue
        text = instruction if part == "instruction" else sample.question
        if sample.image is None and content and content[-1]["type"] == "text":
            content[-1] = {"type": "text", "text": f"{content[-1]['text']} {text}"}
        else:
            content.append({"type": "text", "text": text})
    messages: list[dict[str, Any]] = [{"role": "user", "content": content}]
    if with_answer:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": sample.answer}]})
    return messages


def render_messages(messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = False) -> str:
    """Render chat messages exactly as Idefics2's chat template does (pure Python).

    Args:
        messages: Messages as returned by :func:`build_messages`.
        add_generation_prompt: Append ``Assistant:`` for generation.

    Returns:
        The prompt text, with one ``<image>`` per image item (the processor later expands
        it into ``<fake_token_around_image>``, the image tokens and another
        ``<fake_token_around_image>``).

    >>> render_messages([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}],
    ...                 add_generation_prompt=True)
    'User:<image>Describe.<end_of_utterance>\\nAssistant:'
    """
    out: list[str] = []
    for message in messages:
        content = message["content"]
        if not content:
            raise ValueError(f"message of role {message.get('role')!r} has no content items")
        out.append(str(message["role"]).capitalize())
        out.append(":" if content[0]["type"] == "image" else ": ")
        for item in content:
            if item["type"] == "text":
                out.append(str(item["text"]))
            elif item["type"] == "image":
                out.append("<image>")
        out.append("<end_of_utterance>\n")
    if add_generation_prompt:
        out.append("Assistant:")
    return "".join(out)


def render_sample(
    sample: VQASample,
    *,
    prompt: PromptTemplate | str | None = None,
    with_answer: bool,
    add_generation_prompt: bool = False,
) -> str:
    """Shorthand for ``render_messages(build_messages(sample, ...), ...)``.

    >>> from medvqa.records import ImageRef, VQASample
    >>> s = VQASample(id="r:1", question=CAPTION_INSTRUCTION, answer="Chest CT.", answer_type="open",
    ...               answer_type_source="inferred", dataset="roco", split="train", task="caption",
    ...               image=ImageRef(path="ROCO_00001.jpg"))
    >>> render_sample(s, with_answer=True)
    'User:<image>The following image is a radiology scan. Deeply analyze and diagnose this image.<end_of_utterance>\\nAssistant: Chest CT.<end_of_utterance>\\n'
    """
    return render_messages(
        build_messages(sample, prompt=prompt, with_answer=with_answer),
        add_generation_prompt=add_generation_prompt,
    )
