"""Loading Idefics2 checkpoints (optionally quantized) with their processor."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medvqa._errors import MedVQAError
from medvqa.models._quant import QuantizationMode, QuantizationSettings, bnb_config

if TYPE_CHECKING:
    import torch

__all__ = ["DType", "load_idefics2", "quantized_module_names"]

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

    Weights are read only from safetensors files and remote code is never trusted. The
    model is returned in ``eval`` mode.

    Args:
        path: A folder written by ``save_pretrained`` (for example by
            :func:`medvqa.models.save_tiny_idefics2`), or a hub id such as
            ``HuggingFaceM4/idefics2-8b``.
        quantization: ``None`` (full precision), ``"nf4"`` (the paper's QLoRA base),
            ``"fp4"``, ``"int8"``, or full :class:`QuantizationSettings`.
        dtype: Dtype of the unquantized weights. With ``auto`` and quantization, the
            settings' compute dtype is used.
        device_map: Passed to ``from_pretrained`` (``"auto"``, ``"cpu"``, ``{"": 0}``...).
            Quantized models default to ``"auto"`` on a GPU, ``"cpu"`` otherwise.
        do_image_splitting: The processor's image splitting (off in the paper: one image
            is 64 image tokens for the real model).
        attn_implementation: ``"eager"``, ``"sdpa"``, ... (``None``: transformers' default).
        local_files_only: Never reach the network (default: when ``path`` is a folder, or
            ``HF_HUB_OFFLINE`` is set).

    Returns:
        ``(model, processor)``.

    Raises:
        MedVQAError: The folder has no safetensors weights, or the processor's
            ``image_seq_len`` differs from the perceiver's ``resampler_n_latents``.
    """
    import torch
    from transformers import AutoModelForImageTextToText
    from transformers import AutoProcessor as _AutoProcessor

    auto_processor: Any = _AutoProcessor

    where = os.fspath(path)
    is_dir = Path(where).is_dir()
    if is_dir and not any(Path(where).glob("*.safetensors")):
        raise MedVQAError(
            f"{where}: no *.safetensors weights found; medvqa loads weights only from safetensors "
            "(convert .bin checkpoints with transformers' save_pretrained(safe_serialization=True))"
        )
    if local_files_only is None:
        local_files_only = is_dir or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    kwargs: dict[str, Any] = {
        "use_safetensors": True,
        "trust_remote_code": False,
        "local_files_only": local_files_only,
    }
    settings: QuantizationSettings | None
    settings = QuantizationSettings(mode=quantization) if isinstance(quantization, str) else quantization
    torch_dtype = _dtype(dtype)
    if settings is not None:
        kwargs["quantization_config"] = bnb_config(settings)
        if torch_dtype == "auto":
            torch_dtype = getattr(torch, settings.compute_dtype)
        if device_map is None:
            device_map = {"": 0} if torch.cuda.is_available() else "cpu"
    kwargs["dtype"] = torch_dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model: Any = AutoModelForImageTextToText.from_pretrained(where, **kwargs)
    processor = auto_processor.from_pretrained(
        where,
        do_image_splitting=do_image_splitting,
        trust_remote_code=False,
        local_files_only=local_files_only,
    )
    n_latents = model.config.perceiver_config.resampler_n_latents
    if getattr(processor, "image_seq_len", n_latents) != n_latents:
        raise MedVQAError(
            f"{where}: processor image_seq_len={processor.image_seq_len} differs from the perceiver's "
            f"resampler_n_latents={n_latents}; every image must become exactly {n_latents} image tokens"
        )
    model.eval()
    return model, processor


def quantized_module_names(model: Any) -> list[str]:
    """Names of the modules that are bitsandbytes 4-bit or 8-bit layers, in model order."""
    return [
        name
        for name, module in model.named_modules()
        if type(module).__name__ in ("Linear4bit", "Linear8bitLt")
    ]
