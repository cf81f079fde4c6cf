"""Training and generation collators for Idefics2 processors.

A collator turns a list of :class:`~medvqa.records.VQASample` into the tensors a model
step takes. Both render the chat with :mod:`medvqa.chat`, let the processor expand each
``<image>`` into ``<fake_token_around_image>`` + ``image_seq_len`` x ``<image>`` +
``<fake_token_around_image>``, tokenize, pad, and run the image processor on the images
(samples without image contribute none).

Loss masking of :class:`TrainingCollator` (labels are ``-100`` where no loss is taken):

* ``answer`` (recommended): only the answer and its ``<end_of_utterance>`` are supervised.
  The prompt length comes from a prompt-only rendering of the same sample (the chat up to
  ``Assistant:``), which must be a token prefix of the full rendering.
* ``paper`` (as the paper's run did): every token is supervised except padding and the
  image tokens (``<image>``, ``<fake_token_around_image>``), prompt included.

In both modes the first token (``<s>``) is labelled ``-100``: a causal loss never predicts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from medvqa._errors import ImageLoadError, MedVQAError
from medvqa.chat import IDEFICS2_CHAT_TEMPLATE, PromptTemplate, build_messages, get_prompt, render_messages
from medvqa.records import VQASample

__all__ = [
    "IGNORE_INDEX",
    "GenerationCollator",
    "MaskingMode",
    "OverflowPolicy",
    "TrainingCollator",
    "render_chat",
]

IGNORE_INDEX = -100
"""Label value that the loss ignores."""

MaskingMode = Literal["answer", "paper"]
"""``answer``: supervise the answer and its end of utterance only; ``paper``: every text token."""

OverflowPolicy = Literal["error", "drop"]
"""What to do with a sample that ``max_length`` would cut into its image or whole answer."""


def render_chat(
    processor: Any,
    sample: VQASample,
    *,
    prompt: PromptTemplate | str | None,
    with_answer: bool,
    add_generation_prompt: bool,
) -> str:
    """Render one sample with the processor's chat template.

    Processors carrying Idefics2's own template are rendered by
    :func:`medvqa.chat.render_messages` (identical output, no Jinja); any other template
    goes through ``processor.apply_chat_template``.
    """
    messages = build_messages(sample, prompt=prompt, with_answer=with_answer)
    template = getattr(processor, "chat_template", None)
    if template is None or template == IDEFICS2_CHAT_TEMPLATE:
        return render_messages(messages, add_generation_prompt=add_generation_prompt)
    text: str = processor.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    return text


def _special_ids(processor: Any) -> tuple[int, int, int, int]:
    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids("<image>")
    fake_id = tok.convert_tokens_to_ids("<fake_token_around_image>")
    eou_id = tok.convert_tokens_to_ids("<end_of_utterance>")
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.unk_token_id
    if pad_id is None:
        raise MedVQAError("the tokenizer has neither a pad token nor an unk token to pad with")
    return int(image_id), int(fake_id), int(eou_id), int(pad_id)


def _open_image(sample: VQASample) -> list[Any]:
    """The sample's image as a one-item list (none without image); errors name the sample."""
    if sample.image is None:
        return []
    try:
        return [sample.image.open()]
    except ImageLoadError as exc:
        raise ImageLoadError(f"sample {sample.id!r}: {exc}") from exc


def _images(processor: Any, samples: Sequence[VQASample]) -> dict[str, Any]:
    nested = [_open_image(s) for s in samples]
    if not any(nested):
        return {}
    out = processor.image_processor(nested, return_tensors="pt")
    return {"pixel_values": out["pixel_values"], "pixel_attention_mask": out["pixel_attention_mask"]}


def _pad(rows: Sequence[Sequence[int]], value: int, *, left: bool, multiple: int | None) -> Any:
    import torch

    width = max(len(r) for r in rows)
    if multiple:
        width = -(-width // multiple) * multiple
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if not row:
            continue
        t = torch.tensor(row, dtype=torch.long)
        if left:
            out[i, width - len(row) :] = t
        else:
            out[i, : len(row)] = t
    return out


@dataclass
class TrainingCollator:
    """Collate samples into a supervised Idefics2 batch (right padding).

    Input: a list of :class:`~medvqa.records.VQASample` (VQA or caption, with or without
    image). Output: a dict of tensors

    * ``input_ids`` ``(batch, length)`` long, right-padded with the pad token;
    * ``attention_mask`` ``(batch, length)`` long, 0 on padding;
    * ``labels`` ``(batch, length)`` long, ``-100`` where no loss is taken (see the module
      docstring for the two masking modes);
    * ``pixel_values`` ``(batch, max_images, 3, H, W)`` float and ``pixel_attention_mask``
      ``(batch, max_images, H, W)``, only when some sample has an image (text-only samples
      get all-zero padding images, which the model skips).

    Attributes:
        processor: An Idefics2 processor (injected).
        mode: ``answer`` (recommended) or ``paper``.
        prompt: Prompt template or built-in name; ``None``: per-sample default
            (caption prompt for caption samples, the paper's VQA prompt otherwise).
        max_length: Longest sequence kept. A longer sample is truncated when the cut keeps
            its image tokens and at least one answer token; otherwise it overflows.
        on_overflow: ``error`` raises a :class:`~medvqa.MedVQAError` naming the sample;
            ``drop`` leaves it out of the batch and records its id in :attr:`dropped`.
        pad_to_multiple_of: Pad the length up to a multiple of this.
        dropped: Ids of the samples dropped so far (``on_overflow="drop"``).
        truncated: Ids of the samples truncated so far.
    """

    processor: Any
    mode: MaskingMode = "answer"
    prompt: PromptTemplate | str | None = None
    max_length: int | None = None
    on_overflow: OverflowPolicy = "error"
    pad_to_multiple_of: int | None = None
    dropped: list[str] = field(default_factory=list, repr=False)
    truncated: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in get_args(MaskingMode):
            raise ValueError(f"mode must be one of {get_args(MaskingMode)}, got {self.mode!r}")
        if self.on_overflow not in get_args(OverflowPolicy):
            raise ValueError(
                f"on_overflow must be one of {get_args(OverflowPolicy)}, got {self.on_overflow!r}"
            )
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {self.max_length}")
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be at least 1, got {self.pad_to_multiple_of}")
        if self.prompt is not None:
            self.prompt = get_prompt(self.prompt)

    def encode(self, samples: Sequence[VQASample]) -> list[tuple[VQASample, list[int], list[int]]]:
        """Token ids and labels of each sample, unpadded, after truncation and overflow handling.

        Returns:
            ``(sample, input_ids, labels)`` for every kept sample, in input order.
        """
        image_id, fake_id, eou_id, _ = _special_ids(self.processor)
        full = [
            render_chat(self.processor, s, prompt=self.prompt, with_answer=True, add_generation_prompt=False)
            for s in samples
        ]
        prompts = [
            render_chat(self.processor, s, prompt=self.prompt, with_answer=False, add_generation_prompt=True)
            for s in samples
        ]
        ids = self.processor(text=full + prompts)["input_ids"]
        n = len(samples)
        out: list[tuple[VQASample, list[int], list[int]]] = []
        masked = {image_id, fake_id}  # padding is added later, and labelled by position
        for i, sample in enumerate(samples):
            seq, prefix = list(ids[i]), list(ids[n + i])
            start = len(prefix)
            if seq[:start] != prefix:
                raise MedVQAError(
                    f"sample {sample.id!r}: the prompt-only rendering is not a token prefix of the full "
                    "rendering, so the prompt length is ambiguous; check the tokenizer and chat template"
                )
            try:
                end = seq.index(eou_id, start) + 1
            except ValueError:
                raise MedVQAError(
                    f"sample {sample.id!r}: no <end_of_utterance> after the answer in the rendered chat"
                ) from None
            labels = [IGNORE_INDEX if t in masked else t for t in seq]
            if labels:
                labels[0] = IGNORE_INDEX
            if self.mode == "answer":
                labels = [lab if start <= j < end else IGNORE_INDEX for j, lab in enumerate(labels)]
            if self.max_length is not None and len(seq) > self.max_length:
                cut = self.max_length
                last_image = max((j for j, t in enumerate(seq) if t in (image_id, fake_id)), default=-1)
                reason = None
                if last_image >= cut:
                    reason = f"would cut into its image tokens (the last one is at position {last_image})"
                elif start >= cut:
                    reason = f"would remove the whole answer (the answer starts at token {start})"
                if reason is not None:
                    if self.on_overflow == "drop":
                        self.dropped.append(sample.id)
                        continue
                    raise MedVQAError(
                        f"sample {sample.id!r}: max_length={self.max_length} {reason}; the sample has "
                        f"{len(seq)} tokens. Raise max_length or pass on_overflow='drop' to skip such samples"
                    )
                seq, labels = seq[:cut], labels[:cut]
                self.truncated.append(sample.id)
            out.append((sample, seq, labels))
        return out

    def __call__(self, samples: Sequence[VQASample]) -> dict[str, Any]:
        """Collate a batch (see the class docstring for the output keys)."""
        import torch

        if not samples:
            raise ValueError("cannot collate an empty batch")
        _, _, _, pad_id = _special_ids(self.processor)
        encoded = self.encode(samples)
        if not encoded:
            raise MedVQAError(
                f"every sample of the batch overflowed max_length={self.max_length} and was dropped: "
                f"{[s.id for s in samples]}"
            )
        rows = [e[1] for e in encoded]
        input_ids = _pad(rows, pad_id, left=False, multiple=self.pad_to_multiple_of)
        labels = _pad([e[2] for e in encoded], IGNORE_INDEX, left=False, multiple=self.pad_to_multiple_of)
        attention_mask = torch.zeros_like(input_ids)
        for i, row in enumerate(rows):
            attention_mask[i, : len(row)] = 1
        batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        batch.update(_images(self.processor, [e[0] for e in encoded]))
        return batch


@dataclass
class GenerationCollator:
    """Collate samples into a generation batch: prompt up to ``Assistant:``, left padding, no labels.

    Output keys: ``input_ids`` and ``attention_mask`` ``(batch, length)`` (left-padded, so
    every prompt ends at the last position), plus ``pixel_values`` and
    ``pixel_attention_mask`` when some sample has an image. Rows follow the input order.

    Attributes:
        processor: An Idefics2 processor (injected).
        prompt: Prompt template or built-in name; ``None``: per-sample default.
    """

    processor: Any
    prompt: PromptTemplate | str | None = None

    def __post_init__(self) -> None:
        if self.prompt is not None:
            self.prompt = get_prompt(self.prompt)

    def texts(self, samples: Sequence[VQASample]) -> list[str]:
        """The rendered prompts (with ``<image>`` placeholders) of the samples."""
        return [
            render_chat(self.processor, s, prompt=self.prompt, with_answer=False, add_generation_prompt=True)
            for s in samples
        ]

    def __call__(self, samples: Sequence[VQASample]) -> dict[str, Any]:
        """Collate a batch (see the class docstring for the output keys)."""
        import torch

        if not samples:
            raise ValueError("cannot collate an empty batch")
        _, _, _, pad_id = _special_ids(self.processor)
        rows = [list(r) for r in self.processor(text=self.texts(samples))["input_ids"]]
        input_ids = _pad(rows, pad_id, left=True, multiple=None)
        attention_mask = torch.zeros_like(input_ids)
        width = input_ids.shape[1]
        for i, row in enumerate(rows):
            attention_mask[i, width - len(row) :] = 1
        batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        batch.update(_images(self.processor, samples))
        return batch
