"""The ``server`` generation engine: answers from an OpenAI-compatible inference server.

vLLM, SGLang and TGI serve a model behind the chat-completions API
(``POST /v1/chat/completions``). Pass a :class:`ServerEngine` where
:func:`medvqa.generation.generate_answers` takes a model and the answers come from the
server instead of an in-process ``transformers`` model, with the same guarantees: greedy
decoding (``temperature=0``), at most ``max_new_tokens`` tokens, generation stopped at the
end of the turn (the stop tokens of the model's family, :attr:`medvqa.models.ModelFamily.stop_tokens`,
sent as stop strings), predictions streamed to the output file and resumed from it, and
sharding under ``torchrun`` (each process sends its share).

What is sent is what the ``hf`` engine uses: the messages of :func:`medvqa.chat.build_messages`
(same instruction, question and layout), which the server renders with the model's own chat
template (the template the ``hf`` engine renders them with, for every family), and every image as a lossless PNG ``data:`` URL of the very pixels the ``hf`` engine
gives the image processor (:meth:`medvqa.records.ImageRef.open`).

The engine needs only the standard library and Pillow (no torch).
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvqa._openai_client import ChatClient
from medvqa.chat import PromptTemplate, build_messages
from medvqa.models._families import get_family
from medvqa.records import Prediction, VQASample

__all__ = ["STOP_STRINGS", "ServerEngine", "image_data_url", "server_messages", "stop_strings"]

_DEFAULT_FAMILY = "idefics2"


def stop_strings(family: str | None = None) -> tuple[str, ...]:
    """The stop strings sent for a model family: its stop tokens, as the ``hf`` engine stops on them.

    Args:
        family: The model family (default: Idefics2, the reference family).

    >>> stop_strings("qwen2_vl")
    ('<|im_end|>', '<|endoftext|>')
    """
    return get_family(family or _DEFAULT_FAMILY).stop_tokens


STOP_STRINGS: tuple[str, ...] = stop_strings(_DEFAULT_FAMILY)
"""Stop strings sent for Idefics2, the default family (``<end_of_utterance>`` and ``</s>``, as the
``hf`` engine stops on them)."""


def image_data_url(image: Any) -> str:
    """A ``data:image/png;base64,...`` URL of a PIL image (PNG: lossless, so the server sees the same pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def server_messages(sample: VQASample, prompt: PromptTemplate | str | None = None) -> list[dict[str, Any]]:
    """The chat-completions messages of a sample: :func:`medvqa.chat.build_messages` with images as data URLs.

    Example:
        >>> from medvqa.records import VQASample
        >>> s = VQASample(id="t:1", question="Is it normal?", answer="yes", answer_type="closed",
        ...               answer_type_source="inferred", dataset="demo", split="test")
        >>> server_messages(s)
        [{'role': 'user', 'content': [{'type': 'text', 'text': 'Answer briefly. Is it normal?'}]}]
    """
    messages = build_messages(sample, prompt=prompt, with_answer=False)
    for message in messages:
        for i, part in enumerate(message["content"]):
            if part["type"] == "image":
                if sample.image is None:  # pragma: no cover - build_messages adds no image then
                    raise ValueError(f"sample {sample.id!r}: image item without an image")
                message["content"][i] = {
                    "type": "image_url",
                    "image_url": {"url": image_data_url(sample.image.open())},
                }
    return messages


@dataclass
class ServerEngine:
    """An OpenAI-compatible chat-completions server to generate with (the ``server`` engine).

    Attributes:
        url: The server (``http://host:8000``, ``.../v1`` or the full endpoint URL).
        model: The served model's name (vLLM: the ``--served-model-name`` or the model path).
        api_key: Sent as a bearer token when given (default: ``$MEDVQA_SERVER_API_KEY``).
        concurrency: Requests in flight at once.
        timeout_s: Timeout of one request attempt, in seconds.
        max_retries: Retries (exponential backoff) on 429, 5xx and connection errors.
        family: The served model's family (:data:`medvqa.models.FAMILIES`; default:
            Idefics2). It decides the stop strings and is recorded in the run record.
        stop: Stop strings sent with every request (default: :func:`stop_strings` of the
            family).
    """

    url: str
    model: str
    api_key: str | None = None
    concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 5
    family: str | None = None
    stop: tuple[str, ...] | None = None
    client: ChatClient = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.family is not None:
            self.family = get_family(self.family).name  # an unknown family is refused here
        key = self.api_key if self.api_key is not None else os.environ.get("MEDVQA_SERVER_API_KEY")
        self.client = ChatClient(
            self.url,
            self.model,
            api_key=key,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            max_workers=self.concurrency,
        )

    @property
    def family_name(self) -> str:
        """The served model's family name (Idefics2's when none was given)."""
        return self.family or _DEFAULT_FAMILY

    def generate_answers(
        self,
        samples: Sequence[VQASample],
        *,
        max_new_tokens: int,
        prompt: PromptTemplate | None,
        output: str | os.PathLike[str] | None,
        progress: bool,
        on_bad_image: str = "error",
        bad: list[dict[str, Any]] | None = None,
        family: str | None = None,
    ) -> list[Prediction]:
        """Answer ``samples`` (called by :func:`medvqa.generation.generate_answers`; see there).

        Requests go ``concurrency`` at a time; each finished group is streamed to ``output``.
        With ``on_bad_image="skip"`` a sample whose image cannot be decoded is not sent, and
        its entry (id, image, error) is appended to ``bad``. ``family`` (default: the
        engine's) chooses the stop strings unless :attr:`stop` is set.
        """
        from tqdm.auto import tqdm

        from medvqa._io import JsonlWriter
        from medvqa._run_record import _load_done
        from medvqa.generation import _to_prediction

        done: dict[str, Prediction] = {} if output is None else _load_done(Path(output), samples, prompt)
        todo = [s for s in samples if s.id not in done]
        stop = list(self.stop if self.stop is not None else stop_strings(family or self.family))
        writer = JsonlWriter(output) if output is not None else None
        bar = tqdm(total=len(samples), initial=len(done), disable=not progress, desc="generate", unit="q")
        try:
            for start in range(0, len(todo), self.concurrency):
                chunk, messages = self._messages(
                    todo[start : start + self.concurrency], prompt, on_bad_image, bad
                )
                replies = (
                    self.client.complete_many(
                        messages,
                        max_tokens=max_new_tokens,
                        temperature=0.0,
                        stop=stop,
                    )
                    if chunk
                    else []
                )
                for sample, reply in zip(chunk, replies, strict=True):
                    pred = _to_prediction(sample, reply.text.strip(), prompt)
                    if writer is not None:
                        writer.write(pred.to_dict())
                    done[sample.id] = pred
                bar.update(min(self.concurrency, len(todo) - start))
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        return [done[s.id] for s in samples if s.id in done]

    @staticmethod
    def _messages(
        chunk: Sequence[VQASample],
        prompt: PromptTemplate | None,
        on_bad_image: str,
        bad: list[dict[str, Any]] | None,
    ) -> tuple[list[VQASample], list[list[dict[str, Any]]]]:
        """The samples to send and their messages (unreadable images: raised, or skipped and recorded)."""
        from medvqa._errors import ImageLoadError

        kept: list[VQASample] = []
        messages: list[list[dict[str, Any]]] = []
        for sample in chunk:
            try:
                messages.append(server_messages(sample, prompt))
            except ImageLoadError as exc:
                if on_bad_image != "skip":
                    raise ImageLoadError(
                        f"{exc}; pass on_bad_image='skip' (command line: --on-bad-image skip) to skip "
                        "such samples and list them in the run record"
                    ) from exc
                if bad is not None:
                    label = sample.image.label if sample.image is not None else None
                    bad.append({"id": sample.id, "image": label, "error": str(exc)})
                continue
            kept.append(sample)
        return kept, messages
