"""Training and generation collators for the processors of every supported model family.

A collator turns a list of :class:`~medvqa.records.VQASample` into the tensors a model
step takes. Both render the chat with the processor's own chat template (Idefics2's is
rendered by :mod:`medvqa.chat`, identically), let the processor expand each image
placeholder into the family's image tokens (for Idefics2 ``<fake_token_around_image>`` +
``image_seq_len`` x ``<image>`` + ``<fake_token_around_image>``), tokenize, pad, and run the
image processor on the images (samples without image contribute none). The family
(:class:`medvqa.models.ModelFamily`) is told by the processor, or given as ``family=``; it
says which tokens are image tokens, which token ends the assistant's turn, and which
extra processor outputs (Qwen's ``mm_token_type_ids`` and ``image_grid_thw``, Gemma 3's
``token_type_ids``, LLaVA-NeXT's ``image_sizes``...) the batch keeps.

Loss masking of :class:`TrainingCollator` (labels are ``-100`` where no loss is taken):

* ``answer`` (recommended): only the answer and its end-of-turn token (Idefics2's
  ``<end_of_utterance>``) are supervised. The prompt length comes from a prompt-only
  rendering of the same sample (the chat up to the generation prompt, ``Assistant:`` for
  Idefics2), which must be a token prefix of the full rendering.
* ``paper`` (as the paper's run did): every token is supervised except padding and the
  image tokens (``<image>``, ``<fake_token_around_image>`` for Idefics2), prompt included.

In both modes the first token (``<s>``) is labelled ``-100``: a causal loss never predicts it.
Templates that end the assistant turn with a space instead of an end token (LLaVA-1.5) get
the end token in place of that space, so a fine-tuned model learns to stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from medvqa._errors import ImageLoadError, MedVQAError
from medvqa.chat import IDEFICS2_CHAT_TEMPLATE, PromptTemplate, build_messages, get_prompt, render_messages
from medvqa.records import VQASample

if TYPE_CHECKING:
    from medvqa.models import ModelFamily

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
    family: str | ModelFamily | None = None,
) -> str:
    """Render one sample with the processor's chat template.

    Processors carrying Idefics2's own template are rendered by
    :func:`medvqa.chat.render_messages` (identical output, no Jinja); any other template
    goes through ``processor.apply_chat_template``. When the family's template ends the
    assistant turn without its end token (LLaVA-1.5), a rendering with the answer gets the
    token in place of the trailing whitespace.

    Args:
        processor: The processor.
        sample: The sample.
        prompt: Prompt template or built-in name; ``None``: per-sample default.
        with_answer: Include the assistant turn holding the reference answer.
        add_generation_prompt: End with the generation prompt.
        family: The model family (default: told by the processor, else Idefics2's rules).
    """
    messages = build_messages(sample, prompt=prompt, with_answer=with_answer)
    fam = _family(processor, family)
    if fam is not None and not _is_idefics2(fam):
        _check_reserved(sample, messages, fam)
    template = getattr(processor, "chat_template", None)
    if template is None or template == IDEFICS2_CHAT_TEMPLATE:
        return render_messages(messages, add_generation_prompt=add_generation_prompt)
    text: str = processor.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    if with_answer and fam is not None and fam.append_end_of_turn:
        text = text.rstrip() + fam.end_of_turn
    return text


def _family(processor: Any, family: str | ModelFamily | None) -> ModelFamily | None:
    """The family of ``processor`` (``None`` when it is none medvqa knows and none is given)."""
    from medvqa._errors import MedVQAError
    from medvqa.models._families import family_of_processor, get_family

    if family is not None:
        return get_family(family)
    try:
        return family_of_processor(processor)
    except MedVQAError:
        return None


def _check_reserved(sample: VQASample, messages: list[dict[str, Any]], fam: ModelFamily) -> None:
    """Refuse text that holds one of the family's control tokens (it would corrupt the chat)."""
    reserved = {*fam.image_tokens, fam.end_of_turn, *fam.stop_tokens}
    for message in messages:
        for item in message["content"]:
            text = item.get("text", "")
            for token in reserved:
                if token in text:
                    raise ValueError(
                        f"sample {sample.id!r}: the {message['role']} turn contains {fam.name}'s reserved "
                        f"token {token!r}, which would corrupt the chat; remove it from the data"
                    )


def _is_idefics2(fam: ModelFamily | None) -> bool:
    return fam is None or fam.name == "idefics2"


def _collate_family(processor: Any, family: str | ModelFamily | None) -> ModelFamily:
    """The family whose rules a collator applies: Idefics2's for a processor of no family medvqa knows."""
    from medvqa.models._families import get_family

    return _family(processor, family) or get_family("idefics2")


def _render_all(
    processor: Any,
    samples: Sequence[VQASample],
    *,
    prompt: PromptTemplate | str | None,
    with_answer: bool,
    family: ModelFamily,
) -> list[str]:
    """The chats of ``samples``: with their answers, or up to the generation prompt."""
    return [
        render_chat(
            processor,
            s,
            prompt=prompt,
            with_answer=with_answer,
            add_generation_prompt=not with_answer,
            family=family,
        )
        for s in samples
    ]


def _token_ids(tok: Any, tokens: Sequence[str]) -> set[int]:
    """Ids of the tokens the vocabulary has (unknown tokens map to no id)."""
    out = set()
    for token in tokens:
        i = tok.convert_tokens_to_ids(token)
        if i is not None and (i != tok.unk_token_id or token == tok.unk_token):
            out.add(int(i))
    return out


def _pad_id(processor: Any) -> int:
    tok = processor.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.unk_token_id
    if pad_id is None:
        raise MedVQAError("the tokenizer has neither a pad token nor an unk token to pad with")
    return int(pad_id)


def _image_args(fam: ModelFamily, samples: Sequence[VQASample]) -> list[Any] | None:
    """The samples' images in the layout the family's processor takes (``None``: no image)."""
    nested = [_open_image(s) for s in samples]
    if not any(nested):
        return None
    if fam.nested_images:
        return nested
    return [img for imgs in nested for img in imgs]


def _process(processor: Any, fam: ModelFamily, texts: list[str], images: list[Any] | None) -> dict[str, Any]:
    """Run the processor on rendered texts: unpadded rows of ids and per-token inputs, plus image outputs.

    Rendered text that already starts with the tokenizer's BOS (Gemma 3, Idefics3-8B) is
    tokenized without special tokens, so it never gets a second BOS.
    """
    bos = getattr(processor.tokenizer, "bos_token", None)
    add_special = not (bos and texts and texts[0].startswith(bos))
    kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
    if images is not None:
        kwargs["images"] = images
    out = processor(**kwargs, add_special_tokens=add_special)
    mask = out["attention_mask"].bool()
    rows: dict[str, Any] = {"input_ids": [r[m].tolist() for r, m in zip(out["input_ids"], mask, strict=True)]}
    for key in fam.per_token_inputs:
        if key in out:
            rows[key] = [r[m].tolist() for r, m in zip(out[key], mask, strict=True)]
    images_out = {
        k: v for k, v in out.items() if k not in ("input_ids", "attention_mask", *fam.per_token_inputs)
    }
    return {"rows": rows, "images": images_out}


def _open_image(sample: VQASample) -> list[Any]:
    """The sample's image as a one-item list (none without image); errors name the sample."""
    if sample.image is None:
        return []
    try:
        return [sample.image.open()]
    except ImageLoadError as exc:
        raise ImageLoadError(f"sample {sample.id!r}: {exc}") from exc


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

    Families other than Idefics2 also get the extra processor outputs their model needs
    (:attr:`~medvqa.models.ModelFamily.extra_inputs`, e.g. ``image_grid_thw`` and
    ``mm_token_type_ids`` for Qwen, ``token_type_ids`` for Gemma 3), with per-token ones
    padded with 0 and truncated like the ids; ``pixel_values`` then has the processor's own
    layout.

    Attributes:
        processor: The processor of a supported family (injected).
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
        family: The model family (default: told by the processor).
    """

    processor: Any
    mode: MaskingMode = "answer"
    prompt: PromptTemplate | str | None = None
    max_length: int | None = None
    on_overflow: OverflowPolicy = "error"
    pad_to_multiple_of: int | None = None
    dropped: list[str] = field(default_factory=list, repr=False)
    truncated: list[str] = field(default_factory=list, repr=False)
    family: str | None = None

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
        if self.family is not None:
            _family(self.processor, self.family)  # an unknown family is refused here

    def encode(self, samples: Sequence[VQASample]) -> list[tuple[VQASample, list[int], list[int]]]:
        """Token ids and labels of each sample, unpadded, after truncation and overflow handling.

        Returns:
            ``(sample, input_ids, labels)`` for every kept sample, in input order.
        """
        return [(s, seq, labels) for s, seq, labels, _ in self._encode(samples)[0]]

    def _tokenize(self, samples: Sequence[VQASample]) -> tuple[list[_Tokenized], dict[str, Any] | None]:
        """Full and prompt-only token rows of each sample, and the image outputs of the full batch."""
        fam = _collate_family(self.processor, self.family)
        full = _render_all(self.processor, samples, prompt=self.prompt, with_answer=True, family=fam)
        prompts = _render_all(self.processor, samples, prompt=self.prompt, with_answer=False, family=fam)
        images = _image_args(fam, samples)
        out = _process(self.processor, fam, full, images)
        # the prompts need their images only where the image decides how many image tokens it gets
        prompt_images = None if fam.expands_images_from_text else images
        prefixes = _process(self.processor, fam, prompts, prompt_images)["rows"]["input_ids"]
        rows = out["rows"]
        tokenized = [
            _Tokenized(
                rows["input_ids"][i],
                prefixes[i],
                {k: v[i] for k, v in rows.items() if k != "input_ids"},
            )
            for i in range(len(samples))
        ]
        return tokenized, out["images"]

    def _encode(
        self, samples: Sequence[VQASample]
    ) -> tuple[list[tuple[VQASample, list[int], list[int], dict[str, list[int]]]], dict[str, Any] | None]:
        fam = _collate_family(self.processor, self.family)
        tok = self.processor.tokenizer
        masked = _token_ids(tok, fam.image_tokens)  # padding is added later, and labelled by position
        eou_id = int(tok.convert_tokens_to_ids(fam.end_of_turn))
        end_name = fam.end_of_turn
        tokenized, images = self._tokenize(samples)
        out: list[tuple[VQASample, list[int], list[int], dict[str, list[int]]]] = []
        for sample, item in zip(samples, tokenized, strict=True):
            seq, prefix, extra = item.ids, item.prefix, item.extra
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
                    f"sample {sample.id!r}: no {end_name} after the answer in the rendered chat"
                ) from None
            labels = [IGNORE_INDEX if t in masked else t for t in seq]
            if labels:
                labels[0] = IGNORE_INDEX
            if self.mode == "answer":
                labels = [lab if start <= j < end else IGNORE_INDEX for j, lab in enumerate(labels)]
            if self.max_length is not None and len(seq) > self.max_length:
                cut = self.max_length
                last_image = max((j for j, t in enumerate(seq) if t in masked), default=-1)
                reason = None
                if last_image >= cut:
                    reason = f"would cut into its image tokens (the last one is at position {last_image})"
                elif start >= cut:
                    reason = f"would remove the whole answer (the answer starts at token {start})"
                if reason is not None:
                    if self.on_overflow == "drop":
                        self.dropped.append(sample.id)
                        images = None  # the batch's image outputs must be computed again
                        continue
                    raise MedVQAError(
                        f"sample {sample.id!r}: max_length={self.max_length} {reason}; the sample has "
                        f"{len(seq)} tokens. Raise max_length or pass on_overflow='drop' to skip such samples"
                    )
                seq, labels = seq[:cut], labels[:cut]
                extra = {k: v[:cut] for k, v in extra.items()}
                self.truncated.append(sample.id)
            out.append((sample, seq, labels, extra))
        return out, images

    def __call__(self, samples: Sequence[VQASample]) -> dict[str, Any]:
        """Collate a batch (see the class docstring for the output keys)."""
        import torch

        if not samples:
            raise ValueError("cannot collate an empty batch")
        pad_id = _pad_id(self.processor)
        encoded, images = self._encode(samples)
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
        kept = [e[0] for e in encoded]
        fam = _collate_family(self.processor, self.family)
        for key in encoded[0][3]:
            batch[key] = _pad([e[3][key] for e in encoded], 0, left=False, multiple=self.pad_to_multiple_of)
        if images is None:
            texts = _render_all(self.processor, kept, prompt=self.prompt, with_answer=True, family=fam)
            images = _process(self.processor, fam, texts, _image_args(fam, kept))["images"]
        batch.update(images)
        return batch


@dataclass(frozen=True)
class _Tokenized:
    ids: list[int]
    prefix: list[int]
    extra: dict[str, list[int]]


@dataclass
class GenerationCollator:
    """Collate samples into a generation batch: prompt up to ``Assistant:``, left padding, no labels.

    Output keys: ``input_ids`` and ``attention_mask`` ``(batch, length)`` (left-padded, so
    every prompt ends at the last position), plus ``pixel_values`` and
    ``pixel_attention_mask`` when some sample has an image. Rows follow the input order.

    Families other than Idefics2 also get their extra processor outputs (per-token ones
    left-padded with 0).

    Attributes:
        processor: The processor of a supported family (injected).
        prompt: Prompt template or built-in name; ``None``: per-sample default.
        family: The model family (default: told by the processor).
    """

    processor: Any
    prompt: PromptTemplate | str | None = None
    family: str | None = None

    def __post_init__(self) -> None:
        if self.prompt is not None:
            self.prompt = get_prompt(self.prompt)
        if self.family is not None:
            _family(self.processor, self.family)  # an unknown family is refused here

    def texts(self, samples: Sequence[VQASample]) -> list[str]:
        """The rendered prompts (with ``<image>`` placeholders) of the samples."""
        fam = _collate_family(self.processor, self.family)
        return _render_all(self.processor, samples, prompt=self.prompt, with_answer=False, family=fam)

    def __call__(self, samples: Sequence[VQASample]) -> dict[str, Any]:
        """Collate a batch (see the class docstring for the output keys)."""
        import torch

        if not samples:
            raise ValueError("cannot collate an empty batch")
        fam = _collate_family(self.processor, self.family)
        pad_id = _pad_id(self.processor)
        out = _process(self.processor, fam, self.texts(samples), _image_args(fam, samples))
        rows = out["rows"].pop("input_ids")
        extra, images = out["rows"], out["images"]
        input_ids = _pad(rows, pad_id, left=True, multiple=None)
        attention_mask = torch.zeros_like(input_ids)
        width = input_ids.shape[1]
        for i, row in enumerate(rows):
            attention_mask[i, width - len(row) :] = 1
        batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        for key, values in extra.items():
            batch[key] = _pad(values, 0, left=True, multiple=None)
        batch.update(images)
        return batch
