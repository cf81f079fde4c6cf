"""Trainer callbacks of the stage runner: loss history, checkpoint markers, progress.

They are composed into a plain ``transformers.Trainer``; none of them changes what is
trained. Every file they write is written atomically and only by the main process.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from medvqa._io import atomic_write_json, atomic_write_text

__all__ = [
    "CHECKPOINT_MARKER",
    "CheckpointMarkerCallback",
    "LogAtCheckpointsCallback",
    "LossHistoryCallback",
    "StepCallback",
    "loss_history_from_log",
    "mean_train_loss",
]

CHECKPOINT_MARKER = "medvqa_checkpoint.json"
"""Written last into a checkpoint folder: only checkpoints that have it are trusted on resume."""

_KEEP = ("loss", "eval_loss", "learning_rate", "grad_norm")


def loss_history_from_log(log_history: Sequence[Mapping[str, Any]], *, stage: str) -> list[dict[str, Any]]:
    """Turn a ``TrainerState.log_history`` into loss-history rows.

    Each row has ``stage``, ``step``, ``epoch`` and whichever of ``loss``, ``eval_loss``,
    ``learning_rate`` and ``grad_norm`` that log entry holds. The final summary entry
    (``train_loss``, ``train_runtime``, ...) is left out.

    >>> loss_history_from_log([{"loss": 2.5, "step": 10, "epoch": 0.5}, {"train_loss": 2.0, "step": 20}],
    ...                       stage="stage1")
    [{'stage': 'stage1', 'step': 10, 'epoch': 0.5, 'loss': 2.5}]
    """
    rows: list[dict[str, Any]] = []
    for entry in log_history:
        values = {k: float(entry[k]) for k in _KEEP if k in entry and entry[k] is not None}
        if "loss" not in values and "eval_loss" not in values:
            continue
        row: dict[str, Any] = {"stage": stage, "step": int(entry.get("step", 0))}
        if "epoch" in entry and entry["epoch"] is not None:
            row["epoch"] = float(entry["epoch"])
        row.update(values)
        rows.append(row)
    return rows


def mean_train_loss(log_history: Sequence[Mapping[str, Any]]) -> float | None:
    """The mean training loss per optimizer step over a whole stage, from its log history.

    Each logged ``loss`` is the mean over the steps since the previous log, so it weighs as
    many steps. The log history is saved in every checkpoint, so a stage that was
    interrupted and resumed gets the same mean as one that ran straight through (the
    Trainer's own ``training_loss`` covers only the steps run since the resume).
    ``None`` when nothing was logged.

    >>> mean_train_loss([{"loss": 2.0, "step": 1}, {"loss": 1.0, "step": 4}, {"eval_loss": 9.0, "step": 4}])
    1.25
    """
    total = 0.0
    steps = 0
    prev = 0
    for entry in log_history:
        if entry.get("loss") is None or entry.get("step") is None:
            continue
        step = int(entry["step"])
        if step <= prev:
            continue
        total += float(entry["loss"]) * (step - prev)
        steps += step - prev
        prev = step
    return total / steps if steps else None


class LogAtCheckpointsCallback(TrainerCallback):  # type: ignore[misc]
    """Log the training loss at every checkpoint and at the last step, whatever ``logging_steps`` is.

    The loss of the steps since the last log lives only in memory; logging it before a
    checkpoint is saved puts it in the checkpoint's log history, so that a resumed stage
    still knows the loss of every step (see :func:`mean_train_loss`). It changes only what
    is logged, never what is trained.
    """

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if control.should_save or control.should_training_stop:
            control.should_log = True


class LossHistoryCallback(TrainerCallback):  # type: ignore[misc]
    """Keep ``loss_history.json`` (and ``.csv``) up to date while a stage trains.

    The files are rewritten (atomically) at most every ``every_s`` seconds on a log event,
    at every checkpoint and at the end of training, so that watching a long run costs
    almost nothing. The history is rebuilt from the trainer state each time, so a resumed
    run's file holds the losses logged before the interruption (restored from the
    checkpoint) and after it.
    """

    def __init__(self, output_dir: str | os.PathLike[str], *, stage: str, every_s: float = 30.0) -> None:
        self.output_dir = Path(output_dir)
        self.stage = stage
        self.every_s = every_s
        self._last = time.monotonic()

    def write(self, state: TrainerState) -> list[dict[str, Any]]:
        """Write the history files now (main process only) and return the rows."""
        rows = loss_history_from_log(state.log_history, stage=self.stage)
        if state.is_world_process_zero:
            atomic_write_json(self.output_dir / "loss_history.json", rows)
            cols = ["stage", "step", "epoch", *_KEEP]
            lines = [",".join(cols)]
            lines += [",".join("" if r.get(c) is None else str(r[c]) for c in cols) for r in rows]
            atomic_write_text(self.output_dir / "loss_history.csv", "\n".join(lines) + "\n")
        return rows

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if time.monotonic() - self._last >= self.every_s:
            self.write(state)
            self._last = time.monotonic()

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.write(state)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.write(state)


class CheckpointMarkerCallback(TrainerCallback):  # type: ignore[misc]
    """After the trainer saves a checkpoint, mark it complete and put the stage config beside it.

    ``transformers`` writes a checkpoint as many files; a crash in the middle leaves a folder
    that looks like a checkpoint. The marker is written atomically after all of them, so the
    runner resumes only from checkpoints that were finished.
    """

    def __init__(self, config_json: str, fingerprint: str) -> None:
        self.config_json = config_json
        self.fingerprint = fingerprint

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        folder = Path(str(args.output_dir)) / f"checkpoint-{state.global_step}"
        if not folder.is_dir():
            return
        atomic_write_text(folder / "stage_config.json", self.config_json)
        atomic_write_json(
            folder / CHECKPOINT_MARKER,
            {"global_step": state.global_step, "epoch": state.epoch, "fingerprint": self.fingerprint},
        )


class StepCallback(TrainerCallback):  # type: ignore[misc]
    """Call ``fn(global_step)`` at the end of every optimizer step (progress hooks, tests)."""

    def __init__(self, fn: Callable[[int], None]) -> None:
        self.fn = fn

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.fn(state.global_step)


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of a checkpoint folder, or ``None`` when it is absent or unreadable."""
    try:
        data = json.loads((folder / CHECKPOINT_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
