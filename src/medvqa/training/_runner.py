"""The stage runner: one stage is one ``transformers.Trainer`` run; two stages share one adapter.

The runner composes a plain ``Trainer`` (no subclass) with the collator of
:mod:`medvqa.collate`, a LoRA adapter from :mod:`medvqa.models` and the callbacks of
:mod:`medvqa.training._callbacks`. Under ``torchrun`` or ``accelerate launch`` the same code
runs data-parallel (DDP); only the main process writes files. The stage's samples come from
:mod:`medvqa.training._samples`, its model and adapter from :mod:`medvqa.training._model`, and
its :class:`~medvqa.training.StageResult` is defined in :mod:`medvqa.training._results`.

Folder of one stage (``StageConfig.output_dir``)::

    stage_config.json        the config (also beside every checkpoint and in adapter/)
    checkpoints/checkpoint-N resumable Trainer checkpoints, each with medvqa_checkpoint.json
    adapter/                 the trained LoRA adapter (adapter_config.json + safetensors)
    trainer_state.json       the final Trainer state (log history included)
    loss_history.json/.csv   the training (and validation) loss per logging step
    result.json              written last: its presence means the stage finished
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvqa._errors import MedVQAError
from medvqa._extras import needs_train_extra
from medvqa._io import atomic_write_json, atomic_write_text
from medvqa.records import VQASample
from medvqa.training._config import StageConfig
from medvqa.training._model import (
    _is_peft,
    _prepare_adapter,
    _prompt_template,
    load_base_model,
    resolve_precision,
)
from medvqa.training._results import RESULT_FILE, StageResult, TwoStageResult, load_result
from medvqa.training._samples import (
    _SampleDataset,
    load_stage_samples,
    readable_samples,
    stage_samples,
)

__all__ = [
    "StageResult",
    "TwoStageResult",
    "find_resumable_checkpoint",
    "is_main_process",
    "load_base_model",
    "load_stage_samples",
    "run_stage",
    "run_two_stage",
]


def is_main_process() -> bool:
    """Whether this process is the main one (rank 0) of a ``torchrun``/``accelerate`` launch.

    A plain ``python`` run is always the main process.
    """
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    """Number of processes of the launch (1 for a plain run)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


# -- data and model --------------------------------------------------------------------------


# -- checkpoints -------------------------------------------------------------------------------


def find_resumable_checkpoint(output_dir: str | os.PathLike[str], config: StageConfig) -> Path | None:
    """The latest finished checkpoint of a stage folder, or ``None``.

    Only checkpoints with a completion marker count (a crash while saving leaves none).

    Raises:
        MedVQAError: The latest finished checkpoint was made with a different config.
    """
    from medvqa.training._callbacks import read_marker

    folder = Path(output_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    candidates = []
    for sub in folder.glob("checkpoint-*"):
        marker = read_marker(sub)
        if marker is None:
            continue
        candidates.append((int(marker.get("global_step", -1)), sub, marker))
    if not candidates:
        return None
    _step, path, marker = max(candidates, key=lambda c: c[0])
    if marker.get("fingerprint") != config.fingerprint():
        raise MedVQAError(
            f"{path} was made with a different stage config (fingerprint {marker.get('fingerprint')} vs "
            f"{config.fingerprint()}); resume with the config in {path / 'stage_config.json'}, or use "
            "another output folder"
        )
    return path


def _training_arguments(config: StageConfig, precision: str, has_eval: bool, progress: bool) -> Any:
    import torch
    from transformers import TrainingArguments

    out = Path(config.output_dir)
    eval_strategy = "no"
    if has_eval:
        eval_strategy = "steps" if config.eval_steps is not None else "epoch"
    from medvqa._dataloading import default_num_workers
    from medvqa._tracking import trainer_report_to

    workers = default_num_workers() if config.dataloader_workers is None else config.dataloader_workers
    kwargs: dict[str, Any] = {}
    if world_size() > 1 and not torch.cuda.is_available():
        kwargs["ddp_backend"] = "gloo"
    return TrainingArguments(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=-1 if config.max_steps is None else config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.schedule,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        optim=config.optimizer,
        max_grad_norm=config.max_grad_norm,
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        eval_strategy=eval_strategy,
        eval_steps=config.eval_steps,
        report_to=trainer_report_to(config.report_to),
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=workers,
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        disable_tqdm=not progress or not is_main_process(),
        use_cpu=not torch.cuda.is_available(),
        **kwargs,
    )


def _barrier(trainer: Any) -> None:
    if world_size() > 1:
        trainer.accelerator.wait_for_everyone()


def _save_adapter(trainer: Any, config: StageConfig, out: Path) -> Path:
    """Save the adapter to ``out/adapter`` so that a crash never leaves a half-written one in place."""
    final = out / "adapter"
    tmp = out / ".adapter.partial"
    if is_main_process():
        shutil.rmtree(tmp, ignore_errors=True)
    _barrier(trainer)
    trainer.save_model(str(tmp))
    _barrier(trainer)
    if is_main_process():
        atomic_write_text(tmp / "stage_config.json", config.to_json())
        old = out / ".adapter.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    _barrier(trainer)
    return final


# -- the runners -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HowToRun:
    """How the stages of one call run (the same for both stages of a two-stage run)."""

    resume: bool = True
    callbacks: Sequence[Any] = ()
    progress: bool = True
    on_bad_image: str = "error"


@dataclass
class _StageInputs:
    """What one stage starts from: a model (or ``None``: load it) and samples (or ``None``: load them)."""

    model: Any = None
    processor: Any = None
    train_samples: Sequence[VQASample] | None = None
    eval_samples: Sequence[VQASample] | None = None
    init_adapter: str | os.PathLike[str] | None = None


def _run_stage(config: StageConfig, inputs: _StageInputs, how: _HowToRun) -> tuple[StageResult, Any, Any]:
    """Run a stage while holding its folder's lock (main process only: the others write nothing)."""
    if not is_main_process():
        return _run_stage_locked(config, inputs, how)
    from medvqa._lock import RunLock

    with RunLock(config.output_dir, folder=True, what="training folder"):
        return _run_stage_locked(config, inputs, how)


def _run_stage_locked(
    config: StageConfig, inputs: _StageInputs, how: _HowToRun
) -> tuple[StageResult, Any, Any]:
    from transformers import set_seed

    out = Path(config.output_dir)
    done = load_result(out, config) if how.resume else None
    if done is not None:
        return done, inputs.model, inputs.processor
    checkpoint = find_resumable_checkpoint(out, config) if how.resume else None
    if not how.resume and ((out / "checkpoints").exists() or (out / RESULT_FILE).exists()):
        raise MedVQAError(
            f"{out} already holds a run; resume it (resume=True), or choose another output folder"
        )
    train, evals, skipped = stage_samples(config, inputs.train_samples, inputs.eval_samples)
    train, evals, bad = readable_samples(
        config,
        train,
        evals,
        on_bad_image=how.on_bad_image,
        listed_in=out / RESULT_FILE,
        warn=is_main_process(),
    )
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "stage_config.json", config.to_json())

    set_seed(config.seed)
    model, processor = inputs.model, inputs.processor
    if model is None:
        model, processor = load_base_model(config)
    elif processor is None:
        raise MedVQAError("run_stage: a model was given without its processor")
    model = _prepare_adapter(model, config, inputs.init_adapter)
    precision = resolve_precision(config.precision)
    trainer = _build_trainer(config, model, processor, train, evals, precision, how)
    start = time.perf_counter()
    output = _train(trainer, checkpoint)
    runtime = time.perf_counter() - start
    adapter = _save_adapter(trainer, config, out)
    result = _stage_result(
        config,
        trainer,
        output,
        adapter=adapter,
        n_train=len(train),
        n_eval=len(evals or ()),
        runtime=runtime,
        precision=precision,
        checkpoint=checkpoint,
        skipped=skipped,
        bad=bad,
    )
    if is_main_process():
        _write_stage_files(out, trainer, result)
    _barrier(trainer)
    return result, trainer.model, processor


def _build_trainer(
    config: StageConfig,
    model: Any,
    processor: Any,
    train_samples: Sequence[VQASample],
    eval_samples: Sequence[VQASample] | None,
    precision: str,
    how: _HowToRun,
) -> Any:
    """A plain ``transformers.Trainer`` with the medvqa collator, callbacks and tracking."""
    from transformers import Trainer

    from medvqa._tracking import check_report_to, tracking_callbacks
    from medvqa.collate import TrainingCollator
    from medvqa.training._callbacks import (
        CheckpointMarkerCallback,
        LogAtCheckpointsCallback,
        LossHistoryCallback,
    )

    out = Path(config.output_dir)
    args = _training_arguments(config, precision, bool(eval_samples), how.progress)
    collator = TrainingCollator(
        processor, mode=config.mask, prompt=_prompt_template(config), max_length=config.max_length
    )
    history = LossHistoryCallback(out, stage=config.name)
    check_report_to(config.report_to)
    tracking = tracking_callbacks(config.report_to, out / "tensorboard", main=is_main_process())
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_SampleDataset(train_samples),
        eval_dataset=_SampleDataset(eval_samples) if eval_samples else None,
        data_collator=collator,
        callbacks=[
            LogAtCheckpointsCallback(),
            CheckpointMarkerCallback(config.to_json(), config.fingerprint()),
            history,
            *tracking,
            *how.callbacks,
        ],
    )
    if not how.progress or not is_main_process():
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    return trainer


def _stage_result(
    config: StageConfig,
    trainer: Any,
    output: Any,
    *,
    adapter: Path,
    n_train: int,
    n_eval: int,
    runtime: float,
    precision: str,
    checkpoint: Path | None,
    skipped: int,
    bad: Sequence[Mapping[str, Any]],
) -> StageResult:
    """The :class:`StageResult` of a stage the trainer has just finished."""
    from medvqa.training._callbacks import loss_history_from_log, mean_train_loss

    rows = loss_history_from_log(trainer.state.log_history, stage=config.name)
    eval_losses = [r["eval_loss"] for r in rows if "eval_loss" in r]
    # over every step of the stage, resumes included (the Trainer's covers only this call's steps)
    train_loss = mean_train_loss(trainer.state.log_history)
    if train_loss is None and output is not None:
        train_loss = output.training_loss
    return StageResult(
        name=config.name,
        config=config,
        output_dir=str(Path(config.output_dir)),
        adapter_dir=str(adapter),
        global_step=int(trainer.state.global_step),
        epochs=float(trainer.state.epoch or 0.0),
        train_samples=n_train,
        eval_samples=n_eval,
        train_loss=None if train_loss is None or not math.isfinite(train_loss) else float(train_loss),
        eval_loss=eval_losses[-1] if eval_losses else None,
        runtime_s=runtime,
        precision=precision,
        world_size=world_size(),
        resumed_from=None if checkpoint is None else str(checkpoint),
        loss_history=tuple(rows),
        skipped_rows=skipped,
        bad_images=tuple(bad),
    )


def _write_stage_files(out: Path, trainer: Any, result: StageResult) -> None:
    """The final Trainer state, then ``result.json`` (last: its presence means the stage finished)."""
    import dataclasses
    import json

    state_json = json.dumps(dataclasses.asdict(trainer.state), indent=2, sort_keys=True) + "\n"
    atomic_write_text(out / "trainer_state.json", state_json)  # what save_to_json writes, atomically
    atomic_write_json(out / RESULT_FILE, result.to_dict())


def _train(trainer: Any, checkpoint: Path | None) -> Any:
    from medvqa._errors import ImageLoadError

    try:
        return trainer.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint))
    except ImageLoadError as exc:
        raise ImageLoadError(
            f"{exc}; pass on_bad_image='skip' (command line: --on-bad-image skip) to leave out the samples "
            "whose image cannot be decoded (they are listed in result.json)"
        ) from exc


@needs_train_extra
def run_stage(
    config: StageConfig,
    *,
    model: Any = None,
    processor: Any = None,
    train_samples: Sequence[VQASample] | None = None,
    eval_samples: Sequence[VQASample] | None = None,
    init_adapter: str | os.PathLike[str] | None = None,
    resume: bool = True,
    callbacks: Sequence[Any] = (),
    progress: bool = True,
    on_bad_image: str = "error",
) -> StageResult:
    """Run one training stage: one ``transformers.Trainer`` run on one dataset.

    The adapter is created fresh (``add_lora`` with the config's LoRA settings), loaded
    trainable from ``init_adapter``, or, when ``model`` already carries one, continued as
    is. The optimizer and schedule always start fresh.

    Resuming (the default): a folder whose ``result.json`` matches the config is returned as
    is (``reused=True``, nothing trains); otherwise training restarts from the latest
    finished checkpoint. Checkpoints and results of a different config are refused.

    Args:
        config: The stage config.
        model: A loaded base model (or a PEFT model to continue); loaded from
            ``config.model`` when ``None``.
        processor: The model's processor (required with ``model``).
        train_samples: Training samples; loaded from ``config`` when ``None``. A
            ``subset_size`` in the config subsets them.
        eval_samples: Validation samples; loaded from ``config.eval_split`` when ``None``.
        init_adapter: Start from this saved adapter (trainable), e.g. stage 1's.
        resume: Resume from the folder's state; ``False`` refuses a non-empty folder.
        callbacks: Extra ``transformers.TrainerCallback`` objects.
        progress: Show the Trainer's progress bar.
        on_bad_image: ``error`` (default): an image that cannot be decoded stops training
            with an error naming the sample and the file. ``skip``: every image is decoded
            once before training, and the samples whose image fails are left out and
            listed in ``result.json`` (``bad_images``, ``skipped_bad_images``).

    Returns:
        The :class:`StageResult` (also written to ``<output_dir>/result.json``).

    Raises:
        MedVQAError: Another run is writing ``config.output_dir`` (its lock file
            ``medvqa.lock`` names it), or the folder holds a run of another config.
    """
    inputs = _StageInputs(model, processor, train_samples, eval_samples, init_adapter)
    result, _, _ = _run_stage(config, inputs, _HowToRun(resume, tuple(callbacks), progress, on_bad_image))
    return result


_SHARED_FIELDS = ("model", "quantization", "double_quant", "lora_preset", "lora_r", "lora_alpha")


# Over 60 lines with its public docstring; the code is 22 lines.
@needs_train_extra
def run_two_stage(
    stage1: StageConfig | None,
    stage2: StageConfig,
    *,
    output_dir: str | os.PathLike[str] | None = None,
    model: Any = None,
    processor: Any = None,
    stage1_samples: Sequence[VQASample] | None = None,
    stage2_samples: Sequence[VQASample] | None = None,
    resume: bool = True,
    callbacks: Sequence[Any] = (),
    progress: bool = True,
    plot: bool = True,
    on_bad_image: str = "error",
) -> TwoStageResult:
    """Train stage 1, then continue **the same LoRA adapter** in stage 2 (fresh optimizer and schedule).

    No merge and no second adapter: stage 2 starts from stage 1's adapter weights. With
    ``stage1=None`` (a pretraining size of 0) stage 2 starts from a fresh adapter, which is
    the single-stage baseline. The folder gets ``two_stage.json``, and, with ``plot``,
    ``loss_curves.png`` and ``loss_curves.json`` (the paper's Figure 4).

    Args:
        stage1: The stage-1 config, or ``None`` to skip stage 1.
        stage2: The stage-2 config.
        output_dir: When set, the stages write to ``<output_dir>/<stage name>`` (overriding
            their ``output_dir``) and the run's summary goes here; otherwise into stage 2's
            parent folder.
        model: A loaded base model (loaded from the configs when ``None``).
        processor: Its processor.
        stage1_samples: Stage-1 samples (loaded from the config when ``None``).
        stage2_samples: Stage-2 samples (loaded from the config when ``None``).
        resume: Reuse finished stages and resume interrupted ones.
        callbacks: Extra Trainer callbacks for both stages.
        progress: Show progress bars.
        plot: Write the loss-curve plot.
        on_bad_image: ``error`` or ``skip``, for both stages (see :func:`run_stage`).

    Raises:
        MedVQAError: The stages disagree on the base model, quantization or LoRA shape.
    """
    stage1, stage2, root = _place_stages(stage1, stage2, output_dir)
    how = _HowToRun(resume, tuple(callbacks), progress, on_bad_image)
    r1: StageResult | None = None
    if stage1 is not None:
        r1, model, processor = _run_stage(stage1, _StageInputs(model, processor, stage1_samples), how)
    init_adapter: str | None = None
    if r1 is not None and (model is None or not _is_peft(model)):
        # Stage 1 had finished before: continue from its saved adapter.
        init_adapter = r1.adapter_dir
    r2, model, processor = _run_stage(
        stage2, _StageInputs(model, processor, stage2_samples, init_adapter=init_adapter), how
    )
    result = TwoStageResult(stage1=r1, stage2=r2, output_dir=str(root))
    if is_main_process():
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(root / "two_stage.json", result.to_dict())
        if plot:
            from medvqa.plots import plot_loss_curves

            histories = {r.name: list(r.loss_history) for r in (r1, r2) if r is not None}
            plot_loss_curves(histories, root / "loss_curves.png")
    return result


def _place_stages(
    stage1: StageConfig | None, stage2: StageConfig, output_dir: str | os.PathLike[str] | None
) -> tuple[StageConfig | None, StageConfig, Path]:
    """Check that two stages can continue one adapter; return them in their folders, and the run's folder.

    Raises:
        MedVQAError: The stages disagree on the base model, quantization or LoRA shape, or share a name.
    """
    if stage1 is not None:
        diff = [f for f in _SHARED_FIELDS if getattr(stage1, f) != getattr(stage2, f)]
        if diff:
            raise MedVQAError(
                f"stage 1 and stage 2 must share {', '.join(diff)} to continue one adapter; "
                + "; ".join(f"{f}: {getattr(stage1, f)!r} vs {getattr(stage2, f)!r}" for f in diff)
            )
        if stage1.name == stage2.name:
            raise MedVQAError(f"stage 1 and stage 2 need different names; both are {stage1.name!r}")
    if output_dir is None:
        return stage1, stage2, Path(stage2.output_dir).parent
    root = Path(output_dir)
    if stage1 is not None:
        stage1 = stage1.replace(output_dir=str(root / stage1.name))
    return stage1, stage2.replace(output_dir=str(root / stage2.name)), root
