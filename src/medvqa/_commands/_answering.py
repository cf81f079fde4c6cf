"""What ``predict`` and ``predict-and-score`` share: their options and the preparation of a generation job."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from medvqa._commands._common import load_questions, resolve_prompt, server_engine
from medvqa._commands._loading import ModelSettings, load_command_model, model_settings

__all__ = ["ANSWER_OPTIONS", "Job", "check_as_run", "load_job_model", "prepare_job"]

ANSWER_OPTIONS: tuple[str, ...] = (
    "model",
    "family",
    "adapter",
    "quantization",
    "dtype",
    "device_map",
    "as_run",
    "dropout_seed",
    "dataset",
    "data",
    "split",
    "limit",
    "prompt",
    "instruction",
    "batch_size",
    "max_new_tokens",
    "num_workers",
    "sort_by_length",
    "engine",
    "server_url",
    "server_model",
    "concurrency",
    "timeout",
    "max_retries",
    "on_bad_image",
    "seed",
    "output",
    "resume_unverified",
    "no_progress",
)
"""The options of every command that answers a dataset split."""


@dataclass
class Job:
    """A prepared generation: what to load, what to ask and how.

    Attributes:
        settings: The resolved model options.
        engine: The server engine of ``--engine server`` (``None``: the model in this process).
        prompt: The prompt template (``None``: the dataset's default).
        dataset: The loaded dataset.
        source: Where it was read from.
        samples: The questions to answer.
        batch_size: ``--batch-size``, or its default (8; 1 with ``--as-run``).
        dropout_seed: ``--dropout-seed``, or ``--seed``.
    """

    settings: ModelSettings
    engine: Any
    prompt: Any
    dataset: Any
    source: Any
    samples: list[Any]
    batch_size: int
    dropout_seed: int


def check_as_run(args: argparse.Namespace, batch_size: int) -> None:
    """Refuse what ``--as-run`` cannot reproduce: batches, shards, reordering, a server.

    Raises:
        ValueError: One of them, named.
    """
    from medvqa._distributed import launch_shard

    if batch_size != 1:
        raise ValueError(
            f"--as-run answers one question at a time, as the paper did; got --batch-size {batch_size}"
        )
    if launch_shard().world_size > 1:
        raise ValueError(
            "--as-run runs in one process: its dropout draws depend on every question answered before, "
            "which a shard of a torchrun/accelerate launch does not see"
        )
    if args.sort_by_length:
        raise ValueError("--as-run answers the questions in input order (the dropout draws depend on it)")
    if args.engine != "hf":
        raise ValueError("--as-run keeps the model's LoRA dropout active in this process; use --engine hf")


def prepare_job(args: argparse.Namespace) -> Job:
    """Check the options, resolve the model settings and load the questions (not the model yet)."""
    batch_size = args.batch_size if args.batch_size is not None else (1 if args.as_run else 8)
    if args.as_run:
        check_as_run(args, batch_size)
    engine = server_engine(args)
    settings = model_settings(args)
    prompt = resolve_prompt(args.prompt, args.instruction)
    dataset, source, samples = load_questions(args.dataset, args.data, args.split, args.limit)
    seed = args.dropout_seed if args.dropout_seed is not None else args.seed
    return Job(settings, engine, prompt, dataset, source, samples, batch_size, seed)


def load_job_model(job: Job) -> tuple[Any, Any]:
    """``(model, processor)`` of the job; the server engine stands in for the model."""
    if job.engine is not None:
        return job.engine, None
    return load_command_model(job.settings)
