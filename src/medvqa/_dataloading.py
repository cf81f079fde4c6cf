"""Overlapped data preparation for generation, and the data-loader worker default.

:func:`generation_batches` runs the generation collator (chat rendering, tokenizing, image
decoding and preprocessing) in a ``torch.utils.data.DataLoader``, so that with workers the
next batches are prepared while the model generates. Batches may be formed from the
samples sorted by prompt length, which cuts padding; :func:`restore_input_order` then puts
the streamed prediction file back in input order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from medvqa._io import atomic_write_bytes
from medvqa.records import VQASample

__all__ = ["default_num_workers", "generation_batches", "restore_input_order"]

_MAX_AUTO_WORKERS = 4


def default_num_workers() -> int:
    """Data-loader workers when none are asked for: 0 on a CPU, up to 4 per process on CUDA.

    On a CPU the workers would compete with the model for the same cores; on a GPU they
    decode and preprocess images while the GPU computes. The CPUs are shared among the
    processes of a launch (``LOCAL_WORLD_SIZE``), one core is left to each main process.
    """
    import torch

    if not torch.cuda.is_available():
        return 0
    per_process = (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(_MAX_AUTO_WORKERS, per_process - 1))


class _Batches:
    """A map-style dataset whose item ``i`` is batch ``i`` prepared by ``prepare``."""

    def __init__(
        self, chunks: Sequence[Sequence[VQASample]], prepare: Callable[[list[VQASample]], Any]
    ) -> None:
        self.chunks = chunks
        self.prepare = prepare

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index: int) -> Any:
        return self.prepare(list(self.chunks[index]))


def _identity(batch: Any) -> Any:
    return batch


def prompt_lengths(samples: Sequence[VQASample], collator: Any) -> list[int]:
    """Token length of every sample's generation prompt.

    Idefics2's processor expands each image placeholder from the text alone, so its lengths
    include the image tokens. The other families' processors need the image itself for that
    (Qwen2-VL's count depends on its size); their prompts are measured without the images
    (each placeholder counted as written), which orders them by their text at no image cost.
    """
    from medvqa.collate import _collate_family

    texts = collator.texts(samples)
    if _collate_family(collator.processor, getattr(collator, "family", None)).expands_images_from_text:
        rows = collator.processor(text=texts)["input_ids"]
    else:
        rows = collator.processor.tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [len(r) for r in rows]


def generation_batches(
    samples: Sequence[VQASample],
    collator: Any,
    *,
    batch_size: int,
    num_workers: int = 0,
    sort_by_length: bool = False,
    pin_memory: bool = False,
    prepare: Callable[[list[VQASample]], Any] | None = None,
) -> Iterator[tuple[list[VQASample], Any]]:
    """Yield ``(samples of the batch, prepared batch)``, the batches prepared by a DataLoader.

    Args:
        samples: What to answer.
        collator: A :class:`medvqa.collate.GenerationCollator`.
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes (0: prepare in this process, in turn with
            generation).
        sort_by_length: Form the batches from the samples sorted by prompt length, longest
            first (stable), so that a batch holds prompts of similar length.
        pin_memory: Pin the batches' memory (faster copies to a CUDA device).
        prepare: What a batch's samples become (``None``: ``collator(samples)``). It runs in
            the workers, so it must be picklable, and it must report through its return value
            anything it learns (e.g. samples it skipped): a worker's side effects stay there.
    """
    from torch.utils.data import DataLoader

    order = list(samples)
    if sort_by_length and len(order) > 1:
        lengths = prompt_lengths(order, collator)
        order = [s for _, s in sorted(zip(lengths, order, strict=True), key=lambda p: -p[0])]
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if not chunks:
        return
    dataset: Any = _Batches(chunks, collator if prepare is None else prepare)
    loader: Any = DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_identity,
        pin_memory=pin_memory,
    )
    yield from zip(chunks, loader, strict=True)


def restore_input_order(path: str | os.PathLike[str], samples: Sequence[VQASample]) -> None:
    """Rewrite a prediction file in the samples' order when it is not (atomically; same lines).

    Lines whose id is not among the samples keep their place after the known ones.
    """
    p = Path(path)
    if not p.is_file():
        return
    raw = p.read_bytes()
    lines = [line + b"\n" for line in raw.split(b"\n") if line.strip()]
    rank = {s.id: i for i, s in enumerate(samples)}
    keys = [rank.get(str(json.loads(line).get("id")), len(rank)) for line in lines]
    if keys == sorted(keys):
        return
    ordered = [line for _, line in sorted(zip(keys, lines, strict=True), key=lambda p: p[0])]
    atomic_write_bytes(p, b"".join(ordered))
