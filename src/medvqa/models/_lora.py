"""LoRA / QLoRA adapters for every family: target presets, building, reporting, loading."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from medvqa._errors import MedVQAError
from medvqa._extras import needs_train_extra
from medvqa.models._quant import keep_4bit_weights_unpacked

if TYPE_CHECKING:
    from medvqa.models._families import ModelFamily

__all__ = [
    "LORA_PRESETS",
    "LoraInit",
    "LoraPreset",
    "LoraReport",
    "LoraSettings",
    "add_lora",
    "check_adapter_folder",
    "load_adapter",
    "lora_report",
    "lora_target_modules",
]

LoraPreset = Literal["paper", "llm_only", "connector_only", "all_linear", "custom"]
"""Which modules get adapters (``custom``: the ``target_modules`` you give).

``paper``: language model + connector (never the vision encoder or ``lm_head``);
``llm_only``; ``connector_only``; ``all_linear``: every linear layer but ``lm_head``,
vision encoder included. Each family defines them (:attr:`medvqa.models.ModelFamily.lora_presets`).
"""

LoraInit = Literal["gaussian", "kaiming"]
"""Initialisation of the A matrix (B is zero either way, so a fresh adapter is a no-op)."""

_PROJ = "(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj)"

LORA_PRESETS: Mapping[str, str] = {
    "paper": rf".*(text_model|modality_projection|perceiver_resampler).*{_PROJ}.*$",
    "llm_only": rf".*text_model.*{_PROJ}$",
    "connector_only": rf".*(modality_projection|perceiver_resampler).*{_PROJ}$",
}
"""Idefics2's target regexes (matched in full against module names, as peft does).

Other families' presets, and ``all_linear``, are in :data:`medvqa.models.FAMILIES`.
``paper`` is the paper's regex: the q/k/v/o/gate/up/down projections of the text model,
the modality projection and the perceiver resampler; never the SigLIP vision encoder
(whose layers are ``q/k/v/out_proj``, ``fc1/fc2``) and never ``lm_head``.
"""


def _forbidden(vision_prefix: str) -> tuple[re.Pattern[str], ...]:
    """Module names the ``paper``, ``llm_only`` and ``connector_only`` presets must never adapt."""
    return (re.compile(rf"(^|.*\.){re.escape(vision_prefix)}\."), re.compile(r"(^|.*\.)lm_head$"))


def lora_target_modules(
    preset: LoraPreset, target_modules: str | Sequence[str] | None = None, *, family: str | None = None
) -> str | list[str]:
    """The peft ``target_modules`` value of a preset.

    Args:
        preset: A built-in preset or ``custom``.
        target_modules: Regex or names, only with ``custom``.
        family: The model family (default: ``idefics2``).

    >>> lora_target_modules("llm_only")
    '.*text_model.*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj)$'
    >>> lora_target_modules("connector_only", family="qwen2_vl")
    'model\\\\.visual\\\\.merger\\\\.mlp\\\\.[02]'
    >>> lora_target_modules("custom", ["q_proj"])
    ['q_proj']
    """
    from medvqa.models._families import get_family

    if preset == "custom":
        if not target_modules:
            raise ValueError("preset='custom' needs target_modules (a regex or a list of module names)")
        return target_modules if isinstance(target_modules, str) else list(target_modules)
    if preset not in get_args(LoraPreset):
        raise ValueError(f"unknown LoRA preset {preset!r}; valid presets are {get_args(LoraPreset)}")
    if target_modules:
        raise ValueError(f"target_modules is only used with preset='custom' (got preset={preset!r})")
    if (family is None or family == "idefics2") and preset in LORA_PRESETS:
        return LORA_PRESETS[preset]
    return get_family(family or "idefics2").lora_target(preset)


@dataclass(frozen=True)
class LoraSettings:
    """A LoRA adapter's configuration; defaults are the paper's (r = alpha = 8, dropout 0.1).

    Attributes:
        preset: Target preset.
        r: Rank.
        alpha: Scaling numerator (the update is scaled by ``alpha / r``).
        dropout: Dropout on the adapter input during training.
        init: ``gaussian`` (the paper) or ``kaiming`` (peft's default).
        target_modules: Regex or module names, only with ``preset="custom"``.

    >>> LoraSettings.from_dict(LoraSettings(r=16).to_dict()).r
    16
    """

    preset: LoraPreset = "paper"
    r: int = 8
    alpha: int = 8
    dropout: float = 0.1
    init: LoraInit = "gaussian"
    target_modules: str | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        lora_target_modules(self.preset, self.target_modules)
        if not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"LoRA rank r must be a positive integer, got {self.r!r}")
        if not isinstance(self.alpha, int) or self.alpha < 1:
            raise ValueError(f"LoRA alpha must be a positive integer, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        if self.init not in get_args(LoraInit):
            raise ValueError(f"LoRA init must be one of {get_args(LoraInit)}, got {self.init!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict that :meth:`from_dict` reads back."""
        tm = self.target_modules
        return {
            "preset": self.preset,
            "r": self.r,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "init": self.init,
            "target_modules": list(tm) if isinstance(tm, tuple) else tm,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoraSettings:
        """Build settings from :meth:`to_dict` output (missing keys take the defaults)."""
        known = {"preset", "r", "alpha", "dropout", "init", "target_modules"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown LoRA settings {sorted(unknown)}; valid keys are {sorted(known)}")
        kwargs = dict(data)
        if isinstance(kwargs.get("target_modules"), list):
            kwargs["target_modules"] = tuple(kwargs["target_modules"])
        return cls(**kwargs)


@dataclass(frozen=True)
class LoraReport:
    """What an adapter touches.

    Attributes:
        adapted_modules: Names of the modules carrying LoRA weights (base-model names,
            e.g. ``model.text_model.layers.0.self_attn.q_proj``), sorted.
        trainable_params: Parameters that require gradients.
        total_params: All parameters (4-bit weights counted unpacked).
    """

    adapted_modules: tuple[str, ...]
    trainable_params: int
    total_params: int

    @property
    def trainable_fraction(self) -> float:
        """``trainable_params / total_params``."""
        return self.trainable_params / self.total_params if self.total_params else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "adapted_modules": list(self.adapted_modules),
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "trainable_fraction": self.trainable_fraction,
        }


def _is_quantized(model: Any) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


# Over 60 lines: a third of it is the public docstring; the rest is one linear recipe.
@needs_train_extra
def add_lora(
    model: Any,
    *,
    preset: LoraPreset = "paper",
    r: int = 8,
    alpha: int = 8,
    dropout: float = 0.1,
    init: LoraInit = "gaussian",
    target_modules: str | Sequence[str] | None = None,
    settings: LoraSettings | None = None,
    prepare_kbit: bool | None = None,
    gradient_checkpointing: bool = False,
    family: str | None = None,
) -> Any:
    """Wrap a model with a fresh, trainable LoRA adapter.

    Args:
        model: A model of a supported family (quantized or not).
        preset: Target preset; ``custom`` uses ``target_modules``.
        r: Rank (paper: 8).
        alpha: Scaling numerator (paper: 8).
        dropout: Adapter dropout (paper: 0.1).
        init: A-matrix initialisation (paper: ``gaussian``).
        target_modules: Regex or names for ``preset="custom"``.
        settings: All of the above at once (overrides them when given).
        prepare_kbit: Run peft's ``prepare_model_for_kbit_training`` (casts norms to
            float32, freezes the base); default: when the model is 4/8-bit.
        gradient_checkpointing: Turn on non-reentrant activation checkpointing.
        family: The model family whose presets apply (default: from ``model.config.model_type``).

    Returns:
        A ``peft.PeftModel`` in train mode.

    Raises:
        MedVQAError: A ``paper``/``llm_only``/``connector_only`` preset matched a
            vision-encoder module or ``lm_head`` (never expected), or nothing matched.
    """
    from peft import prepare_model_for_kbit_training as _prepare

    from medvqa.models._families import family_of_model, get_family

    prepare_model_for_kbit_training: Any = _prepare

    if settings is None:
        settings = LoraSettings(
            preset=preset,
            r=r,
            alpha=alpha,
            dropout=dropout,
            init=init,
            target_modules=target_modules
            if target_modules is None or isinstance(target_modules, str)
            else tuple(target_modules),
        )
    fam = get_family(family) if family is not None else family_of_model(model)
    config, targets = _lora_config(settings, fam)
    quantized = _is_quantized(model)
    if quantized:
        keep_4bit_weights_unpacked(model)
    if prepare_kbit is None:
        prepare_kbit = quantized
    if prepare_kbit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if gradient_checkpointing:
        _enable_checkpointing(model)
    peft_model, report = _wrap(model, config, targets)
    if settings.preset not in ("custom", "all_linear"):
        forbidden = _forbidden(fam.vision_prefix)
        bad = [n for n in report.adapted_modules if any(p.match(n) for p in forbidden)]
        if bad:
            raise MedVQAError(f"LoRA preset {settings.preset!r} adapted forbidden modules: {bad}")
    peft_model.train()
    return peft_model


def _lora_config(settings: LoraSettings, fam: ModelFamily) -> tuple[Any, str | list[str]]:
    """The peft ``LoraConfig`` of ``settings`` with the family's targets, target parameters and
    fully trained modules; and the targets."""
    from peft import LoraConfig

    targets: str | list[str] = lora_target_modules(settings.preset, settings.target_modules, family=fam.name)
    parameters = list(fam.lora_target_parameters.get(settings.preset, ()))
    to_save = list(fam.lora_modules_to_save.get(settings.preset, ()))
    if parameters and targets == _NOTHING:
        targets = []
    if parameters and settings.dropout:
        raise MedVQAError(
            f"LoRA preset {settings.preset!r} of family {fam.name!r} adapts {parameters} through peft's "
            f"target_parameters, which peft supports only without dropout; pass dropout=0 (got "
            f"{settings.dropout}) or use the 'paper' preset, which trains the connector in full"
        )
    extra: dict[str, Any] = {}
    if parameters:
        extra["target_parameters"] = parameters
    if to_save:
        extra["modules_to_save"] = to_save
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        init_lora_weights="gaussian" if settings.init == "gaussian" else True,
        target_modules=targets,
        bias="none",
        **extra,
    )
    return config, targets


def _wrap(model: Any, config: Any, targets: str | list[str]) -> tuple[Any, LoraReport]:
    """``get_peft_model`` and its report, refusing targets that match no module."""
    from peft import get_peft_model

    try:
        with _quiet_peft():
            peft_model = get_peft_model(model, config)
    except ValueError as exc:  # peft's NoMatchingPeftModuleError is a ValueError
        if "not found in the base model" not in str(exc):
            raise
        raise MedVQAError(f"LoRA targets {targets!r} matched no module of the model") from exc
    report = lora_report(peft_model)
    if not report.adapted_modules:
        raise MedVQAError(f"LoRA targets {targets!r} matched no module of the model")
    return peft_model, report


_NOTHING = r"(?!)"
"""A preset regex that matches no module (a connector without Linear layers)."""


@contextmanager
def _quiet_peft() -> Iterator[None]:
    """Hide the deprecation warning peft triggers by reading ``is_gradient_checkpointing``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _enable_checkpointing(model: Any) -> None:
    """Non-reentrant activation checkpointing (with inputs that require grad, for frozen embeddings)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers < 5.x
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.enable_input_require_grads()
    if hasattr(model, "config"):
        model.config.use_cache = False


def _strip_peft_prefix(name: str) -> str:
    for prefix in ("base_model.model.",):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


@needs_train_extra
def lora_report(model: Any) -> LoraReport:
    """List the adapted modules and count trainable and total parameters.

    Args:
        model: A model with LoRA layers (a ``PeftModel`` or a model adapters were injected into).
    """
    from peft.tuners.lora import LoraLayer

    adapted = sorted(
        _strip_peft_prefix(name) for name, module in model.named_modules() if isinstance(module, LoraLayer)
    )
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
    return LoraReport(
        adapted_modules=tuple(adapted), trainable_params=int(trainable), total_params=int(total)
    )


def check_adapter_folder(path: str | os.PathLike[str]) -> Path:
    """Check that a folder holds a saved LoRA adapter that medvqa can load, without loading it.

    Cheap enough to run before a large base model is loaded (``medvqa predict`` does).

    Args:
        path: The adapter folder.

    Returns:
        The folder, as a ``Path``.

    Raises:
        MedVQAError: The folder does not exist, its ``adapter_config.json`` is missing,
            unreadable or not a LoRA config, or ``adapter_model.safetensors`` is missing.

    >>> check_adapter_folder("no/such/adapter")
    Traceback (most recent call last):
    ...
    medvqa._errors.MedVQAError: no/such/adapter: adapter folder not found
    """
    folder = Path(path)
    if not folder.is_dir():
        what = "is a file, not an adapter folder" if folder.exists() else "adapter folder not found"
        raise MedVQAError(f"{folder}: {what}")
    config_path = folder / "adapter_config.json"
    if not config_path.is_file():
        raise MedVQAError(f"{folder}: not a LoRA adapter folder (adapter_config.json is missing)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MedVQAError(f"{config_path}: not a readable JSON adapter config: {exc}") from None
    if not isinstance(config, dict):
        raise MedVQAError(f"{config_path}: expected a JSON object, got {type(config).__name__}")
    peft_type = config.get("peft_type")
    if peft_type != "LORA":
        raise MedVQAError(f"{config_path}: peft_type is {peft_type!r}; medvqa loads LoRA adapters ('LORA')")
    if not (folder / "adapter_model.safetensors").is_file():
        raise MedVQAError(
            f"{folder}: adapter_model.safetensors is missing; medvqa loads adapters only from safetensors"
        )
    return folder


def _mismatch(folder: Path, exc: RuntimeError) -> str | None:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip().startswith("size mismatch")]
    if not lines:
        return None
    return (
        f"{folder}: the adapter does not fit this base model ({len(lines)} weight(s) have other shapes, "
        f"first: {lines[0].removeprefix('size mismatch for ')}); load it onto the base model it was "
        "trained on"
    )


@needs_train_extra
def load_adapter(model: Any, path: str | os.PathLike[str], *, is_trainable: bool = False) -> Any:
    """Attach a saved LoRA adapter (safetensors only) to a base model.

    For inference (the default) the returned model is in ``eval`` mode, so LoRA dropout is
    off: the paper's code left it on. With ``is_trainable=True`` the adapter's weights
    require gradients and the model is in train mode (continuing training, as stage 2
    continues stage 1's adapter).

    Args:
        model: The base model (quantized or not), as :func:`load_idefics2` returns it.
        path: The adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``).
        is_trainable: Load for further training instead of inference.

    Raises:
        MedVQAError: The folder is not a loadable LoRA adapter (see
            :func:`check_adapter_folder`), or its weights do not fit the base model (other
            shapes, or target modules the base model lacks); one line each.
    """
    from peft import PeftModel

    folder = check_adapter_folder(path)
    if _is_quantized(model):  # the same CPU path as the trained model: reloads exactly, merges
        keep_4bit_weights_unpacked(model)
    try:
        with _quiet_peft():
            peft_model = PeftModel.from_pretrained(
                model, str(folder), is_trainable=is_trainable, use_safetensors=True
            )
    except RuntimeError as exc:
        message = _mismatch(folder, exc)
        if message is None:
            raise
        raise MedVQAError(message) from exc
    except ValueError as exc:  # peft: target modules not found in the base model
        if "not found in the base model" not in str(exc):
            raise
        raise MedVQAError(
            f"{folder}: the adapter targets modules this base model lacks: {' '.join(str(exc).split())}"
        ) from exc
    if is_trainable:
        peft_model.train()
    else:
        peft_model.eval()
    return peft_model
