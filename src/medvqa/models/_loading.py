"""Loading checkpoints of every supported family (optionally quantized) with their processor."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medvqa._errors import MedVQAError
from medvqa._extras import needs_train_extra
from medvqa.models._families import ModelFamily, detect_family
from medvqa.models._quant import (
    LM_HEAD,
    QuantizationMode,
    QuantizationSettings,
    bnb_config,
    skip_pattern_matches,
)

if TYPE_CHECKING:
    import torch

__all__ = ["DType", "load_idefics2", "load_model", "quantized_module_names"]

DType = Literal["auto", "float32", "float16", "bfloat16"]
"""Dtype names accepted by :func:`load_idefics2` (``auto``: the checkpoint's own dtype)."""


def _dtype(dtype: DType | torch.dtype) -> Any:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return "auto"
    if dtype not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"dtype must be 'auto', 'float32', 'float16' or 'bfloat16', got {dtype!r}")
    return getattr(torch, dtype)


@needs_train_extra
def load_idefics2(
    path: str | os.PathLike[str],
    *,
    quantization: QuantizationMode | QuantizationSettings | None = None,
    dtype: DType | torch.dtype = "auto",
    device_map: str | dict[str, Any] | None = None,
    do_image_splitting: bool = False,
    attn_implementation: str | None = None,
    local_files_only: bool | None = None,
) -> tuple[Any, Any]:
    """Load an Idefics2 model and its processor from a folder (or a hub id, where online).

    :func:`load_model` with ``family="idefics2"``. Weights are read only from safetensors
    files and remote code is never trusted. The model is returned in ``eval`` mode.

    Args:
        path: A folder written by ``save_pretrained`` (for example by
            :func:`medvqa.models.save_tiny_idefics2`), or a hub id such as
            ``HuggingFaceM4/idefics2-8b``.
        quantization: ``None`` (full precision), ``"nf4"`` (the paper's QLoRA base),
            ``"fp4"``, ``"int8"``, or full :class:`QuantizationSettings`.
        dtype: As for :func:`load_model`.
        device_map: As for :func:`load_model` (quantized models: the whole model on the
            first GPU, as QLoRA training needs, when CUDA is available).
        do_image_splitting: The processor's image splitting (off in the paper: one image
            is 64 image tokens for the real model).
        attn_implementation: As for :func:`load_model`.
        local_files_only: As for :func:`load_model`.

    Returns:
        ``(model, processor)``.

    Raises:
        MedVQAError: As :func:`load_model`, or the processor's ``image_seq_len`` differs
            from the perceiver's ``resampler_n_latents``.
    """
    return load_model(
        path,
        family="idefics2",
        quantization=quantization,
        dtype=dtype,
        device_map=device_map,
        image_settings={"do_image_splitting": do_image_splitting},
        attn_implementation=attn_implementation,
        local_files_only=local_files_only,
    )


# Over 60 lines: half of it is the public docstring; each check is a named step.
@needs_train_extra
def load_model(
    path: str | os.PathLike[str],
    *,
    family: str | None = None,
    quantization: QuantizationMode | QuantizationSettings | None = None,
    dtype: DType | torch.dtype = "auto",
    device_map: str | dict[str, Any] | None = None,
    image_settings: dict[str, Any] | None = None,
    attn_implementation: str | None = None,
    local_files_only: bool | None = None,
) -> tuple[Any, Any]:
    """Load a model of any supported family and its processor from a folder (or a hub id).

    The family is read from the checkpoint's ``config.json`` (``model_type``) unless
    ``family`` names it. Weights are read only from safetensors files and remote code is
    never trusted. The model is returned in ``eval`` mode; the processor carries the family
    name as ``processor.medvqa_family``. Processors that transformers cannot build without
    torchvision (Qwen2-VL, Qwen2.5-VL, SmolVLM2) are replaced by image-only equivalents.

    Args:
        path: A folder written by ``save_pretrained`` (for example by
            :func:`medvqa.models.save_tiny_model`), or a hub id.
        family: The family (see :data:`medvqa.models.FAMILIES`); default: detected.
        quantization: ``None`` (full precision), ``"nf4"``, ``"fp4"``, ``"int8"``, or full
            :class:`QuantizationSettings`; the family's skip list applies.
        dtype: Dtype of the unquantized weights. With ``auto`` and quantization, the
            settings' compute dtype is used.
        device_map: Passed to ``from_pretrained``. Quantized models default to ``{"": 0}``
            when CUDA is available, ``"cpu"`` otherwise.
        image_settings: Image processor settings; default: the family's
            (:attr:`~medvqa.models.ModelFamily.image_settings`).
        attn_implementation: ``"eager"``, ``"sdpa"``, ... (``None``: transformers' default).
        local_files_only: Never reach the network (default: when ``path`` is a folder, or
            ``HF_HUB_OFFLINE`` is set).

    Returns:
        ``(model, processor)``.

    Raises:
        MedVQAError: ``path`` is neither a model folder nor a reachable hub id (one line
            saying which), the folder has no safetensors weights, the family is unknown or
            unsupported, a ``keep_modules`` pattern keeps no linear layer, or a module that
            must stay unquantized was quantized anyway.
    """
    from transformers import AutoModelForImageTextToText

    where, is_dir = _source(path)
    _check_folder(where, is_dir)
    if local_files_only is None:
        local_files_only = is_dir or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    fam = _family(where, is_dir, family, local_files_only)
    settings: QuantizationSettings | None
    settings = QuantizationSettings(mode=quantization) if isinstance(quantization, str) else quantization
    torch_dtype = _dtype(dtype)
    if settings is not None and settings.keep_modules:
        _check_keep_patterns(where, settings, local_files_only)
    kwargs = _from_pretrained_kwargs(
        fam, settings, torch_dtype, device_map, attn_implementation, local_files_only=local_files_only
    )
    image_kwargs = dict(fam.image_settings if image_settings is None else image_settings)
    try:
        model: Any = AutoModelForImageTextToText.from_pretrained(where, **kwargs)
        processor = _load_processor(where, fam, image_kwargs, local_files_only)
    except OSError as exc:
        raise MedVQAError(_load_failure(where, is_dir, exc)) from exc
    if settings is not None:
        _check_unquantized(where, model, settings, fam)
    if fam.name == "idefics2":
        _check_image_seq_len(where, model, processor)
    processor.medvqa_family = fam.name
    model.eval()
    return model, processor


def _check_folder(where: str, is_dir: bool) -> None:
    """Refuse a folder without ``config.json`` or safetensors weights."""
    if is_dir and not (Path(where) / "config.json").is_file():
        raise MedVQAError(
            f"{where}: no config.json; not a model folder written by save_pretrained (it needs "
            "config.json, *.safetensors weights and the processor files)"
        )
    if is_dir and not any(Path(where).glob("*.safetensors")):
        raise MedVQAError(
            f"{where}: no *.safetensors weights found; medvqa loads weights only from safetensors "
            "(convert .bin checkpoints with transformers' save_pretrained(safe_serialization=True))"
        )


def _from_pretrained_kwargs(
    fam: ModelFamily,
    settings: QuantizationSettings | None,
    torch_dtype: Any,
    device_map: str | dict[str, Any] | None,
    attn_implementation: str | None,
    *,
    local_files_only: bool,
) -> dict[str, Any]:
    """The ``from_pretrained`` arguments: safetensors only, no remote code, quantization, dtype, devices."""
    import torch

    kwargs: dict[str, Any] = {
        "use_safetensors": True,
        "trust_remote_code": False,
        "local_files_only": local_files_only,
    }
    if settings is not None:
        kwargs["quantization_config"] = bnb_config(settings, fam.name)
        if torch_dtype == "auto":
            torch_dtype = getattr(torch, settings.compute_dtype)
        if device_map is None:
            device_map = {"": 0} if torch.cuda.is_available() else "cpu"
    kwargs["dtype"] = torch_dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    return kwargs


def _check_image_seq_len(where: str, model: Any, processor: Any) -> None:
    """Idefics2: every image must become as many image tokens as the perceiver has latents."""
    n_latents = model.config.perceiver_config.resampler_n_latents
    if getattr(processor, "image_seq_len", n_latents) != n_latents:
        raise MedVQAError(
            f"{where}: processor image_seq_len={processor.image_seq_len} differs from the perceiver's "
            f"resampler_n_latents={n_latents}; every image must become exactly {n_latents} image tokens"
        )


def _family(where: str, is_dir: bool, family: str | None, local_files_only: bool) -> ModelFamily:
    """The family: given, read from a local or cached ``config.json``, else from the hub's."""
    try:
        return detect_family(where, family)
    except MedVQAError:
        if is_dir or family is not None:
            raise
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(where, trust_remote_code=False, local_files_only=local_files_only)
    except (OSError, ValueError) as exc:
        raise MedVQAError(_load_failure(where, is_dir, exc)) from exc
    return detect_family({"model_type": config.model_type}, None)


def _load_processor(
    where: str, fam: ModelFamily, image_kwargs: dict[str, Any], local_files_only: bool
) -> Any:
    """The checkpoint's processor; an image-only stand-in where transformers needs torchvision."""
    from transformers import AutoProcessor as _AutoProcessor

    auto_processor: Any = _AutoProcessor
    common = {"trust_remote_code": False, "local_files_only": local_files_only, **image_kwargs}
    if fam.name in ("qwen2_vl", "qwen2_5_vl"):
        from medvqa.models._tiny_families import image_only_qwen_processor_class

        return image_only_qwen_processor_class().from_pretrained(where, **common)
    try:
        return auto_processor.from_pretrained(where, **common)
    except (ImportError, AttributeError, ValueError) as exc:
        if fam.name != "smolvlm":
            raise
        from transformers import Idefics3Processor

        try:
            return Idefics3Processor.from_pretrained(where, **common)
        except (ImportError, AttributeError, ValueError):
            raise exc from None


def quantized_module_names(model: Any) -> list[str]:
    """Names of the modules that are bitsandbytes 4-bit or 8-bit layers, in model order."""
    return [
        name
        for name, module in model.named_modules()
        if type(module).__name__ in ("Linear4bit", "Linear8bitLt")
    ]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _source(path: str | os.PathLike[str]) -> tuple[str, bool]:
    """``(where, is_folder)``; a path that looks local but is no folder is an error here."""
    where = os.fspath(path)
    local = Path(where).expanduser()
    if local.is_dir():
        return str(local), True
    hint = (
        "give a folder written by save_pretrained (config.json, *.safetensors and the processor "
        "files), a hub id such as HuggingFaceM4/idefics2-8b, or 'tiny' on the command line"
    )
    if local.exists():
        raise MedVQAError(f"{where}: is a file, not a model folder; {hint}")
    looks_local = local.is_absolute() or where.startswith((".", "~")) or where.count("/") > 1 or "\\" in where
    if looks_local or not where.strip():
        raise MedVQAError(f"{where}: model folder not found; {hint}")
    return where, False


def _load_failure(where: str, is_dir: bool, exc: BaseException) -> str:
    if is_dir:
        return f"{where}: cannot load the model or its processor from this folder: {_one_line(exc)}"
    return (
        f"{where}: no such local folder, and the hub id could not be loaded (offline, not in the "
        f"Hugging Face cache, or no such repository): {_one_line(exc)}"
    )


def _linear_names(model: Any) -> list[str]:
    import torch

    linear_types = (torch.nn.Linear,)
    names = []
    for name, module in model.named_modules():
        if isinstance(module, linear_types) or type(module).__name__ in ("Linear4bit", "Linear8bitLt"):
            names.append(name)
    return names


def _check_keep_patterns(where: str, settings: QuantizationSettings, local_files_only: bool) -> None:
    """Refuse, before any weight is read, a keep pattern that would keep no linear layer."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    auto_model: Any = AutoModelForImageTextToText
    try:
        config = AutoConfig.from_pretrained(where, trust_remote_code=False, local_files_only=local_files_only)
    except OSError as exc:
        raise MedVQAError(_load_failure(where, Path(where).is_dir(), exc)) from exc
    with torch.device("meta"):
        skeleton = auto_model.from_config(config)
    names = _linear_names(skeleton)
    for pattern in settings.keep_modules:
        if not any(skip_pattern_matches(pattern, n) for n in names):
            raise MedVQAError(
                f"{where}: keep_modules pattern {pattern!r} matches no linear layer, so it would keep "
                "nothing unquantized; patterns match from the start of the full module name up to a "
                "dot (write 'model.connector', not 'connector') or as the end of the name ('fc1')"
            )


def _check_unquantized(where: str, model: Any, settings: QuantizationSettings, fam: ModelFamily) -> None:
    """Check that what the settings keep in full precision really was kept."""
    quantized = set(quantized_module_names(model))
    must_keep = [LM_HEAD, *fam.quantization_skip]
    if not settings.quantize_vision:
        must_keep.append(fam.vision_prefix)
    must_keep.extend(settings.keep_modules)
    wrong = sorted(n for n in quantized if any(skip_pattern_matches(p, n) for p in must_keep))
    if wrong:
        raise MedVQAError(
            f"{where}: {len(wrong)} module(s) that must stay unquantized were quantized, for example "
            f"{wrong[0]!r}; the installed transformers matches llm_int8_skip_modules differently "
            "than medvqa expects"
        )
