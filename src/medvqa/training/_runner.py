"""The stage runner: one stage is one ``transformers.Trainer`` run; two stages share one adapter.

The runner composes a plain ``Trainer`` (no subclass) with the collator of
:mod:`medvqa.collate`, a LoRA adapter from :mod:`medvqa.models` and the callbacks of
:mod:`medvqa.training._callbacks`. Under ``torchrun`` or ``accelerate launch`` the same code
runs data-parallel (DDP); only the main process writes files.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvqa._errors import MedVQAError
from medvqa._extras import needs_train_extra
from medvqa._io import atomic_write_json, atomic_write_text, read_json
from medvqa.records import VQASample
from medvqa.training._config import TINY_MODEL, StageConfig

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

RESULT_FILE = "result.json"
_BUNDLED = {"vqa_rad": "vqa_rad", "slake": "slake", "roco": "captions", "med_halt": "med_halt"}


def is_main_process() -> bool:
    """Whether this process is the main one (rank 0) of a ``torchrun``/``accelerate`` launch.

    A plain ``python`` run is always the main process.
    """
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    """Number of processes of the launch (1 for a plain run)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass(frozen=True)
class StageResult:
    """What a finished stage produced (also written as ``result.json`` in its folder).

    Attributes:
        name: The stage name (``StageConfig.name``).
        config: The stage config.
        output_dir: The stage folder.
        adapter_dir: The trained adapter's folder.
        global_step: Optimizer steps run in total (across resumes).
        epochs: Epochs completed (fractional when ``max_steps`` stopped the stage).
        train_samples: Samples in the training set.
        eval_samples: Samples in the validation set (0 without validation).
        train_loss: The mean training loss per step over the whole stage, from the logged
            loss history (resumes included: the same as an uninterrupted run).
        eval_loss: The last validation loss, or ``None``.
        runtime_s: Wall time of the last (possibly resumed) run, in seconds.
        precision: The precision actually used (a CPU runs fp32 whatever was asked).
        world_size: Number of processes.
        resumed_from: The checkpoint the run resumed from, or ``None``.
        loss_history: Loss rows (``stage``, ``step``, ``epoch``, ``loss`` and/or ``eval_loss``, ...).
        reused: ``True`` when the stage had already finished and was not run again.
        skipped_rows: Rows the data loader skipped because ``data_options`` asked it to
            (for example ``on_missing_image="skip"``); 0 when samples were passed in.
        bad_images: Samples left out because their image cannot be decoded
            (``on_bad_image="skip"``): ``id``, ``image`` and ``error`` of each.
    """

    name: str
    config: StageConfig
    output_dir: str
    adapter_dir: str
    global_step: int
    epochs: float
    train_samples: int
    eval_samples: int
    train_loss: float | None
    eval_loss: float | None
    runtime_s: float
    precision: str
    world_size: int = 1
    resumed_from: str | None = None
    loss_history: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    reused: bool = False
    skipped_rows: int = 0
    bad_images: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (``config`` as its own dict)."""
        return {
            "name": self.name,
            "config": self.config.to_dict(),
            "fingerprint": self.config.fingerprint(),
            "output_dir": self.output_dir,
            "adapter_dir": self.adapter_dir,
            "global_step": self.global_step,
            "epochs": self.epochs,
            "train_samples": self.train_samples,
            "eval_samples": self.eval_samples,
            "train_loss": self.train_loss,
            "eval_loss": self.eval_loss,
            "runtime_s": self.runtime_s,
            "precision": self.precision,
            "world_size": self.world_size,
            "resumed_from": self.resumed_from,
            "skipped_rows": self.skipped_rows,
            "skipped_bad_images": len(self.bad_images),
            "bad_images": [dict(b) for b in self.bad_images],
            "loss_history": [dict(r) for r in self.loss_history],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, reused: bool = False) -> StageResult:
        """Read back :meth:`to_dict` output."""
        return cls(
            name=str(data["name"]),
            config=StageConfig.from_dict(data["config"]),
            output_dir=str(data["output_dir"]),
            adapter_dir=str(data["adapter_dir"]),
            global_step=int(data["global_step"]),
            epochs=float(data["epochs"]),
            train_samples=int(data["train_samples"]),
            eval_samples=int(data.get("eval_samples", 0)),
            train_loss=None if data.get("train_loss") is None else float(data["train_loss"]),
            eval_loss=None if data.get("eval_loss") is None else float(data["eval_loss"]),
            runtime_s=float(data["runtime_s"]),
            precision=str(data["precision"]),
            world_size=int(data.get("world_size", 1)),
            resumed_from=data.get("resumed_from"),
            loss_history=tuple(data.get("loss_history", ())),
            reused=reused,
            skipped_rows=int(data.get("skipped_rows", 0)),
            bad_images=tuple(data.get("bad_images", ())),
        )


@dataclass(frozen=True)
class TwoStageResult:
    """The two stages of one run (``stage1`` is ``None`` when stage 1 was skipped, size 0)."""

    stage1: StageResult | None
    stage2: StageResult
    output_dir: str

    @property
    def adapter_dir(self) -> str:
        """The final adapter (stage 2's)."""
        return self.stage2.adapter_dir

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "output_dir": self.output_dir,
            "adapter_dir": self.adapter_dir,
            "stage1": None if self.stage1 is None else self.stage1.to_dict(),
            "stage2": self.stage2.to_dict(),
        }


# -- data and model --------------------------------------------------------------------------


def _data_source(config: StageConfig, split_dataset: str) -> Path:
    if config.data_dir is not None:
        return Path(config.data_dir)
    from medvqa.data import sample_root

    sub = _BUNDLED.get(split_dataset)
    if sub is None:
        raise MedVQAError(
            f"stage {config.name!r}: dataset {split_dataset!r} has no sample bundled with the package; "
            f"set data_dir to its folder (bundled: {', '.join(sorted(_BUNDLED))})"
        )
    return Path(sample_root()) / sub


def load_stage_samples(
    config: StageConfig, *, split: str | None = None, size: int | None = None
) -> list[VQASample]:
    """Load a stage's training samples (or, with ``split``/``size``, its validation samples).

    Uses :func:`medvqa.data.load` on ``config.data_dir`` (the bundled sample when ``None``),
    then :func:`medvqa.data.nested_subset` when a size is set. Rows skipped by the loader
    (only when ``data_options`` asks for skipping) are counted in the stage result.

    Raises:
        MedVQAError: The size is larger than the split, or the split is empty.
    """
    return _load_samples(config, split=split, size=size)[0]


def _load_samples(
    config: StageConfig, *, split: str | None = None, size: int | None = None
) -> tuple[list[VQASample], int]:
    from medvqa.data import load, nested_subset

    which = config.split if split is None else split
    want = config.subset_size if split is None else size
    data = load(
        config.dataset, _data_source(config, config.dataset), split=which, **dict(config.data_options)
    )
    samples = list(data)
    if not samples:
        raise MedVQAError(
            f"stage {config.name!r}: {config.dataset} split {which!r} in {_data_source(config, config.dataset)} "
            "has no samples"
        )
    if want is not None and split is not None:
        want = min(want, len(samples))  # eval_size is an upper bound
    if want is not None:
        if want > len(samples):
            raise MedVQAError(
                f"stage {config.name!r}: asked for {want} samples but {config.dataset} split {which!r} has "
                f"only {len(samples)}; lower subset_size/eval_size or add data"
            )
        samples = list(nested_subset(samples, want, seed=config.subset_seed))
    return samples, int(data.skipped)


@needs_train_extra
def load_base_model(config: StageConfig) -> tuple[Any, Any]:
    """Load the base model and processor named by ``config.model`` (``"tiny"``: the tiny random one).

    On a machine with CUDA, each process of a distributed launch places the whole model on
    its own GPU (``device_map={"": local_rank}``), as QLoRA under DDP needs.
    """
    import torch

    from medvqa.models import QuantizationSettings, load_model

    family = config.family
    if config.model == TINY_MODEL:
        from medvqa.models import save_tiny_model, tiny_model

        if config.quantization == "none":
            return tiny_model(family or "idefics2", seed=0)
        # Quantizing goes through the loader, as for a real checkpoint; the folder is only
        # read while loading (the quantized weights live in memory), so it is removed after.
        import tempfile

        settings = QuantizationSettings(
            mode=config.quantization,  # type: ignore[arg-type]
            compute_dtype="float32",
            double_quant=config.double_quant,
        )
        with tempfile.TemporaryDirectory(prefix="medvqa-tiny-") as tmp:
            folder = save_tiny_model(tmp, family or "idefics2", seed=0)
            return load_model(folder, family=family, quantization=settings, dtype="float32")

    precision = resolve_precision(config.precision)
    dtype_name = {"bf16": "bfloat16", "fp16": "float16"}.get(precision, "float32")
    quant = None
    if config.quantization != "none":
        quant = QuantizationSettings(
            mode=config.quantization,  # type: ignore[arg-type]
            compute_dtype=dtype_name,  # type: ignore[arg-type]
            double_quant=config.double_quant,
        )
    device_map: Any = None
    if torch.cuda.is_available():
        device_map = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return load_model(
        config.model,
        family=family,
        quantization=quant,
        dtype=getattr(torch, dtype_name),
        device_map=device_map,
    )


def resolve_precision(requested: str) -> str:
    """The precision a run will use: ``auto`` and unsupported requests are resolved here."""
    import torch

    if not torch.cuda.is_available():
        return "fp32"
    bf16_ok = bool(torch.cuda.is_bf16_supported())
    if requested == "auto":
        return "bf16" if bf16_ok else "fp16"
    if requested == "bf16" and not bf16_ok:
        return "fp16"
    return requested


def _is_peft(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _prepare_adapter(model: Any, config: StageConfig, init_adapter: str | os.PathLike[str] | None) -> Any:
    import torch

    if init_adapter is not None:
        from medvqa.models import load_adapter

        if _is_peft(model):
            raise MedVQAError("init_adapter was given but the model already carries an adapter")
        return load_adapter(model, init_adapter, is_trainable=True)
    if _is_peft(model):
        # Continue the same adapter: make sure its weights train again.
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.requires_grad_(True)
        model.train()
        return model
    from medvqa.models import add_lora

    torch.manual_seed(config.seed)
    return add_lora(
        model,
        preset=config.lora_preset,
        r=config.lora_r,
        alpha=config.lora_alpha,
        dropout=config.lora_dropout,
        init=config.lora_init,
        gradient_checkpointing=config.gradient_checkpointing,
    )


def _prompt_template(config: StageConfig) -> Any:
    from medvqa.chat import PromptTemplate, get_prompt

    template = get_prompt(config.prompt)
    if config.instruction is not None:
        layout = template.layout if template.has_instruction else ("instruction", *template.layout)
        template = PromptTemplate(
            name=f"{template.name}_custom", instruction=config.instruction, layout=layout
        )
    return template


def holdout_split(
    samples: Sequence[VQASample], fraction: float, *, seed: int
) -> tuple[list[VQASample], list[VQASample]]:
    """Split samples into (train, held-out) by image: every question about one image lands on one side.

    An image is held out when a hash of ``(seed, image name)`` falls in the lowest
    ``fraction`` of the hash range; samples without image are keyed on their id. Order is kept.

    >>> from medvqa.records import ImageRef, VQASample
    >>> pool = [VQASample(id=f"q{i}", question="q", answer="a", answer_type="open",
    ...                   answer_type_source="inferred", dataset="d", split="train",
    ...                   image=ImageRef(path=f"img{i // 2}.jpg")) for i in range(40)]
    >>> train, held = holdout_split(pool, 0.25, seed=0)
    >>> len(train) + len(held) == 40 and {s.image.path for s in train}.isdisjoint({s.image.path for s in held})
    True
    """
    import hashlib

    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    limit = int(fraction * 2**64)
    train: list[VQASample] = []
    held: list[VQASample] = []
    for s in samples:
        key = s.image.label if s.image is not None else f"id:{s.id}"
        h = int.from_bytes(hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()[:8], "big")
        (held if h < limit else train).append(s)
    return train, held


def drop_bad_images(
    samples: Sequence[VQASample], *, what: str = "training"
) -> tuple[list[VQASample], list[dict[str, Any]]]:
    """Decode every sample's image once; return the samples whose image decodes, and the others.

    Each left-out sample is described by ``id``, ``image`` and ``error``.

    Raises:
        MedVQAError: No sample is left.
    """
    from medvqa._errors import ImageLoadError

    keep: list[VQASample] = []
    bad: list[dict[str, Any]] = []
    for s in samples:
        if s.image is not None:
            try:
                s.image.open()
            except ImageLoadError as exc:
                bad.append({"id": s.id, "image": s.image.label, "error": str(exc)})
                continue
        keep.append(s)
    if samples and not keep:
        raise MedVQAError(f"no {what} sample has a readable image (first error: {bad[0]['error']})")
    return keep, bad


class _SampleDataset:
    """A map-style dataset over a list of samples (the collator does all the work)."""

    def __init__(self, samples: Sequence[VQASample]) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> VQASample:
        return self.samples[index]


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


def _load_result(out: Path, config: StageConfig) -> StageResult | None:
    path = out / RESULT_FILE
    if not path.is_file():
        return None
    data = read_json(path)
    if data.get("fingerprint") != config.fingerprint():
        raise MedVQAError(
            f"{path} records a finished stage with a different config (fingerprint {data.get('fingerprint')} "
            f"vs {config.fingerprint()}); use another output folder, or delete it to train again"
        )
    if not (Path(data["adapter_dir"]) / "adapter_config.json").is_file():
        raise MedVQAError(
            f"{path} names adapter {data['adapter_dir']}, which is missing; delete {path} to retrain"
        )
    return StageResult.from_dict(data, reused=True)


# -- the runners -------------------------------------------------------------------------------


def _run_stage(config: StageConfig, **kwargs: Any) -> tuple[StageResult, Any, Any]:
    """Run a stage while holding its folder's lock (main process only: the others write nothing)."""
    if not is_main_process():
        return _run_stage_locked(config, **kwargs)
    from medvqa._lock import RunLock

    with RunLock(config.output_dir, folder=True, what="training folder"):
        return _run_stage_locked(config, **kwargs)


def _run_stage_locked(
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
) -> tuple[StageResult, Any, Any]:
    from transformers import Trainer, set_seed

    from medvqa.collate import TrainingCollator
    from medvqa.training._callbacks import (
        CheckpointMarkerCallback,
        LogAtCheckpointsCallback,
        LossHistoryCallback,
        loss_history_from_log,
        mean_train_loss,
    )

    out = Path(config.output_dir)
    done = _load_result(out, config) if resume else None
    if done is not None:
        return done, model, processor
    checkpoint = find_resumable_checkpoint(out, config) if resume else None
    if not resume and ((out / "checkpoints").exists() or (out / RESULT_FILE).exists()):
        raise MedVQAError(
            f"{out} already holds a run; resume it (resume=True), or choose another output folder"
        )

    skipped = 0
    if train_samples is None:
        train_samples, skipped = _load_samples(config)
    elif config.subset_size is not None:
        if config.subset_size > len(train_samples):
            raise MedVQAError(
                f"stage {config.name!r}: subset_size={config.subset_size} but only {len(train_samples)} samples given"
            )
        from medvqa.data import nested_subset

        train_samples = list(nested_subset(list(train_samples), config.subset_size, seed=config.subset_seed))
    if config.holdout_fraction > 0 and eval_samples is None:
        train_samples, eval_samples = holdout_split(
            train_samples, config.holdout_fraction, seed=config.subset_seed
        )
        if not eval_samples:
            raise MedVQAError(
                f"stage {config.name!r}: holdout_fraction={config.holdout_fraction} held out no image of "
                f"{len(train_samples)} samples; raise it or use eval_split"
            )
        if config.eval_size is not None and config.eval_size < len(eval_samples):
            from medvqa.data import nested_subset

            eval_samples = nested_subset(eval_samples, config.eval_size, seed=config.subset_seed)
    if len(train_samples) == 0:
        raise MedVQAError(f"stage {config.name!r}: no training samples")
    if eval_samples is None and config.eval_split is not None:
        eval_samples = load_stage_samples(config, split=config.eval_split, size=config.eval_size)
    bad: list[dict[str, Any]] = []
    if on_bad_image == "skip":
        train_samples, bad = drop_bad_images(train_samples)
        if eval_samples:
            eval_samples, bad_eval = drop_bad_images(eval_samples, what="validation")
            bad += bad_eval
        if bad and is_main_process():
            import warnings

            warnings.warn(
                f"stage {config.name!r}: left out {len(bad)} samples whose image cannot be decoded "
                f"({', '.join(repr(b['id']) for b in bad[:5])}{', ...' if len(bad) > 5 else ''}); "
                f"listed in {out / RESULT_FILE}",
                stacklevel=3,
            )
    elif on_bad_image != "error":
        raise ValueError(f"on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")

    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "stage_config.json", config.to_json())

    set_seed(config.seed)
    if model is None:
        model, processor = load_base_model(config)
    elif processor is None:
        raise MedVQAError("run_stage: a model was given without its processor")
    model = _prepare_adapter(model, config, init_adapter)
    precision = resolve_precision(config.precision)
    args = _training_arguments(config, precision, bool(eval_samples), progress)
    collator = TrainingCollator(
        processor, mode=config.mask, prompt=_prompt_template(config), max_length=config.max_length
    )
    history = LossHistoryCallback(out, stage=config.name)
    from medvqa._tracking import check_report_to, tracking_callbacks

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
            *callbacks,
        ],
    )
    if not progress or not is_main_process():
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    start = time.perf_counter()
    output = _train(trainer, checkpoint)
    runtime = time.perf_counter() - start
    adapter = _save_adapter(trainer, config, out)
    rows = loss_history_from_log(trainer.state.log_history, stage=config.name)
    eval_losses = [r["eval_loss"] for r in rows if "eval_loss" in r]
    # over every step of the stage, resumes included (the Trainer's covers only this call's steps)
    train_loss = mean_train_loss(trainer.state.log_history)
    if train_loss is None and output is not None:
        train_loss = output.training_loss
    result = StageResult(
        name=config.name,
        config=config,
        output_dir=str(out),
        adapter_dir=str(adapter),
        global_step=int(trainer.state.global_step),
        epochs=float(trainer.state.epoch or 0.0),
        train_samples=len(train_samples),
        eval_samples=len(eval_samples or ()),
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
    if is_main_process():
        import dataclasses
        import json

        state_json = json.dumps(dataclasses.asdict(trainer.state), indent=2, sort_keys=True) + "\n"
        atomic_write_text(out / "trainer_state.json", state_json)  # what save_to_json writes, atomically
        atomic_write_json(out / RESULT_FILE, result.to_dict())
    _barrier(trainer)
    model = trainer.model
    return result, model, processor


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
    result, _, _ = _run_stage(
        config,
        model=model,
        processor=processor,
        train_samples=train_samples,
        eval_samples=eval_samples,
        init_adapter=init_adapter,
        resume=resume,
        callbacks=callbacks,
        progress=progress,
        on_bad_image=on_bad_image,
    )
    return result


_SHARED_FIELDS = ("model", "quantization", "double_quant", "lora_preset", "lora_r", "lora_alpha")


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
    if stage1 is not None:
        diff = [f for f in _SHARED_FIELDS if getattr(stage1, f) != getattr(stage2, f)]
        if diff:
            raise MedVQAError(
                f"stage 1 and stage 2 must share {', '.join(diff)} to continue one adapter; "
                + "; ".join(f"{f}: {getattr(stage1, f)!r} vs {getattr(stage2, f)!r}" for f in diff)
            )
        if stage1.name == stage2.name:
            raise MedVQAError(f"stage 1 and stage 2 need different names; both are {stage1.name!r}")
    if output_dir is not None:
        root = Path(output_dir)
        if stage1 is not None:
            stage1 = stage1.replace(output_dir=str(root / stage1.name))
        stage2 = stage2.replace(output_dir=str(root / stage2.name))
    else:
        root = Path(stage2.output_dir).parent

    r1: StageResult | None = None
    if stage1 is not None:
        r1, model, processor = _run_stage(
            stage1,
            model=model,
            processor=processor,
            train_samples=stage1_samples,
            resume=resume,
            callbacks=callbacks,
            progress=progress,
            on_bad_image=on_bad_image,
        )
    init_adapter: str | None = None
    if r1 is not None and (model is None or not _is_peft(model)):
        # Stage 1 had finished before: continue from its saved adapter.
        init_adapter = r1.adapter_dir
    r2, model, processor = _run_stage(
        stage2,
        model=model,
        processor=processor,
        train_samples=stage2_samples,
        init_adapter=init_adapter,
        resume=resume,
        callbacks=callbacks,
        progress=progress,
        on_bad_image=on_bad_image,
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
