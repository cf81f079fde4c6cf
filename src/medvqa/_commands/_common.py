"""Pieces shared by the command modules: dataset names and samples, prompts, prediction files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvqa.data._registry import DATASETS
from medvqa.data._sample import SAMPLE_FOLDERS

if TYPE_CHECKING:
    from medvqa.chat import PromptTemplate
    from medvqa.records import Prediction

__all__ = [
    "DATASET_NAMES",
    "FIELD_OPTIONS",
    "SAMPLE_DIRS",
    "bundled_sample",
    "load_questions",
    "positive_int",
    "read_prediction_file",
    "resolve_prompt",
    "server_engine",
]

DATASET_NAMES = tuple(DATASETS)
SAMPLE_DIRS = SAMPLE_FOLDERS  # dataset name -> its folder under medvqa.data.sample_root()
FIELD_OPTIONS = ("id_field", "reference_field", "prediction_field", "answer_type_field")
"""The options naming the fields of a prediction file (``score``, ``report``, ``review``)."""


def server_engine(args: argparse.Namespace) -> Any:
    """The :class:`medvqa.server.ServerEngine` of ``--engine server``, or ``None`` for ``hf``.

    Raises:
        ValueError: ``--engine server`` without ``--server-url``, or an adapter (the server serves
            one model; merge the adapter or let the server load it, then name it in --server-model).
    """
    if args.engine != "server":
        return None
    if not args.server_url:
        raise ValueError("--engine server needs --server-url (for example http://127.0.0.1:8000)")
    if getattr(args, "adapter", None) is not None:
        raise ValueError(
            "--engine server sends requests to the model the server serves; start the server with the "
            "adapter (vLLM: --enable-lora --lora-modules NAME=FOLDER) and pass --server-model NAME instead"
        )
    from medvqa._commands.models import known_family
    from medvqa.server import ServerEngine

    family = known_family(args.model, getattr(args, "family", None))
    if family is None and args.server_model:
        family = known_family(args.server_model, None)
    return ServerEngine(
        args.server_url,
        args.server_model or args.model,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        max_retries=args.max_retries,
        family=family,
    )


def bundled_sample(name: str) -> Path | None:
    """The folder of the sample bundled with medvqa for dataset ``name``; ``None`` when there is none."""
    folder = SAMPLE_DIRS.get(name)
    if folder is None:
        return None
    from medvqa.data import sample_root

    return sample_root() / folder


def resolve_prompt(prompt: str | None, instruction: str | None) -> PromptTemplate | None:
    """The prompt of ``--prompt NAME`` or ``--instruction TEXT`` (``None``: the dataset's default).

    Raises:
        ValueError: Both are given.
    """
    from medvqa.chat import PromptTemplate, get_prompt

    if prompt is not None and instruction is not None:
        raise ValueError("give either --prompt or --instruction, not both")
    if instruction is not None:
        return PromptTemplate(name="custom", instruction=instruction)
    if prompt is not None:
        return get_prompt(prompt)
    return None


def load_questions(name: str, data: Any, split: str, limit: int | None) -> tuple[Any, Any, list[Any]]:
    """Load ``split`` of dataset ``name`` from ``data`` (default: the bundled sample), first ``limit`` only.

    Returns:
        The loaded dataset, the source it was read from, and its first ``limit`` samples.

    Raises:
        ValueError: ``data`` is missing for a dataset without a bundled sample, or no question is left.
    """
    from medvqa.data import load

    source = data
    if source is None:
        source = bundled_sample(name)
        if source is None:
            raise ValueError(f"--data is required for {name!r} (no bundled sample)")
    dataset = load(name, source, split=split)
    samples = list(dataset)[:limit]
    if not samples:
        raise ValueError(f"{name} {split} at {source} has no questions")
    return dataset, source, samples


def read_prediction_file(path: Path, args: argparse.Namespace) -> list[Prediction]:
    """Read a prediction file with the field names given by the options of ``score`` and ``report``.

    The options are ``--id-field``, ``--reference-field``, ``--prediction-field`` and
    ``--answer-type-field``.
    """
    from medvqa.metrics import read_predictions

    return read_predictions(
        path,
        id_field=args.id_field,
        reference_field=args.reference_field,
        prediction_field=args.prediction_field,
        answer_type_field=args.answer_type_field,
    )


def positive_int(text: str) -> int:
    """The argparse type of every count option (``--limit``, ``--eval-limit``, ``--batch-size``,
    ``--max-new-tokens``): an integer of at least 1, so that ``--eval-limit -5`` is refused instead
    of silently dropping the last five questions.

    >>> positive_int("3")
    3
    >>> positive_int("-5")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be a whole number of at least 1, got '-5'
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value
