"""Batched, deterministic, resumable answer generation, for every supported model family.

:func:`generate_answers` decodes greedily, stops on the family's end tokens (Idefics2:
``</s>`` and ``<end_of_utterance>``; see :attr:`medvqa.models.ModelFamily.stop_tokens`),
decodes only the new tokens (special tokens skipped), and streams every finished item to a
JSON Lines file of :meth:`~medvqa.records.Prediction.to_dict` rows, the format
``medvqa score`` reads. A run that is interrupted and started again with the same output
file skips the items already written and loses none.

Every output file gets a run record beside it, ``OUTPUT.run.json`` (the output's suffix
replaced), holding the settings the caller passed as ``run`` plus the decoding settings and
the model family (``family``).
Resuming a file with other settings is refused; resuming a file without a record is
refused unless ``resume_unverified=True``, and then the record lists the rows it carried
over (``unverified_rows``) instead of claiming them. While it writes, the run holds the
file's lock (:mod:`medvqa._lock`), so a second run on the same file is refused.

Under a multi-process launch (``torchrun``, ``accelerate launch``) every process answers a
shard into its own part file and rank 0 merges them (see :mod:`medvqa._distributed`); the
run record is then checked by every process and written by rank 0, and rank 0 holds the
output's lock for the whole job.

An image that cannot be decoded stops the run with an error naming the sample and the
file; with ``on_bad_image="skip"`` the sample is left out of the file (so that no scorer
counts it as an answer) and listed with its error under ``bad_images`` in the run record.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medvqa._dataloading import default_num_workers, generation_batches, restore_input_order
from medvqa._distributed import Shard, generate_sharded, launch_shard, merge_parts, parts_dir
from medvqa._errors import ImageLoadError, MedVQAError
from medvqa._io import JsonlWriter, atomic_write_json
from medvqa._lock import RunLock
from medvqa._run_record import (
    PROMPT_METADATA_KEY,
    _load_done,
    _new_record,
    _prompt_name,
    check_run_record,
    run_record_path,
)
from medvqa.answers import extract_answer
from medvqa.chat import PromptTemplate, get_prompt
from medvqa.collate import GenerationCollator
from medvqa.records import Prediction, VQASample

__all__ = [
    "PROMPT_METADATA_KEY",
    "BadImagePolicy",
    "Shard",
    "check_run_record",
    "generate_answers",
    "merge_parts",
    "run_record_path",
    "stop_token_ids",
]

BadImagePolicy = Literal["error", "skip"]
"""What to do with a sample whose image cannot be decoded: stop with an error, or skip it (and record it)."""


def _extract(text: str) -> str:
    return extract_answer(text).answer


def stop_token_ids(processor: Any, family: str | None = None) -> list[int]:
    """Ids of the tokens generation stops on: the tokenizer's EOS and the family's stop tokens.

    For Idefics2 these are ``</s>`` and ``<end_of_utterance>``.

    Args:
        processor: The processor.
        family: The model family (default: told by the processor, else Idefics2's).
    """
    from medvqa.collate import _family

    fam = _family(processor, family)
    names = fam.stop_tokens if fam is not None else ("<end_of_utterance>",)
    tok = processor.tokenizer
    ids = [tok.eos_token_id, *(tok.convert_tokens_to_ids(n) for n in names)]
    return sorted({int(i) for i in ids if i is not None and i != tok.unk_token_id})


def _to_prediction(sample: VQASample, raw: str, prompt: PromptTemplate | None) -> Prediction:
    """The prediction row of one answered sample (``raw``: the stripped generated text)."""
    image = None
    if sample.image is not None:
        image = sample.image.path or sample.image.name
    return Prediction(
        id=sample.id,
        question=sample.question,
        reference=sample.answer,
        prediction=raw,
        answer_type=sample.answer_type,
        extracted=_extract(raw),
        dataset=sample.dataset,
        split=sample.split,
        image=image,
        metadata={
            **sample.metadata,
            "answer_type_source": sample.answer_type_source,
            PROMPT_METADATA_KEY: _prompt_name(sample, prompt),
        },
    )


def _to_device(batch: dict[str, Any], model: Any) -> dict[str, Any]:
    device = getattr(model, "device", None)
    dtype = getattr(model, "dtype", None)
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if device is not None:
            value = value.to(device)
        if key == "pixel_values" and dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        out[key] = value
    return out


def _readable(chunk: Sequence[VQASample], bad: list[dict[str, Any]]) -> list[int]:
    """Indices of the samples of ``chunk`` whose image decodes; the others are appended to ``bad``."""
    keep = []
    for i, sample in enumerate(chunk):
        try:
            if sample.image is not None:
                sample.image.open()
        except ImageLoadError as exc:
            assert sample.image is not None
            bad.append({"id": sample.id, "image": sample.image.label, "error": str(exc)})
            continue
        keep.append(i)
    return keep


def _prepare(
    collator: GenerationCollator, on_bad_image: str, chunk: Sequence[VQASample]
) -> tuple[list[int], dict[str, Any] | None, list[dict[str, Any]]]:
    """Collate a chunk: ``(indices of the samples kept, batch or None, bad-image entries)``.

    Runs in the DataLoader (in a worker process when there are workers), so everything it
    learns travels back in the returned value. With ``skip``, samples whose image cannot be
    decoded are left out and described in the entries; with ``error`` the error is raised
    (and re-raised by the DataLoader in the main process).
    """
    try:
        return list(range(len(chunk))), collator(chunk), []
    except ImageLoadError as exc:
        if on_bad_image != "skip":
            raise ImageLoadError(
                f"{exc}; pass on_bad_image='skip' (command line: --on-bad-image skip) to skip such "
                "samples and list them in the run record"
            ) from exc
    bad: list[dict[str, Any]] = []
    keep = _readable(chunk, bad)
    return keep, (collator([chunk[i] for i in keep]) if keep else None), bad


# Over 60 lines: half of it is the docstring of every option of the public API.
def generate_answers(
    model: Any,
    processor: Any,
    samples: Sequence[VQASample],
    *,
    batch_size: int = 8,
    max_new_tokens: int = 20,
    prompt: PromptTemplate | str | None = None,
    output: str | os.PathLike[str] | None = None,
    progress: bool = True,
    family: str | None = None,
    run: Mapping[str, Any] | None = None,
    resume_unverified: bool = False,
    on_bad_image: BadImagePolicy = "error",
    shard: Shard | None = None,
    num_workers: int | None = None,
    sort_by_length: bool = False,
) -> list[Prediction]:
    """Generate one answer per sample, greedily, in batches.

    Args:
        model: A model of a supported family (base, quantized, or with a LoRA adapter). It is
            put in ``eval`` mode for the call and restored afterwards. A
            :class:`medvqa.server.ServerEngine` instead sends the same prompts and images to
            an OpenAI-compatible inference server (vLLM, SGLang, TGI); ``batch_size``,
            ``num_workers`` and ``sort_by_length`` then do not apply (the engine's
            ``concurrency`` does).
        processor: Its processor.
        samples: The questions; ids must be unique.
        batch_size: Samples per ``generate`` call (left-padded).
        max_new_tokens: Longest answer in tokens (paper: 20; 50 for nonsense questions).
        prompt: Prompt template or built-in name; ``None``: the per-sample default.
        output: JSON Lines file to stream predictions to. If it already holds predictions
            of some of these samples (same prompt, same run record), those are kept and not
            generated again. The run record goes to :func:`run_record_path` and the file is
            locked while the call runs.
        progress: Show a tqdm progress bar.
        family: The model family (default: told by the processor; for a
            :class:`~medvqa.server.ServerEngine`, the engine's). It decides the chat rendering
            and the stop tokens, and is recorded in the run record as ``family``.
        run: Settings to record beside ``output`` (model, adapter, dataset, ...; JSON
            values). Resuming with different values is refused, except for counts and
            speed settings (``n``, ``limit``, ``batch_size``, ...).
        resume_unverified: Resume an ``output`` that has no run record. Its rows are kept
            and listed in the new record as ``unverified_rows``: nothing claims they were
            made with this run's settings.
        on_bad_image: ``error`` (default): an image that cannot be decoded stops the call
            with an error naming the sample and the file. ``skip``: such samples are left
            out of the result and of ``output``, listed under ``bad_images`` in the run
            record (those of every process, under a multi-process launch), and counted in
            a warning.
        shard: This process's share of the job (see :mod:`medvqa._distributed`). ``None``:
            the launch's own (``RANK``/``WORLD_SIZE`` of ``torchrun`` or ``accelerate launch``),
            one process otherwise. With several processes and an ``output`` file, each
            process answers its shard into ``OUTPUT.parts/`` and rank 0 merges the parts into
            ``output`` in input order; every process then returns all predictions.
        num_workers: DataLoader workers that render, tokenize and decode images while the
            model generates (``None``: 0 on a CPU, up to 4 on CUDA; see
            :func:`medvqa._dataloading.default_num_workers`).
        sort_by_length: Batch the samples by prompt length (less padding). Answers are the
            same; results are still returned, and the output file left, in input order.

    Returns:
        One :class:`~medvqa.records.Prediction` per sample (skipped samples excepted), in
        input order: ``prediction`` is the raw decoded text (stripped), ``extracted`` the
        answer extracted by :func:`medvqa.answers.extract_answer` (strict style),
        ``metadata`` the sample's metadata plus ``prompt`` (the template name).

    Raises:
        MedVQAError: Duplicate sample ids, an output file from another run (or without a
            run record), or another run writing ``output``.
        ImageLoadError: An image cannot be decoded (``on_bad_image="error"``).
    """
    _check_request(samples, batch_size=batch_size, max_new_tokens=max_new_tokens, on_bad_image=on_bad_image)
    template = None if prompt is None else get_prompt(prompt)
    if shard is not None and shard.world_size > 1 and output is None:
        raise ValueError("a shard needs an output file: the processes exchange answers through its parts")
    fam = _family_name(model, processor, family)
    opts: dict[str, Any] = {
        "family": fam,
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        "on_bad_image": on_bad_image,
        "num_workers": num_workers,
        "sort_by_length": sort_by_length,
    }
    if output is None:
        return _generate(model, processor, samples, template, None, progress=progress, **opts)
    out = Path(output)
    settings = {"max_new_tokens": max_new_tokens, "decoding": "greedy", "batch_size": batch_size}
    settings.update(n=len(samples), on_bad_image=on_bad_image)
    if fam is not None:  # the family the answers were made with, whatever the caller recorded
        run = {**(run or {}), "family": fam}

    def record(answered: Mapping[str, Any]) -> dict[str, Any]:
        return _new_record(out, run, template, settings, answered, resume_unverified)

    launch = shard or launch_shard()
    if launch.world_size > 1 or parts_dir(out).is_dir():
        job = _PartAnswering(model, processor, template, progress, opts)
        return generate_sharded(
            functools.partial(job.answer_part, launch),
            samples,
            output=out,
            shard=launch,
            prompt=template,
            record=record,
        )
    with RunLock(out, folder=False, what="prediction file"):
        done = _load_done(out, samples, template)
        rec = record(done)
        atomic_write_json(run_record_path(out), rec)
        bad: list[dict[str, Any]] = []
        preds = _generate(model, processor, samples, template, (out, done, bad), progress=progress, **opts)
        if bad:
            rec.update(skipped_bad_images=len(bad), bad_images=bad)
            atomic_write_json(run_record_path(out), rec)
        return preds


def _check_request(
    samples: Sequence[VQASample], *, batch_size: int, max_new_tokens: int, on_bad_image: str
) -> None:
    """Refuse sizes below 1, an unknown bad-image policy and duplicate sample ids."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if on_bad_image not in ("error", "skip"):
        raise ValueError(f"on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise MedVQAError(f"sample id {s.id!r} appears twice; generation needs unique ids")
        seen.add(s.id)


@dataclass(frozen=True)
class _PartAnswering:
    """How one process of a sharded :func:`generate_answers` answers into its part file."""

    model: Any
    processor: Any
    template: PromptTemplate | None
    progress: bool
    opts: Mapping[str, Any]

    def answer_part(self, launch: Shard, job: list[VQASample], part: Path, bad: list[dict[str, Any]]) -> None:
        """Answer ``job`` into this rank's ``part`` file (see :func:`medvqa._distributed.generate_sharded`)."""
        # a part file is written by its rank only; its lock keeps it so across launches
        with RunLock(part, folder=False, what="part file"):
            done = _load_done(part, job, self.template)
            show = self.progress and launch.rank == 0
            _generate(
                self.model, self.processor, job, self.template, (part, done, bad), progress=show, **self.opts
            )


def _family_name(model: Any, processor: Any, family: str | None) -> str | None:
    """The family the answers are made with (``None``: a processor of no family medvqa knows)."""
    from medvqa.collate import _family
    from medvqa.server import ServerEngine

    if family is None and isinstance(model, ServerEngine):
        return model.family_name
    fam = _family(processor, family)
    return None if fam is None else fam.name


def _job_output(output: Path) -> Path:
    """The job's output file of a part file (``OUT.jsonl.parts/part-00001.jsonl`` -> ``OUT.jsonl``)."""
    folder = output.parent
    if folder.name.endswith(".parts"):
        return folder.with_name(folder.name[: -len(".parts")])
    return output


def _generate(
    model: Any,
    processor: Any,
    samples: Sequence[VQASample],
    template: PromptTemplate | None,
    stream: tuple[Path, dict[str, Prediction], list[dict[str, Any]]] | None,
    *,
    family: str | None,
    batch_size: int,
    max_new_tokens: int,
    progress: bool,
    on_bad_image: str,
    num_workers: int | None,
    sort_by_length: bool,
) -> list[Prediction]:
    """The batch loop: answer what ``stream``'s ``done`` lacks, streaming rows to its file."""
    from medvqa.server import ServerEngine

    output, done, bad = stream if stream is not None else (None, {}, [])
    todo = [s for s in samples if s.id not in done]
    if isinstance(model, ServerEngine):
        done.update(
            (p.id, p)
            for p in model.generate_answers(
                samples,  # it reads back what ``output`` holds and sends only the rest
                max_new_tokens=max_new_tokens,
                prompt=template,
                output=output,
                progress=progress,
                on_bad_image=on_bad_image,
                bad=bad,
                family=family,
            )
        )
    else:
        _generate_hf(
            model,
            processor,
            todo,
            template,
            output,
            done,
            bad,
            progress=progress,
            total=len(samples),
            family=family,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            on_bad_image=on_bad_image,
            num_workers=num_workers,
            sort_by_length=sort_by_length,
        )
    if output is not None:
        restore_input_order(output, samples)
    if bad:
        _warn_skipped(bad, output)
    return [done[s.id] for s in samples if s.id in done]


def _warn_skipped(bad: Sequence[Mapping[str, Any]], output: Path | None) -> None:
    """Warn about the samples skipped for an image that cannot be decoded (at the caller of the API)."""
    ids = ", ".join(repr(b["id"]) for b in bad[:5]) + (", ..." if len(bad) > 5 else "")
    where = "" if output is None else f"; listed in {run_record_path(_job_output(output))}"
    warnings.warn(f"skipped {len(bad)} samples whose image cannot be decoded ({ids}){where}", stacklevel=4)


def _greedy_kwargs(processor: Any, family: str | None, max_new_tokens: int) -> dict[str, Any]:
    """The ``generate`` arguments of greedy decoding that stops on the family's stop tokens."""
    tok = processor.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.unk_token_id
    return {
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "num_beams": 1,
        "eos_token_id": stop_token_ids(processor, family),
        "pad_token_id": pad_id,
    }


def _answer_batch(model: Any, tok: Any, collated: dict[str, Any], gen_kwargs: Mapping[str, Any]) -> list[str]:
    """The decoded new tokens of each row of a collated batch."""
    import torch

    batch = _to_device(collated, model)
    with torch.inference_mode():
        out = model.generate(**batch, **gen_kwargs)
    new_tokens = out[:, batch["input_ids"].shape[1] :]
    texts: list[str] = tok.batch_decode(new_tokens, skip_special_tokens=True)
    return texts


def _generate_hf(
    model: Any,
    processor: Any,
    todo: Sequence[VQASample],
    template: PromptTemplate | None,
    output: Path | None,
    done: dict[str, Prediction],
    bad: list[dict[str, Any]],
    *,
    progress: bool,
    total: int,
    family: str | None,
    batch_size: int,
    max_new_tokens: int,
    on_bad_image: str,
    num_workers: int | None,
    sort_by_length: bool,
) -> None:
    """Answer ``todo`` with a transformers model, batches prepared by a DataLoader."""
    from tqdm.auto import tqdm

    collator = GenerationCollator(processor, prompt=template, family=family)
    tok = processor.tokenizer
    gen_kwargs = _greedy_kwargs(processor, family, max_new_tokens)
    was_training = bool(getattr(model, "training", False))
    model.eval()
    writer = JsonlWriter(output) if output is not None else None
    bar = tqdm(total=total, initial=total - len(todo), disable=not progress, desc="generate", unit="q")
    try:
        for chunk, (keep, collated, skipped) in generation_batches(
            todo,
            collator,
            batch_size=batch_size,
            num_workers=default_num_workers() if num_workers is None else num_workers,
            sort_by_length=sort_by_length,
            pin_memory=str(getattr(model, "device", "cpu")).startswith("cuda"),
            prepare=functools.partial(_prepare, collator, on_bad_image),
        ):
            bad.extend(skipped)
            if collated is not None:
                texts = _answer_batch(model, tok, collated, gen_kwargs)
                for i, text in zip(keep, texts, strict=True):
                    pred = _to_prediction(chunk[i], text.strip(), template)
                    if writer is not None:
                        writer.write(pred.to_dict())
                    done[pred.id] = pred
            bar.update(len(chunk))
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if was_training:
            model.train()
