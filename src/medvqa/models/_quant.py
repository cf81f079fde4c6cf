"""bitsandbytes quantization settings (NF4 as in the paper, or int8), with each family's skip list."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from medvqa._extras import needs_train_extra

__all__ = [
    "ComputeDType",
    "QuantizationMode",
    "QuantizationSettings",
    "bnb_config",
    "skip_modules",
    "skip_pattern_matches",
]

QuantizationMode = Literal["nf4", "fp4", "int8"]
"""``nf4``/``fp4``: 4-bit bitsandbytes layers (QLoRA); ``int8``: LLM.int8() layers."""

ComputeDType = Literal["float16", "bfloat16", "float32"]
"""Dtype of the matrix products of 4-bit layers."""

LM_HEAD = "lm_head"
VISION_ENCODER = "model.vision_model"

KERNEL_HUB_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"
"""Start of the warning that bitsandbytes logs when it is imported on a CPU with AVX512-BF16.

There bitsandbytes first tries an optional, downloaded kernel (the ``kernels`` package and
the Hugging Face Hub) and, when that fails, uses its own built-in AVX512-BF16 kernel.
medvqa never downloads code, so the attempt fails and the warning would appear on every
4-bit CPU run; :mod:`medvqa.models` drops exactly this message (and no other) from the
logger ``bitsandbytes.backends.cpu.ops``.
"""


class _DropKernelHubNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(KERNEL_HUB_NOTICE)


def _quiet_kernel_hub_notice() -> None:
    """Install the filter (once) before bitsandbytes creates its logger, or after."""
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if not any(isinstance(f, _DropKernelHubNotice) for f in logger.filters):
        logger.addFilter(_DropKernelHubNotice())


_quiet_kernel_hub_notice()


def keep_4bit_weights_unpacked(model: Any) -> int:
    """Make the 4-bit layers of a model with a LoRA adapter take bitsandbytes' plain CPU path.

    On a CPU with AVX512-BF16, bitsandbytes (0.50) repacks a 4-bit layer's weight
    for a faster kernel the first time the layer runs in ``eval`` mode without gradients,
    and unpacks it again whenever ``state_dict()`` is called (saving an adapter does). That
    round trip rounds the scales to bfloat16 and, in bitsandbytes 0.50, leaves them in the
    packed order, so the layer computes something else afterwards; peft's merge cannot read
    packed weights either. A model being trained is evaluated and saved in turns, and an
    adapter must compute on reload exactly what it computed when saved, so
    :func:`~medvqa.models.add_lora` and :func:`~medvqa.models.load_adapter` call this: their
    layers never pack. A layer already packed is unpacked here with its scales put back in
    order (they keep the bfloat16 rounding that inference already used). Layers on a GPU,
    and CPUs without AVX512-BF16, are unaffected.

    Args:
        model: Any model; modules other than bitsandbytes ``Linear4bit`` are left alone.

    Returns:
        The number of ``Linear4bit`` layers seen.
    """
    n = 0
    for module in model.modules():
        if type(module).__name__ not in ("Linear4bit", "LinearNF4", "LinearFP4"):
            continue
        n += 1
        module.support_avx512bf16_for_cpu = False
        state = getattr(module.weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            _unpack(module)
    return n


def _unpack(module: Any) -> None:
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    state = module.weight.quant_state
    nested = bool(getattr(state, "original_nested", False))
    n_out, k_in = state.shape
    module.weight.data, state = _convert_weight_packed_for_cpu_inverse(module.weight.data, state)
    if not nested:  # bitsandbytes leaves these as [K / blocksize, N] bfloat16
        state.absmax = state.absmax.reshape(k_in // state.blocksize, n_out).t().reshape(-1).float()
    module.weight.quant_state = state


@dataclass(frozen=True)
class QuantizationSettings:
    """How the base model's linear layers are quantized.

    The defaults are the paper's: NF4, no double quantization, float16 compute, every
    linear layer quantized except ``lm_head`` (bfloat16 compute is the better choice on
    Ampere and newer GPUs; float32 on CPUs).

    Attributes:
        mode: ``nf4`` (paper), ``fp4`` or ``int8``.
        compute_dtype: Compute dtype of 4-bit layers.
        double_quant: Quantize the quantization constants too (the paper did not).
        quantize_vision: Quantize the SigLIP vision encoder as well (the paper did);
            ``False`` keeps it in ``dtype``.
        keep_modules: More module-name patterns to keep unquantized. transformers'
            bitsandbytes integration reads them as regular expressions matched from the
            *start* of each linear layer's full name up to a dot boundary (write
            ``model.connector``, not ``connector``), or as a suffix of that name (``fc1``);
            see :func:`skip_pattern_matches`. :func:`~medvqa.models.load_idefics2` refuses
            a pattern that keeps no linear layer of the model, instead of ignoring it.

    >>> QuantizationSettings().to_dict()["mode"]
    'nf4'
    >>> QuantizationSettings.from_dict({"mode": "int8", "quantize_vision": False}).quantize_vision
    False
    """

    mode: QuantizationMode = "nf4"
    compute_dtype: ComputeDType = "float16"
    double_quant: bool = False
    quantize_vision: bool = True
    keep_modules: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in get_args(QuantizationMode):
            raise ValueError(
                f"quantization mode must be one of {get_args(QuantizationMode)}, got {self.mode!r}"
            )
        if self.compute_dtype not in get_args(ComputeDType):
            raise ValueError(
                f"compute_dtype must be one of {get_args(ComputeDType)}, got {self.compute_dtype!r}"
            )
        object.__setattr__(self, "keep_modules", tuple(self.keep_modules))
        for pattern in self.keep_modules:
            if not isinstance(pattern, str) or not pattern:
                raise ValueError(f"keep_modules must hold non-empty strings, got {pattern!r}")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"keep_modules pattern {pattern!r} is not a valid regular expression: {exc}"
                ) from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict that :meth:`from_dict` reads back."""
        return {
            "mode": self.mode,
            "compute_dtype": self.compute_dtype,
            "double_quant": self.double_quant,
            "quantize_vision": self.quantize_vision,
            "keep_modules": list(self.keep_modules),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantizationSettings:
        """Build settings from :meth:`to_dict` output (missing keys take the defaults).

        Raises:
            ValueError: An unknown key or an invalid value.
        """
        known = {"mode", "compute_dtype", "double_quant", "quantize_vision", "keep_modules"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"unknown quantization settings {sorted(unknown)}; valid keys are {sorted(known)}"
            )
        kwargs = dict(data)
        if "keep_modules" in kwargs:
            kwargs["keep_modules"] = tuple(kwargs["keep_modules"])
        return cls(**kwargs)


_BOUNDARY = r"(?:(?<=\.)|(?=\.|$))"


def skip_pattern_matches(pattern: str, module_name: str) -> bool:
    """Whether a bitsandbytes skip pattern keeps the module ``module_name`` unquantized.

    Mirrors how transformers 5 matches ``llm_int8_skip_modules`` (its
    ``should_convert_module``): the pattern is a regular expression matched from the start
    of the full module name and ending at a dot boundary, or a plain suffix of the name.
    A pattern that names a module by its last part only (``vision_model``) therefore keeps
    nothing below it.

    >>> skip_pattern_matches("model.vision_model", "model.vision_model.encoder.layers.0.mlp.fc1")
    True
    >>> skip_pattern_matches("vision_model", "model.vision_model.encoder.layers.0.mlp.fc1")
    False
    >>> skip_pattern_matches("lm_head", "lm_head"), skip_pattern_matches("fc1", "model.vision_model.encoder.layers.0.mlp.fc1")
    (True, True)
    >>> skip_pattern_matches("model.text_model.layers.1", "model.text_model.layers.11.mlp.up_proj")
    False
    """
    return bool(re.match(rf"(?:{pattern}){_BOUNDARY}", module_name)) or module_name.endswith(pattern)


def skip_modules(settings: QuantizationSettings, family: str | None = None) -> list[str]:
    """The module-name patterns bitsandbytes must leave unquantized.

    ``lm_head`` is always listed: giving bitsandbytes any list replaces its default skip
    of ``lm_head``. The family's own skip list and, with ``quantize_vision=False``, its
    vision encoder follow.

    Args:
        settings: The quantization settings.
        family: The model family (default: ``idefics2``).

    >>> skip_modules(QuantizationSettings(quantize_vision=False))
    ['lm_head', 'model.vision_model']
    >>> skip_modules(QuantizationSettings(quantize_vision=False), family="qwen2_5_vl")
    ['lm_head', 'model.visual.blocks']
    """
    from medvqa.models._families import get_family

    fam = get_family(family or "idefics2")
    out = [LM_HEAD, *(p for p in fam.quantization_skip if p != LM_HEAD)]
    if not settings.quantize_vision:
        out.append(fam.vision_prefix)
    out.extend(p for p in settings.keep_modules if p not in out)
    return out


@needs_train_extra
def bnb_config(settings: QuantizationSettings | QuantizationMode, family: str | None = None) -> Any:
    """The ``transformers.BitsAndBytesConfig`` for these settings.

    Args:
        settings: Settings, or just a mode (other settings at their defaults).
        family: The model family whose skip list applies (default: ``idefics2``).
    """
    import torch
    from transformers import BitsAndBytesConfig as _BitsAndBytesConfig

    bnb_cls: Any = _BitsAndBytesConfig

    if isinstance(settings, str):
        settings = QuantizationSettings(mode=settings)
    skips = skip_modules(settings, family)
    if settings.mode == "int8":
        return bnb_cls(load_in_8bit=True, llm_int8_skip_modules=skips)
    return bnb_cls(
        load_in_4bit=True,
        bnb_4bit_quant_type=settings.mode,
        bnb_4bit_use_double_quant=settings.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, settings.compute_dtype),
        llm_int8_skip_modules=skips,
    )
