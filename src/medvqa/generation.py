"""Batched, deterministic, resumable answer generation with Idefics2.

:func:`generate_answers` decodes greedily, stops on ``</s>`` and ``<end_of_utterance>``,
decodes only the new tokens (special tokens skipped), and streams every finished item to a
JSON Lines file of :meth:`~medvqa.records.Prediction.to_dict` rows, the format
``medvqa score`` reads. A run that is interrupted and started again with the same output
file skips the items already written and loses none.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medvqa._dataloading import default_num_workers, generation_batches, restore_input_order
from medvqa._distributed import Shard, generate_sharded, launch_shard, merge_parts, parts_dir
from medvqa._errors import MedVQAError
from medvqa._io import JsonlWriter, recover_jsonl
from medvqa.answers import extract_answer
from medvqa.chat import PromptTemplate, default_prompt, get_prompt
from medvqa.collate import GenerationCollator
from medvqa.records import Prediction, VQASample

__all__ = ["PROMPT_METADATA_KEY", "Shard", "generate_answers", "merge_parts", "stop_token_ids"]

PROMPT_METADATA_KEY = "prompt"
"""Prediction metadata key holding the name of the prompt template used."""


def _extract(text: str) -> str:
    return extract_answer(text).answer


def stop_token_ids(processor: Any) -> list[int]:
    """Ids of ``</s>`` and ``<end_of_utterance>``: generation stops on either."""
    tok = processor.tokenizer
    ids = [tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_utterance>")]
    return sorted({int(i) for i in ids if i is not None and i != tok.unk_token_id})


def _prompt_name(sample: VQASample, prompt: PromptTemplate | None) -> str:
    return (prompt or default_prompt(sample)).name


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


def _load_done(
    path: Path, samples: Sequence[VQASample], prompt: PromptTemplate | None
) -> dict[str, Prediction]:
    rows, dropped_partial = recover_jsonl(path)
    by_id = {s.id: s for s in samples}
    done: dict[str, Prediction] = {}
    for line, row in enumerate(rows, start=1):
        pred = Prediction.from_dict(row, file=str(path), line=line)
        sample = by_id.get(pred.id)
        if sample is None:
            raise MedVQAError(
                f"{path}, row {line}: prediction for id {pred.id!r}, which is not among the samples "
                "of this run; use a new output file or the same samples to resume"
            )
        if pred.id in done:
            raise MedVQAError(f"{path}, row {line}: id {pred.id!r} appears twice")
        want = _prompt_name(sample, prompt)
        got = pred.metadata.get(PROMPT_METADATA_KEY)
        if got != want:
            raise MedVQAError(
                f"{path}, row {line}: id {pred.id!r} was generated with prompt {got!r}, this run uses "
                f"{want!r}; use a new output file"
            )
        done[pred.id] = pred
    if dropped_partial:
        import warnings

        warnings.warn(
            f"{path}: removed a partial last line left by an interrupted run; that item is generated again",
            stacklevel=3,
        )
    return done


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
    shard: Shard | None = None,
    num_workers: int | None = None,
    sort_by_length: bool = False,
) -> list[Prediction]:
    """Generate one answer per sample, greedily, in batches.

    Args:
        model: An Idefics2 model (base, quantized, or with a LoRA adapter). It is put in
            ``eval`` mode for the call and restored afterwards. A
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
            of some of these samples (same prompt), those are kept and not generated again.
        progress: Show a tqdm progress bar.
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
        One :class:`~medvqa.records.Prediction` per sample, in input order:
        ``prediction`` is the raw decoded text (stripped), ``extracted`` the answer
        extracted by :func:`medvqa.answers.extract_answer` (strict style), ``metadata``
        the sample's metadata plus ``prompt`` (the template name).

    Raises:
        MedVQAError: Duplicate sample ids, or an output file from another run.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise MedVQAError(f"sample id {s.id!r} appears twice; generation needs unique ids")
        seen.add(s.id)
    template = None if prompt is None else get_prompt(prompt)
    if shard is not None and shard.world_size > 1 and output is None:
        raise ValueError("a shard needs an output file: the processes exchange answers through its parts")
    if output is not None and ((shard or launch_shard()).world_size > 1 or parts_dir(output).is_dir()):
        return generate_sharded(
            generate_answers,
            samples,
            output=Path(output),
            shard=shard or launch_shard(),
            prompt=template,
            progress=progress,
            model=model,
            processor=processor,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            num_workers=num_workers,
            sort_by_length=sort_by_length,
        )
    from medvqa.server import ServerEngine

    if isinstance(model, ServerEngine):
        return model.generate_answers(
            samples, max_new_tokens=max_new_tokens, prompt=template, output=output, progress=progress
        )
    import torch
    from tqdm.auto import tqdm

    done: dict[str, Prediction] = {}
    if output is not None:
        done = _load_done(Path(output), samples, template)
    todo = [s for s in samples if s.id not in done]
    collator = GenerationCollator(processor, prompt=template)
    tok = processor.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.unk_token_id
    gen_kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "num_beams": 1,
        "eos_token_id": stop_token_ids(processor),
        "pad_token_id": pad_id,
    }
    was_training = bool(getattr(model, "training", False))
    model.eval()
    writer = JsonlWriter(output) if output is not None else None
    bar = tqdm(total=len(samples), initial=len(done), disable=not progress, desc="generate", unit="q")
    try:
        for chunk, prepared in generation_batches(
            todo,
            collator,
            batch_size=batch_size,
            num_workers=default_num_workers() if num_workers is None else num_workers,
            sort_by_length=sort_by_length,
            pin_memory=str(getattr(model, "device", "cpu")).startswith("cuda"),
        ):
            batch = _to_device(prepared, model)
            with torch.inference_mode():
                out = model.generate(**batch, **gen_kwargs)
            new_tokens = out[:, batch["input_ids"].shape[1] :]
            texts = tok.batch_decode(new_tokens, skip_special_tokens=True)
            for sample, text in zip(chunk, texts, strict=True):
                pred = _to_prediction(sample, text.strip(), template)
                if writer is not None:
                    writer.write(pred.to_dict())
                done[sample.id] = pred
            bar.update(len(chunk))
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if was_training:
            model.train()
    if output is not None:
        restore_input_order(output, samples)
    return [done[s.id] for s in samples]
