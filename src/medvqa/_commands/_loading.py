"""The one model-loading path of the commands that generate (``predict``, ``predict-and-score``, ``ablate``).

``--model``, ``--family``, ``--adapter``, ``--quantization``, ``--dtype``, ``--device-map``,
``--seed`` (the weights of ``--model tiny``) and ``--as-run`` mean the same thing in every
command because every command resolves and loads them here. ``auto`` values are resolved
once, in :func:`model_settings`, and the resolved values are what run records hold.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ModelSettings",
    "load_command_model",
    "model_settings",
    "print_as_run_note",
    "resolve_dtype",
    "resolve_quantization",
]

TINY = "tiny"


def _cuda() -> tuple[bool, bool]:
    """``(CUDA available, bfloat16 supported)``; both false without torch."""
    try:
        import torch
    except ModuleNotFoundError:
        return False, False
    if not torch.cuda.is_available():
        return False, False
    return True, bool(torch.cuda.is_bf16_supported())


def resolve_quantization(requested: str, *, cuda: bool | None = None) -> str:
    """The quantization a command loads with: ``auto`` is nf4 on a CUDA machine, none on a CPU.

    bitsandbytes' 4-bit layers are the paper's QLoRA base and need a GPU; on a CPU they would
    be slow or unavailable, so ``auto`` loads the full-precision model there.

    >>> resolve_quantization("auto", cuda=False), resolve_quantization("auto", cuda=True)
    ('none', 'nf4')
    >>> resolve_quantization("int8", cuda=False)
    'int8'
    """
    if requested != "auto":
        return requested
    if cuda is None:
        cuda = _cuda()[0]
    return "nf4" if cuda else "none"


def resolve_dtype(requested: str, *, cuda: bool | None = None, bf16: bool | None = None) -> str:
    """The dtype a command loads with: ``auto`` is bfloat16 on GPUs that support it, float16 on
    other GPUs and float32 on a CPU (half precision is slow or unsupported there).

    >>> resolve_dtype("auto", cuda=False), resolve_dtype("auto", cuda=True, bf16=False)
    ('float32', 'float16')
    >>> resolve_dtype("float16", cuda=False)
    'float16'
    """
    if requested != "auto":
        return requested
    if cuda is None or bf16 is None:
        cuda, bf16 = _cuda()
    if not cuda:
        return "float32"
    return "bfloat16" if bf16 else "float16"


@dataclass(frozen=True)
class ModelSettings:
    """What a command loads, every ``auto`` resolved.

    Attributes:
        model: ``--model`` (``tiny``, a folder or a hub id).
        family: ``--family`` (``None``: detected).
        adapter: ``--adapter`` folder, or ``None``.
        quantization: ``none``, ``nf4``, ``fp4`` or ``int8``.
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        device_map: ``--device-map``, or ``None`` for the default.
        seed: Weights seed of ``--model tiny``.
        as_run: ``--as-run`` (the paper's loading, flaws included).
    """

    model: str
    family: str | None
    adapter: Path | None
    quantization: str
    dtype: str
    device_map: Any
    seed: int
    as_run: bool = False

    def record(self) -> dict[str, Any]:
        """The loading facts a run record holds."""
        return {
            "model": self.model,
            "family": self.family,
            "adapter": None if self.adapter is None else str(self.adapter),
            "quantization": self.quantization,
            "dtype": self.dtype,
            "seed": self.seed if self.model == TINY else None,
        }


def model_settings(args: argparse.Namespace) -> ModelSettings:
    """Resolve the model options of ``args`` (``--as-run`` replaces quantization and dtype).

    Raises:
        ValueError: ``--model`` is missing, or an adapter folder lacks its files.
    """
    if not args.model:
        raise ValueError("--model is required (a folder, a hub id or 'tiny')")
    adapter = getattr(args, "adapter", None)
    if adapter is not None:
        from medvqa.models import check_adapter_folder

        check_adapter_folder(adapter)  # fail before a large model is loaded
    as_run = bool(getattr(args, "as_run", False))
    quantization = resolve_quantization(getattr(args, "quantization", "auto"))
    dtype = resolve_dtype(getattr(args, "dtype", "auto"))
    if as_run:
        from medvqa.training import as_run_loading

        quantization, _ = as_run_loading(adapter)
        dtype = "float16" if _cuda()[0] else "float32"  # the paper's fp16; a CPU computes in fp32
    return ModelSettings(
        model=args.model,
        family=getattr(args, "family", None),
        adapter=adapter,
        quantization=quantization,
        dtype=dtype,
        device_map=getattr(args, "device_map", None),
        seed=int(getattr(args, "seed", 0) or 0),
        as_run=as_run,
    )


def _device_map(requested: Any) -> Any:
    """``--device-map``, else one whole model on this process's GPU on a CUDA machine, else ``None``."""
    if requested is not None:
        return requested
    from medvqa._distributed import default_device_map

    launched = default_device_map()
    if launched is not None:
        return launched
    return {"": 0} if _cuda()[0] else None


def load_command_model(settings: ModelSettings) -> tuple[Any, Any]:
    """Load the model of ``settings`` and attach its adapter (eval mode, LoRA dropout off).

    Returns:
        ``(model, processor)``.
    """
    from medvqa.models import QuantizationSettings, load_adapter, load_model, save_tiny_model, tiny_model

    quantization = None
    if settings.quantization != "none":
        quantization = QuantizationSettings(
            mode=settings.quantization,  # type: ignore[arg-type]
            compute_dtype=settings.dtype,  # type: ignore[arg-type]
        )
    family = settings.family or ("idefics2" if settings.model == TINY else None)
    device_map = _device_map(settings.device_map)
    if settings.model == TINY and quantization is None and settings.dtype == "float32" and device_map is None:
        model, processor = tiny_model(family or "idefics2", seed=settings.seed)
    else:
        with tempfile.TemporaryDirectory(prefix="medvqa-tiny-") as tmp:
            path: Any = settings.model
            if settings.model == TINY:  # quantizing goes through the loader, as for a real checkpoint
                path = save_tiny_model(tmp, family or "idefics2", seed=settings.seed)
            model, processor = load_model(
                path,
                family=family,
                quantization=quantization,
                dtype=settings.dtype,  # type: ignore[arg-type]
                device_map=device_map,
            )
    if settings.adapter is not None:
        model = load_adapter(model, settings.adapter)
    return model, processor


def print_as_run_note(settings: ModelSettings) -> str:
    """Print (and return) the line every ``--as-run`` run records."""
    from medvqa.training import AS_RUN_NOTE

    print(f"{AS_RUN_NOTE} (quantization {settings.quantization}, dtype {settings.dtype})", file=sys.stderr)
    return AS_RUN_NOTE
