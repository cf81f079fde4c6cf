"""Stage configuration: frozen, validated data that round-trips through JSON and YAML.

This module is light: it imports neither torch nor transformers, so configurations can be
built, checked and written anywhere (``medvqa train --help`` and the tests of this module run
without the training stack). YAML needs ``pyyaml`` (in the ``medvqa[train]`` extra).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

from medvqa._errors import DataFormatError
from medvqa._io import atomic_write_text
from medvqa.chat import CAPTION_INSTRUCTION

DatasetName = Literal["vqa_rad", "slake", "path_vqa", "roco", "med_halt"]
"""Datasets a stage can train on (names of :func:`medvqa.data.load`)."""

SplitName = Literal["train", "validation", "test"]

PromptName = Literal["paper", "caption", "expert"]
"""Prompt templates of :mod:`medvqa.chat`: ``paper`` ("Answer briefly."), ``caption``
(the stage-1 instruction) and ``expert`` (the expert-radiologist instruction)."""

MaskMode = Literal["answer", "paper"]
"""Loss masking: ``answer`` supervises only the answer and its end-of-utterance token;
``paper`` supervises every token except padding and image tokens, as the paper's run did."""

Precision = Literal["auto", "fp32", "fp16", "bf16"]
"""Mixed precision. ``auto`` means bf16 where the device supports it, else fp16 on CUDA, else
fp32. A precision the device lacks (fp16/bf16 on a CPU) falls back to fp32, recorded in the
stage result."""

Quantization = Literal["nf4", "fp4", "int8", "none"]
"""How the base model's weights are loaded: 4-bit NF4 (QLoRA, the paper), 4-bit FP4, 8-bit, or
unquantized (``none``)."""

Schedule = Literal[
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"
]
"""Learning-rate schedules (names of ``transformers.SchedulerType``)."""

OptimizerName = Literal[
    "adamw_torch",
    "adamw_torch_fused",
    "adafactor",
    "sgd",
    "adamw_bnb_8bit",
    "adamw_8bit",
    "paged_adamw_8bit",
    "paged_adamw_32bit",
    "lion_8bit",
    "paged_lion_8bit",
]
"""Optimizers (names of ``transformers.TrainingArguments.optim``); the ``*_8bit`` and
``paged_*`` ones come from bitsandbytes."""

LoraInitName = Literal["gaussian", "kaiming"]
"""Initialisation of a fresh LoRA adapter's A matrices (B is zero either way, so a fresh adapter
is a no-op): ``gaussian`` (the paper's ``init_lora_weights="gaussian"``) or ``kaiming`` (peft's
default)."""

LoraPresetName = Literal["paper", "llm_only", "connector_only", "all_linear"]
"""LoRA target presets of :func:`medvqa.models.add_lora` (``paper``: the language model and the
connector, for Idefics2 the text model, the modality projection and the perceiver resampler;
never the vision encoder or ``lm_head``; each family's regexes are in :data:`medvqa.models.FAMILIES`)."""

TINY_MODEL = "tiny"
"""``StageConfig.model`` value that selects the tiny random Idefics2 of :mod:`medvqa.models`."""

PAPER_MODEL = "HuggingFaceM4/idefics2-8b"

STAGE1_INSTRUCTION = CAPTION_INSTRUCTION

_JSONScalar = str | int | float | bool | None


def _check_literal(name: str, value: object, kind: Any) -> None:
    allowed = get_args(kind)
    if value not in allowed:
        raise ValueError(f"StageConfig.{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _positive(name: str, value: object, *, allow_zero: bool = False, integer: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        kind = "an integer" if integer else "a number"
        raise TypeError(f"StageConfig.{name} must be {kind}; got {value!r}")
    assert isinstance(value, int | float)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"StageConfig.{name} must be finite and {bound}; got {value!r}")


def _parse_text(text: str, fmt: Literal["json", "yaml"], file: str | None) -> Any:
    """Parse config text; a syntax error becomes a :class:`DataFormatError` naming the file."""
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"malformed JSON at line {exc.lineno}: {exc.msg}", file=file) from exc
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataFormatError(f"malformed YAML: {exc}", file=file) from exc


@dataclass(frozen=True)
class StageConfig:
    """Everything one training stage needs, as frozen, validated, JSON/YAML-serialisable data.

    One stage is one ``transformers.Trainer`` run over one dataset. The two-stage recipe of
    the paper is two of these (:func:`paper_stage1` then :func:`paper_stage2`), run by
    :func:`medvqa.training.run_two_stage`, which continues the same LoRA adapter. The config is
    written beside every checkpoint and adapter it produces (``stage_config.json``).

    Attributes:
        name: A short label for the stage (``stage1``, ``stage2``, ``single_stage``); used in
            file names, plots and reports.
        model: The base model: a Hugging Face id or local folder, or ``"tiny"`` for the tiny
            random model of :func:`medvqa.models.tiny_model` (tests and the demo).
        family: The model family (:data:`medvqa.models.FAMILIES`); ``None``: read from the
            checkpoint's ``config.json``, and Idefics2 for ``"tiny"``.
        quantization: ``nf4`` (QLoRA, the paper), ``fp4``, ``int8`` or ``none``.
        double_quant: Quantize the 4-bit quantization constants too (the paper did not).
        dataset: Which dataset adapter reads the training data (:func:`medvqa.data.load`).
        data_dir: The dataset's folder; ``None`` means the sample bundled with the package
            (:func:`medvqa.data.sample_root`).
        split: The training split.
        data_options: Extra keyword options for :func:`medvqa.data.load` (JSON scalars).
        subset_size: Train on this many samples, a nested seeded subset
            (:func:`medvqa.data.nested_subset`); ``None`` uses every sample. Larger than the
            split is an error, never silently capped.
        subset_seed: Seed of the subset draw.
        prompt: The prompt template (see :data:`PromptName`).
        instruction: Replaces the template's instruction text when set.
        mask: Loss masking (see :data:`MaskMode`).
        max_length: Truncate token sequences to this length (``None``: never truncate).
        epochs: Passes over the training data (ignored when ``max_steps`` is set).
        max_steps: Optimizer steps to run; overrides ``epochs``.
        learning_rate: Peak learning rate.
        batch_size: Samples per device per micro-batch.
        grad_accum: Micro-batches per optimizer step (effective batch = batch_size ×
            grad_accum × number of processes).
        warmup_steps: Linear warm-up steps.
        weight_decay: AdamW weight decay.
        schedule: Learning-rate schedule after warm-up.
        optimizer: The optimizer (see :data:`OptimizerName`).
        max_grad_norm: Gradient clipping norm (0 disables clipping).
        precision: Mixed precision (see :data:`Precision`).
        seed: Seed of model initialisation, data order and dropout.
        lora_preset: Target-module preset of :func:`medvqa.models.add_lora` (used when the
            stage creates the adapter; a continued adapter keeps its own).
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator.
        lora_dropout: Dropout on the LoRA input during training.
        lora_init: Initialisation of a fresh adapter (see :data:`LoraInitName`; the paper:
            ``gaussian``).
        output_dir: Where checkpoints, the adapter, the loss history and the result go.
        save_steps: Save a resumable checkpoint every this many optimizer steps.
        save_total_limit: Keep at most this many checkpoints (``None``: keep all).
        logging_steps: Record the training loss every this many optimizer steps.
        eval_split: Compute a validation loss on this split (``None``: no validation split).
        holdout_fraction: For datasets without a validation split (VQA-RAD): hold out this
            fraction of the training *images* (all questions about an image go to the same
            side; seeded by ``subset_seed``) and compute the validation loss on them. 0: none.
        eval_size: Use at most this many validation samples (nested seeded subset).
        eval_steps: Validation cadence in optimizer steps (``None``: once per epoch).
        gradient_checkpointing: Trade compute for memory.
        dataloader_workers: Worker processes of the data loader (0: load in the main process;
            ``None``, the default: 0 on a CPU, where workers would compete with the model for
            the cores, and up to 4 per process on CUDA, so that image decoding overlaps the
            GPU step).
        report_to: Where the Trainer's logs go: ``none``, ``tensorboard`` (``<output_dir>/tensorboard``),
            ``wandb`` or ``mlflow``.

    Example:
        >>> from medvqa.training import StageConfig, paper_stage2
        >>> cfg = paper_stage2(output_dir="runs/stage2")
        >>> cfg.learning_rate, cfg.epochs, cfg.batch_size * cfg.grad_accum
        (0.0001, 2.0, 16)
        >>> StageConfig.from_json(cfg.to_json()) == cfg
        True
        >>> cfg.replace(batch_size=0)
        Traceback (most recent call last):
        ...
        ValueError: StageConfig.batch_size must be finite and > 0; got 0
    """

    name: str = "stage"
    model: str = PAPER_MODEL
    family: str | None = None
    quantization: Quantization = "nf4"
    double_quant: bool = False
    dataset: DatasetName = "vqa_rad"
    data_dir: str | None = None
    split: SplitName = "train"
    data_options: Mapping[str, _JSONScalar] = field(default_factory=dict)
    subset_size: int | None = None
    subset_seed: int = 0
    prompt: PromptName = "paper"
    instruction: str | None = None
    mask: MaskMode = "paper"
    max_length: int | None = None
    epochs: float = 1.0
    max_steps: int | None = None
    learning_rate: float = 1e-4
    batch_size: int = 2
    grad_accum: int = 8
    warmup_steps: int = 50
    weight_decay: float = 0.01
    schedule: Schedule = "linear"
    optimizer: OptimizerName = "adamw_torch"
    max_grad_norm: float = 1.0
    precision: Precision = "fp16"
    seed: int = 42
    lora_preset: LoraPresetName = "paper"
    lora_r: int = 8
    lora_alpha: int = 8
    lora_dropout: float = 0.1
    lora_init: LoraInitName = "gaussian"
    output_dir: str = "medvqa-output/stage"
    save_steps: int = 500
    save_total_limit: int | None = None
    logging_steps: int = 10
    eval_split: SplitName | None = None
    holdout_fraction: float = 0.0
    eval_size: int | None = None
    eval_steps: int | None = None
    gradient_checkpointing: bool = False
    dataloader_workers: int | None = None
    report_to: str = "none"

    def __post_init__(self) -> None:
        self._check_identity()
        self._check_choices()
        self._normalise_data()
        self._check_numbers()
        self._check_validation()

    def _check_identity(self) -> None:
        if not isinstance(self.name, str) or not self.name or any(c in self.name for c in "/\\\0"):
            raise ValueError(
                f"StageConfig.name must be a non-empty string without slashes; got {self.name!r}"
            )
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"StageConfig.model must be a model id, a folder or 'tiny'; got {self.model!r}")
        if self.family is not None:
            from medvqa.models._families import FAMILIES

            if self.family not in FAMILIES:
                raise ValueError(
                    f"StageConfig.family must be one of {', '.join(sorted(FAMILIES))} or null; got {self.family!r}"
                )

    def _check_choices(self) -> None:
        _check_literal("quantization", self.quantization, Quantization)
        _check_literal("dataset", self.dataset, DatasetName)
        _check_literal("split", self.split, SplitName)
        _check_literal("prompt", self.prompt, PromptName)
        _check_literal("mask", self.mask, MaskMode)
        _check_literal("schedule", self.schedule, Schedule)
        _check_literal("optimizer", self.optimizer, OptimizerName)
        _check_literal("precision", self.precision, Precision)
        _check_literal("lora_preset", self.lora_preset, LoraPresetName)
        _check_literal("lora_init", self.lora_init, LoraInitName)
        for name in ("double_quant", "gradient_checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"StageConfig.{name} must be true or false; got {getattr(self, name)!r}")
        if self.eval_split is not None:
            _check_literal("eval_split", self.eval_split, SplitName)

    def _normalise_data(self) -> None:
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        object.__setattr__(self, "output_dir", os.fspath(self.output_dir))
        if not isinstance(self.data_options, Mapping):
            raise TypeError(f"StageConfig.data_options must be a mapping; got {self.data_options!r}")
        for key, value in self.data_options.items():
            if not isinstance(key, str) or (
                value is not None and not isinstance(value, str | int | float | bool)
            ):
                raise TypeError(
                    f"StageConfig.data_options must map strings to JSON scalars; got {key!r}: {value!r}"
                )
        object.__setattr__(self, "data_options", MappingProxyType(dict(self.data_options)))
        if self.instruction is not None and not self.instruction.strip():
            raise ValueError("StageConfig.instruction must be non-empty text or None")

    def _check_numbers(self) -> None:
        for name in ("batch_size", "grad_accum", "save_steps", "logging_steps", "lora_r", "lora_alpha"):
            _positive(name, getattr(self, name), integer=True)
        if self.report_to not in ("none", "tensorboard", "wandb", "mlflow"):
            raise ValueError(
                f"StageConfig.report_to must be none, tensorboard, wandb or mlflow; got {self.report_to!r}"
            )
        for name in ("warmup_steps", "subset_seed", "seed"):
            _positive(name, getattr(self, name), allow_zero=True, integer=True)
        for name in ("subset_size", "eval_size", "dataloader_workers"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name), allow_zero=True, integer=True)
        for name in ("max_length", "max_steps", "save_total_limit", "eval_steps"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name), integer=True)
        _positive("learning_rate", self.learning_rate)
        _positive("weight_decay", self.weight_decay, allow_zero=True)
        _positive("max_grad_norm", self.max_grad_norm, allow_zero=True)
        _positive("lora_dropout", self.lora_dropout, allow_zero=True)
        if self.lora_dropout >= 1:
            raise ValueError(f"StageConfig.lora_dropout must be in [0, 1); got {self.lora_dropout!r}")
        if self.max_steps is None:
            _positive("epochs", self.epochs)
        object.__setattr__(self, "epochs", float(self.epochs))
        object.__setattr__(self, "learning_rate", float(self.learning_rate))
        _positive("holdout_fraction", self.holdout_fraction, allow_zero=True)
        object.__setattr__(self, "holdout_fraction", float(self.holdout_fraction))
        if self.holdout_fraction >= 0.5:
            raise ValueError(
                f"StageConfig.holdout_fraction must be in [0, 0.5); got {self.holdout_fraction!r}"
            )

    def _check_validation(self) -> None:
        if self.holdout_fraction > 0 and self.eval_split is not None:
            raise ValueError("StageConfig.holdout_fraction and eval_split are exclusive; set one of them")
        if not self.has_validation:
            for name in ("eval_size", "eval_steps"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"StageConfig.{name} is set but there is no validation: set eval_split or holdout_fraction"
                    )

    # -- derived values ---------------------------------------------------------------------

    @property
    def has_validation(self) -> bool:
        """Whether the stage computes a validation loss (``eval_split`` or ``holdout_fraction``)."""
        return self.eval_split is not None or self.holdout_fraction > 0

    @property
    def effective_batch_size(self) -> int:
        """Samples per optimizer step in one process (``batch_size × grad_accum``)."""
        return self.batch_size * self.grad_accum

    def fingerprint(self) -> str:
        """A short hash of the settings that change what is trained (not where it is written).

        Resuming refuses checkpoints whose fingerprint differs from the current config.

        >>> from medvqa.training import paper_stage2
        >>> paper_stage2().fingerprint() == paper_stage2(output_dir="elsewhere").fingerprint()
        True
        """
        data = self.to_dict()
        for key in (
            "output_dir",
            "save_steps",
            "save_total_limit",
            "logging_steps",
            "dataloader_workers",
            "report_to",
        ):
            data.pop(key)
        if data["family"] is None:  # runs from before model families keep their fingerprint
            data.pop("family")
        blob = json.dumps(data, sort_keys=True).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]

    def replace(self, **changes: Any) -> StageConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # -- serialisation ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict with every field, in declaration order."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = dict(value) if f.name == "data_options" else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, file: str | None = None) -> StageConfig:
        """Build a config from a dict written by :meth:`to_dict` (missing keys take defaults).

        Raises:
            DataFormatError: An unknown key or an invalid value (names the file and field).
        """
        if not isinstance(data, Mapping):
            raise DataFormatError(f"a stage config must be a mapping, got {type(data).__name__}", file=file)
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise DataFormatError(
                    f"unknown stage config key; valid keys: {', '.join(sorted(known))}",
                    file=file,
                    field=str(key),
                )
        values = dict(data)
        for key in _FLOAT_FIELDS:
            # YAML 1.1 reads "1e-4" (no dot) as a string: accept numbers written that way.
            if isinstance(values.get(key), str):
                try:
                    values[key] = float(values[key])
                except ValueError:
                    pass
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            fieldname = None
            msg = str(exc)
            if msg.startswith("StageConfig."):
                fieldname = msg.split(" ", 1)[0].removeprefix("StageConfig.")
            raise DataFormatError(msg, file=file, field=fieldname) from exc

    def to_json(self) -> str:
        """The config as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, *, file: str | None = None) -> StageConfig:
        """Parse JSON text written by :meth:`to_json`."""
        return cls.from_dict(_parse_text(text, "json", file), file=file)

    def to_yaml(self, *, header: str | None = None) -> str:
        """The config as YAML text, optionally preceded by ``header`` as ``#`` comment lines."""
        import yaml

        body = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False, allow_unicode=True)
        if header:
            lines = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
            return lines + str(body)
        return str(body)

    @classmethod
    def from_yaml(cls, text: str, *, file: str | None = None) -> StageConfig:
        """Parse YAML text (the format of :meth:`to_yaml`, comments allowed)."""
        return cls.from_dict(_parse_text(text, "yaml", file) or {}, file=file)

    def save(self, path: str | os.PathLike[str], *, header: str | None = None) -> Path:
        """Write the config atomically as JSON (``.json``) or YAML (``.yaml``/``.yml``)."""
        p = Path(path)
        if p.suffix in (".yaml", ".yml"):
            atomic_write_text(p, self.to_yaml(header=header))
        elif p.suffix == ".json":
            atomic_write_text(p, self.to_json())
        else:
            raise ValueError(f"config file {p} must end in .json, .yaml or .yml")
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str], **overrides: Any) -> StageConfig:
        """Read a JSON or YAML config file, then apply ``overrides``.

        Raises:
            DataFormatError: The file is missing, malformed, or holds an invalid setting.
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise DataFormatError("config file not found", file=str(p)) from exc
        if p.suffix in (".yaml", ".yml"):
            cfg = cls.from_yaml(text, file=str(p))
        else:
            cfg = cls.from_json(text, file=str(p))
        if overrides:
            try:
                cfg = cfg.replace(**overrides)
            except (TypeError, ValueError) as exc:
                raise DataFormatError(str(exc), file=str(p)) from exc
        return cfg


_FLOAT_FIELDS = (
    "epochs",
    "learning_rate",
    "weight_decay",
    "max_grad_norm",
    "lora_dropout",
    "holdout_fraction",
)
