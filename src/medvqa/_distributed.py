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

One writer per file: rank 0 holds the output's lock (:mod:`medvqa._lock`) from before the
parts are read until every process has read the merged file, so no other run can touch
the output, its parts or its run record meanwhile; each rank also holds the lock of its own
part file while it appends to it. The run record (``OUTPUT.run.json``) is checked by every
process before any part grows, and written by rank 0 only. Samples skipped for an
unreadable image are listed by each rank in ``OUTPUT.parts/part-<rank>.bad.json``; rank 0
gathers every rank's list into the run record when it merges. A failure of the lock or of
the record check on any rank is raised on every rank, so no process waits at a barrier for
one that has given up.

Shards given by hand (``Shard(rank, n)`` without a process group) are independent runs:
each checks the record, writes it when it is rank 0 or no record exists yet, answers its
shard under its part's lock, and the process that finds every sample answered merges,
holding the output's lock for the merge.

The process group is created here when the launcher has not done it yet: ``gloo`` on a
CPU, ``nccl`` on CUDA. This module imports torch only when a launch needs it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from medvqa._errors import MedVQAError
from medvqa._io import atomic_write_bytes, atomic_write_json, read_json
from medvqa._lock import LockHeldError, RunLock
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
_BAD_SUFFIX = ".bad.json"
_MERGE_LOCK_WAIT_S = 60.0
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
    from medvqa._run_record import resumed_prediction

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
            pred = resumed_prediction(row, by_id, prompt, file=path, line=number)
            old = lines.get(pred.id)
            if old is not None and json.loads(old) != row:
                raise MedVQAError(f"{path}, row {number}: id {pred.id!r} was answered twice, differently")
            lines.setdefault(pred.id, line)
            if path != output:
                owned.setdefault(int(path.stem[len(_PART_PREFIX) :]), set()).add(pred.id)
    return lines, owned


def _bad_file(output: Path, rank: int) -> Path:
    return parts_dir(output) / f"{_PART_PREFIX}{rank:05d}{_BAD_SUFFIX}"


def _load_bad(output: Path) -> list[dict[str, Any]]:
    """Every rank's skipped samples (unreadable images), from the parts folder."""
    entries: list[dict[str, Any]] = []
    folder = parts_dir(output)
    for path in sorted(folder.glob(f"{_PART_PREFIX}*{_BAD_SUFFIX}")) if folder.is_dir() else []:
        data = read_json(path)
        if not isinstance(data, list):
            raise MedVQAError(f"{path}: expected a JSON list of skipped samples")
        entries += [e for e in data if isinstance(e, dict) and "id" in e]
    return entries


def _save_bad(output: Path, rank: int, bad: Sequence[Mapping[str, Any]]) -> None:
    """Add this rank's skipped samples to its list (a resumed rank keeps the earlier ones)."""
    path = _bad_file(output, rank)
    old = read_json(path) if path.is_file() else []
    by_id = {str(e["id"]): dict(e) for e in [*old, *bad]}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, list(by_id.values()))


def merge_parts(
    output: str | os.PathLike[str],
    samples: Sequence[VQASample],
    *,
    prompt: Any = None,
    skipped: Collection[str] = (),
) -> list[Prediction] | None:
    """Write ``output`` from itself and its part files, in input order, once every sample is answered.

    The merged file holds the parts' own lines, so it is byte for byte what one process
    writing the whole job would have written. The parts are removed afterwards.

    Args:
        output: The prediction file of the job.
        samples: The job's samples, in input order.
        prompt: The job's prompt template (``None``: per-sample default); checked per row.
        skipped: Ids that may stay unanswered (skipped for an unreadable image); the ids the
            processes listed as skipped in the parts folder are added to them.

    Returns:
        The predictions in input order (skipped samples excepted), or ``None`` (nothing
        written) when some other sample has no answer yet.
    """
    from medvqa.chat import get_prompt

    out = Path(output)
    template = None if prompt is None else get_prompt(prompt)
    lines, _ = _read_answered(out, samples, template)
    allowed = set(skipped) | {str(e["id"]) for e in _load_bad(out)}
    if any(s.id not in lines and s.id not in allowed for s in samples):
        return None
    kept = [s for s in samples if s.id in lines]
    atomic_write_bytes(out, b"".join(lines[s.id] for s in kept))
    shutil.rmtree(parts_dir(out), ignore_errors=True)
    return [Prediction.from_dict(json.loads(lines[s.id])) for s in kept]


def _agree(error: BaseException | None, grouped: bool) -> None:
    """Raise on every rank when any rank failed, so that no rank waits at a barrier for a failed one."""
    failed: list[str] = []
    if grouped:
        import torch.distributed as dist

        messages: list[Any] = [None] * dist.get_world_size()
        mine = None if error is None else f"rank {dist.get_rank()}: {error}"
        dist.all_gather_object(messages, mine)
        failed = [m for m in messages if m is not None]
    if error is not None:
        raise error
    if failed:
        raise MedVQAError(f"another process of the launch stopped the run ({failed[0]})")


def _old_bad(output: Path) -> list[dict[str, Any]]:
    """The skipped samples listed in the run record of an earlier attempt at ``output``."""
    from medvqa._run_record import run_record_path

    path = run_record_path(output)
    if not path.is_file():
        return []
    try:
        record = read_json(path)
    except MedVQAError:
        return []
    bad = record.get("bad_images") if isinstance(record, dict) else None
    return [e for e in bad if isinstance(e, dict) and "id" in e] if isinstance(bad, list) else []


@dataclass(frozen=True)
class _Job:
    """The whole job of a sharded run: its output, samples, prompt, run record and the
    samples an earlier attempt skipped."""

    output: Path
    samples: Sequence[VQASample]
    prompt: Any
    record: Mapping[str, Any]
    carried: Sequence[Mapping[str, Any]]

    def answered(self) -> dict[str, bytes]:
        """Every answered item of the output and its parts: id -> the line."""
        return _read_answered(self.output, self.samples, self.prompt)[0]

    def finish(self) -> list[Prediction] | None:
        """Merge the parts and write the run record with every rank's skipped samples (``None``: incomplete)."""
        from medvqa._run_record import run_record_path

        lines = self.answered()
        bad = {
            str(e["id"]): dict(e)
            for e in [*self.carried, *_load_bad(self.output)]
            if str(e["id"]) not in lines
        }
        merged = merge_parts(self.output, self.samples, prompt=self.prompt, skipped=bad)
        if merged is None:
            return None
        final = {k: v for k, v in self.record.items() if k not in ("bad_images", "skipped_bad_images")}
        if bad:
            final.update(
                skipped_bad_images=len(bad), bad_images=[bad[s.id] for s in self.samples if s.id in bad]
            )
        atomic_write_json(run_record_path(self.output), final)
        return merged

    def merge_by_hand(self) -> list[Prediction] | None:
        """Merge under the output's lock when every sample is answered (shards given by hand).

        Another process may be merging at the same moment: its lock is waited for, then the
        merge is tried again (it finds the output complete, or finds what is still missing).
        """
        deadline = time.monotonic() + _MERGE_LOCK_WAIT_S
        while True:
            try:
                with RunLock(self.output, folder=False, what="prediction file"):
                    if not parts_dir(self.output).is_dir():  # merged by another process meanwhile
                        return None
                    return self.finish()
            except LockHeldError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def shard_result(self, mine: Collection[str]) -> list[Prediction]:
        """A shard given by hand: its predictions, in input order, after merging if every sample is answered."""
        merged = self.merge_by_hand()
        if merged is not None:
            return [p for p in merged if p.id in mine]
        lines = self.answered()
        return [
            Prediction.from_dict(json.loads(lines[s.id]))
            for s in self.samples
            if s.id in mine and s.id in lines
        ]

    def merged(self, shard: Shard, grouped: bool) -> list[Prediction]:
        """A process group's result: rank 0 merges, then every rank reads the merged file."""
        from medvqa._io import read_jsonl

        error = None
        if shard.rank == 0:
            try:
                if self.finish() is None:
                    lines = self.answered()
                    missing = sum(1 for s in self.samples if s.id not in lines)
                    raise MedVQAError(
                        f"{self.output}: {missing} items have no answer after every process finished"
                    )
            except MedVQAError as exc:
                error = exc
        _agree(error, grouped)
        output = self.output
        preds = [Prediction.from_dict(row, file=str(output), line=n) for n, row in read_jsonl(output)]
        barrier()  # every rank has read the merged file before rank 0 releases the lock
        return preds


def _start(
    stack: ExitStack,
    samples: Sequence[VQASample],
    *,
    output: Path,
    shard: Shard,
    prompt: Any,
    record: Callable[[Mapping[str, Any]], dict[str, Any]],
    grouped: bool,
) -> tuple[_Job, dict[str, bytes], dict[int, set[str]]]:
    """Read what is answered and check the run record; a failure on any rank is raised on every rank.

    Rank 0 of a group takes the output's lock (on ``stack``) for the whole job (parts,
    merge and record); the other ranks hold only their own part's lock, taken in ``generate``.
    """
    error: BaseException | None = None
    try:
        if shard.rank == 0 and not (shard.world_size > 1 and not grouped):  # not shards given by hand
            stack.enter_context(RunLock(output, folder=False, what="prediction file"))
        answered, owned = _read_answered(output, samples, prompt)
        run = record(answered)  # every rank checks the record before any part grows
        carried = _old_bad(output)
    except MedVQAError as exc:
        error = exc
    _agree(error, grouped)
    return _Job(output, samples, prompt, run, carried), answered, owned


def _answer_part(
    generate: Callable[[list[VQASample], Path, list[dict[str, Any]]], object],
    work: list[VQASample],
    output: Path,
    rank: int,
) -> None:
    """Answer ``work`` into this rank's part file; list the samples it skips next to it."""
    bad: list[dict[str, Any]] = []
    if work:
        parts_dir(output).mkdir(parents=True, exist_ok=True)
        generate(work, _part_file(output, rank), bad)
    if bad:
        _save_bad(output, rank, bad)


def generate_sharded(
    generate: Callable[[list[VQASample], Path, list[dict[str, Any]]], object],
    samples: Sequence[VQASample],
    *,
    output: Path,
    shard: Shard,
    prompt: Any,
    record: Callable[[Mapping[str, Any]], dict[str, Any]],
) -> list[Prediction]:
    """Answer this process's shard into its part file and merge (see the module docstring).

    Args:
        generate: ``generate(job, part_file, bad)`` answers ``job`` into ``part_file``
            (resuming it, under its lock) and appends the samples it skips to ``bad``.
        samples: The whole job, in input order.
        output: The job's prediction file.
        shard: This process's share.
        prompt: The prompt template (``None``: per-sample default).
        record: ``record(answered)`` returns the run record of this run, checked against the
            record on disk (it raises when the run may not resume what is answered).

    Returns:
        With a process group (or one process): every prediction, in input order. Without a
        group (a shard given by hand): this shard's predictions, in input order; the merge
        is done by whichever process finds every sample answered.
    """
    from medvqa._run_record import run_record_path

    grouped = shard.world_size > 1 and (
        _group_ready() or (shard == launch_shard() and ensure_process_group())
    )
    by_hand = shard.world_size > 1 and not grouped
    with ExitStack() as stack:
        job, answered, owned = _start(
            stack, samples, output=output, shard=shard, prompt=prompt, record=record, grouped=grouped
        )
        todo = [s for s in samples if s.id not in answered]
        # with a group every rank saw the same answered set, so the round-robin over what is left
        # is consistent; a shard given by hand deals out the whole list instead
        mine = {s.id for s in shard.select(todo if grouped else samples)}
        own = owned.get(shard.rank, set())
        work = [s for s in samples if s.id in own or (s.id in mine and s.id not in answered)]
        barrier()  # every rank has read the parts and the old record before they change
        if shard.rank == 0 or (by_hand and not run_record_path(output).is_file()):
            atomic_write_json(run_record_path(output), job.record)
        barrier()  # the record is on disk before any part grows
        _answer_part(generate, work, output, shard.rank)
        barrier()
        return job.shard_result(mine) if by_hand else job.merged(shard, grouped)
