"""Data-parallel generation: each process of a launch answers a shard, the main one merges.

Under ``torchrun --nproc-per-node N`` or ``accelerate launch`` (detected from the ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` environment variables), :func:`medvqa.generation.generate_answers`
with an output file runs as follows:

1. every process reads what is already answered: the output file and every part file in
   ``OUTPUT.parts/`` (rows are keyed by item id, not by the process that wrote them);
2. the items still to answer are dealt out round-robin (item ``i`` of the remaining ones
   goes to rank ``i mod N``), so the shard of every rank is a pure function of what is done;
3. each rank streams its answers to its own part file ``OUTPUT.parts/part-<rank>.jsonl``
   (resumable like any prediction file, and never written by two processes);
4. after a barrier, rank 0 writes the output file with every answer in input order
   (atomically, the very lines the parts hold) and removes the parts; a last barrier lets
   every rank read the merged file and return all predictions.

A run killed at any point resumes with any number of processes (one included): finished
items are read back from the parts, whoever wrote them, and never generated again.

The process group is created here when the launcher has not done it yet: ``gloo`` on a
CPU, ``nccl`` on CUDA. This module imports torch only when a launch needs it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from medvqa._errors import MedVQAError
from medvqa._io import atomic_write_bytes
from medvqa.records import Prediction, VQASample

__all__ = [
    "Shard",
    "barrier",
    "default_device_map",
    "ensure_process_group",
    "is_main_process",
    "launch_shard",
    "merge_parts",
    "parts_dir",
]

_PART_PREFIX = "part-"
_GROUP_TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class Shard:
    """One process's share of a generation job.

    Attributes:
        rank: This process's index, ``0 <= rank < world_size``.
        world_size: Number of processes sharing the job.

    Example:
        >>> Shard(1, 3).select(list("abcdefg"))
        ['b', 'e']
    """

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(
                f"Shard needs 0 <= rank < world_size; got rank={self.rank}, world_size={self.world_size}"
            )

    def select(self, items: Sequence[Any]) -> list[Any]:
        """This shard's items: every ``world_size``-th one, starting at ``rank``."""
        return list(items[self.rank :: self.world_size])


def launch_shard() -> Shard:
    """The shard of this process in a ``torchrun``/``accelerate`` launch (``Shard(0, 1)`` otherwise)."""
    return Shard(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def is_main_process() -> bool:
    """Whether this is rank 0 of the launch (a plain run always is)."""
    return launch_shard().rank == 0


def default_device_map() -> dict[str, int] | None:
    """``{"": LOCAL_RANK}`` on a CUDA machine under a multi-process launch (one whole model per GPU), else ``None``."""
    if launch_shard().world_size == 1:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return {"": int(os.environ.get("LOCAL_RANK", "0"))}


def ensure_process_group() -> bool:
    """Join the launch's process group, creating it if the launcher has not (gloo on CPU, nccl on CUDA).

    Returns:
        Whether a process group exists (``False`` for a plain single-process run).
    """
    if launch_shard().world_size == 1:
        return False
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return True
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl", timeout=_GROUP_TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=_GROUP_TIMEOUT)
    import atexit

    atexit.register(_destroy_group)
    return True


def _destroy_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _group_ready() -> bool:
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    return bool(dist.is_available() and dist.is_initialized())


def barrier() -> None:
    """Wait for every process of the group (no-op without a process group)."""
    if not _group_ready():
        return
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def parts_dir(output: str | os.PathLike[str]) -> Path:
    """The folder of the per-process part files of ``output`` (``OUTPUT.parts``, beside it)."""
    out = Path(output)
    return out.with_name(out.name + ".parts")


def _part_file(output: Path, rank: int) -> Path:
    return parts_dir(output) / f"{_PART_PREFIX}{rank:05d}.jsonl"


def _complete_lines(path: Path) -> list[tuple[int, bytes]]:
    """The complete lines of a JSON Lines file, read without changing it.

    A last line without its newline that does not parse is the trace of a killed writer and
    is left out (its owner removes it when it resumes).
    """
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    out = [(n, line + b"\n") for n, line in enumerate(lines, start=1) if line.strip()]
    if tail.strip():
        try:
            json.loads(tail)
        except ValueError:
            return out
        out.append((len(lines) + 1, tail + b"\n"))
    return out


def _read_answered(
    output: Path, samples: Sequence[VQASample], prompt: Any
) -> tuple[dict[str, bytes], dict[int, set[str]]]:
    """Every answered item of ``output`` and its parts: id -> the line, and rank -> ids in its part."""
    from medvqa.generation import PROMPT_METADATA_KEY, _prompt_name

    by_id = {s.id: s for s in samples}
    lines: dict[str, bytes] = {}
    owned: dict[int, set[str]] = {}
    files = [output] if output.is_file() else []
    folder = parts_dir(output)
    if folder.is_dir():
        files += sorted(folder.glob(f"{_PART_PREFIX}*.jsonl"))
    for path in files:
        for number, line in _complete_lines(path):
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise MedVQAError(f"{path}, row {number}: malformed JSON line ({exc})") from None
            if not isinstance(row, dict):
                raise MedVQAError(f"{path}, row {number}: expected a JSON object")
            pred = Prediction.from_dict(row, file=str(path), line=number)
            sample = by_id.get(pred.id)
            if sample is None:
                raise MedVQAError(
                    f"{path}, row {number}: prediction for id {pred.id!r}, which is not among the samples "
                    "of this run; use a new output file or the same samples to resume"
                )
            want = _prompt_name(sample, prompt)
            got = pred.metadata.get(PROMPT_METADATA_KEY)
            if got != want:
                raise MedVQAError(
                    f"{path}, row {number}: id {pred.id!r} was generated with prompt {got!r}, this run "
                    f"uses {want!r}; use a new output file"
                )
            old = lines.get(pred.id)
            if old is not None and json.loads(old) != row:
                raise MedVQAError(f"{path}, row {number}: id {pred.id!r} was answered twice, differently")
            lines.setdefault(pred.id, line)
            if path != output:
                owned.setdefault(int(path.stem[len(_PART_PREFIX) :]), set()).add(pred.id)
    return lines, owned


def merge_parts(
    output: str | os.PathLike[str], samples: Sequence[VQASample], *, prompt: Any = None
) -> list[Prediction] | None:
    """Write ``output`` from itself and its part files, in input order, once every sample is answered.

    The merged file holds the parts' own lines, so it is byte for byte what one process
    writing the whole job would have written. The parts are removed afterwards.

    Args:
        output: The prediction file of the job.
        samples: The job's samples, in input order.
        prompt: The job's prompt template (``None``: per-sample default); checked per row.

    Returns:
        The predictions in input order, or ``None`` (nothing written) when some sample has
        no answer yet.
    """
    from medvqa.chat import get_prompt

    out = Path(output)
    template = None if prompt is None else get_prompt(prompt)
    lines, _ = _read_answered(out, samples, template)
    if any(s.id not in lines for s in samples):
        return None
    atomic_write_bytes(out, b"".join(lines[s.id] for s in samples))
    shutil.rmtree(parts_dir(out), ignore_errors=True)
    return [Prediction.from_dict(json.loads(lines[s.id])) for s in samples]


def generate_sharded(
    generate: Callable[..., list[Prediction]],
    samples: Sequence[VQASample],
    *,
    output: Path,
    shard: Shard,
    prompt: Any,
    progress: bool,
    **kwargs: Any,
) -> list[Prediction]:
    """Answer this process's shard into its part file and merge (see the module docstring).

    ``generate`` is :func:`medvqa.generation.generate_answers`, called for the shard with
    ``shard=Shard()`` and the part file as output; ``kwargs`` are passed on.

    Returns:
        With a process group: every prediction, in input order. Without one (a shard given
        by hand): this shard's predictions, in input order; the merge is left to
        :func:`merge_parts` unless every sample is already answered.
    """
    grouped = shard.world_size > 1 and (
        _group_ready() or (shard == launch_shard() and ensure_process_group())
    )
    answered, owned = _read_answered(output, samples, prompt)
    todo = [s for s in samples if s.id not in answered]
    # with a group every rank saw the same answered set, so the round-robin over what is left
    # is consistent; a shard given by hand deals out the whole list instead
    mine = {s.id for s in shard.select(todo if grouped else samples)}
    own = owned.get(shard.rank, set())
    job = [s for s in samples if s.id in own or (s.id in mine and s.id not in answered)]
    barrier()  # every rank has read the parts before any rank appends to one
    if job:
        parts_dir(output).mkdir(parents=True, exist_ok=True)
        generate(
            samples=job,
            output=_part_file(output, shard.rank),
            shard=Shard(),
            prompt=prompt,
            progress=progress and shard.rank == 0,
            **kwargs,
        )
    barrier()
    if not grouped and shard.world_size > 1:
        merged = merge_parts(output, samples, prompt=prompt)
        if merged is not None:
            return [p for p in merged if p.id in mine]
        lines, _ = _read_answered(output, samples, prompt)
        return [Prediction.from_dict(json.loads(lines[s.id])) for s in samples if s.id in mine]
    if shard.rank == 0:
        merged = merge_parts(output, samples, prompt=prompt)
        if merged is None:
            missing = sum(1 for s in samples if s.id not in _read_answered(output, samples, prompt)[0])
            raise MedVQAError(f"{output}: {missing} items have no answer after every process finished")
    barrier()
    from medvqa._io import read_jsonl

    return [Prediction.from_dict(row, file=str(output), line=n) for n, row in read_jsonl(output)]
