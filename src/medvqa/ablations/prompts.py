"""Prompt ablations: change the instruction the model is given.

:class:`PromptVariant` replaces or extends the instruction (the paper's expert-radiologist
prompt), and :class:`MedEvalKitPrompt` reproduces MedEvalKit's prompts, which are chosen
from the reference answer. Both work through ``metadata["prompt_instruction"]``, which the
chat layer uses in place of the prompt template's instruction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar, Literal

from medvqa.ablations.transforms import Transform, _check_choice, _record
from medvqa.chat import EXPERT_INSTRUCTION, PAPER_VQA_PROMPT
from medvqa.chat import PROMPT_INSTRUCTION_KEY as PROMPT_KEY
from medvqa.records import VQASample

__all__ = ["PAPER_INSTRUCTION", "MedEvalKitPrompt", "PromptMode", "PromptVariant"]

PAPER_INSTRUCTION = PAPER_VQA_PROMPT.instruction
"""The instruction of :data:`medvqa.chat.PAPER_VQA_PROMPT` (``Answer briefly.``)."""

PromptMode = Literal["replace", "prepend", "append"]
"""How :class:`PromptVariant` combines its instruction with the current one."""


# --- prompts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptVariant(Transform):
    """Change the instruction the model is given, through ``metadata["prompt_instruction"]``.

    The chat layer uses that field in place of the prompt template's instruction. With
    ``mode="replace"`` the instruction becomes ``instruction`` (the paper's expert-prompt
    ablation replaced "Answer briefly." this way); ``"prepend"`` and ``"append"`` add it
    before or after the current instruction: the sample's ``prompt_instruction`` if an
    earlier transform set one, else ``base``.

    Attributes:
        instruction: The instruction text (default: :data:`medvqa.chat.EXPERT_INSTRUCTION`).
        mode: ``"replace"``, ``"prepend"`` or ``"append"``.
        base: The instruction that ``prepend``/``append`` extend when the sample has none
            yet (default: the paper's ``Answer briefly.``; match your prompt template).
        label: A short name for tags and reports; by default ``"expert"`` or ``"paper"`` for
            those texts, else ``custom-`` and the first 8 hex digits of the text's SHA-256.

    >>> PromptVariant.expert(mode="prepend")([VQASample(
    ...     id="a", question="q", answer="yes", answer_type="closed",
    ...     answer_type_source="annotation", dataset="d", split="test")])[0].metadata["prompt_instruction"]
    'You are an expert radiologist evaluating the case, answer the question succinctly based on the medical image. Answer briefly.'
    """

    name: ClassVar[str] = "prompt_variant"
    instruction: str = EXPERT_INSTRUCTION
    mode: PromptMode = "replace"
    base: str = PAPER_INSTRUCTION
    label: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise ValueError("PromptVariant: instruction must be a non-empty string")
        if not isinstance(self.base, str):
            raise TypeError("PromptVariant: base must be a string")
        _check_choice(self.mode, PromptMode, "PromptVariant", "mode")
        if not self.label:
            if self.instruction == EXPERT_INSTRUCTION:
                label = "expert"
            elif self.instruction == PAPER_INSTRUCTION:
                label = "paper"
            else:
                label = "custom-" + hashlib.sha256(self.instruction.encode("utf-8")).hexdigest()[:8]
            object.__setattr__(self, "label", label)
        if "+" in self.label or "(" in self.label or ")" in self.label:
            raise ValueError(f"PromptVariant: label may not contain '+', '(' or ')', got {self.label!r}")

    @classmethod
    def expert(cls, *, mode: PromptMode = "replace") -> PromptVariant:
        """The paper's expert-radiologist instruction (replacing the paper's one by default)."""
        return cls(instruction=EXPERT_INSTRUCTION, mode=mode)

    @property
    def tag(self) -> str:
        """``prompt_variant(label=..., mode=...)``: the text itself is in ``prompt_instruction``."""
        mode = "" if self.mode == "replace" else f", mode={self.mode!r}"
        return f"{self.name}(label={self.label!r}{mode})"

    def __repr__(self) -> str:
        if (
            self.instruction == EXPERT_INSTRUCTION
            and self.base == PAPER_INSTRUCTION
            and self.label == "expert"
        ):
            return (
                "PromptVariant.expert()"
                if self.mode == "replace"
                else f"PromptVariant.expert(mode={self.mode!r})"
            )
        return (
            f"PromptVariant(instruction={self.instruction!r}, mode={self.mode!r}, "
            f"base={self.base!r}, label={self.label!r})"
        )

    def _apply(self, samples: list[VQASample]) -> list[VQASample]:
        out = []
        for s in samples:
            current = s.metadata.get(PROMPT_KEY)
            current_text = current if isinstance(current, str) and current else self.base
            if self.mode == "replace":
                text = self.instruction
            elif self.mode == "prepend":
                text = f"{self.instruction} {current_text}".strip()
            else:
                text = f"{current_text} {self.instruction}".strip()
            out.append(_record(s, self.tag, **{PROMPT_KEY: text}))
        return out


@dataclass(frozen=True)
class MedEvalKitPrompt(Transform):
    """MedEvalKit's prompts: the instruction is chosen from the **reference answer**.

    A sample whose answer is ``yes``/``no`` (lowercased, stripped) gets
    :data:`medvqa.chat.MEDEVALKIT_YES_NO_INSTRUCTION`, every other one
    :data:`medvqa.chat.MEDEVALKIT_OPEN_INSTRUCTION`, through ``metadata["prompt_instruction"]``.
    Use it with the ``medevalkit`` prompt template (question, then newline and instruction).
    Choosing the prompt from the truth **leaks the answer type** to the model: it exists only
    to reproduce numbers made with MedEvalKit, never for a fair evaluation.

    >>> s = VQASample(id="a", question="Is it normal?", answer="No", answer_type="closed",
    ...               answer_type_source="annotation", dataset="d", split="test")
    >>> MedEvalKitPrompt()([s])[0].metadata["prompt_instruction"]
    "\\nPlease output 'yes' or 'no'(no extra output)."
    """

    name: ClassVar[str] = "medevalkit_prompt"

    def _apply(self, samples: list[VQASample]) -> list[VQASample]:
        from medvqa.chat import MEDEVALKIT_OPEN_INSTRUCTION, MEDEVALKIT_YES_NO_INSTRUCTION

        out = []
        for s in samples:
            yes_no = s.answer.lower().strip() in ("yes", "no")
            text = MEDEVALKIT_YES_NO_INSTRUCTION if yes_no else MEDEVALKIT_OPEN_INSTRUCTION
            out.append(_record(s, self.tag, **{PROMPT_KEY: text}))
        return out
