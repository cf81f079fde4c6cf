"""Idefics2 models: loading, quantization, LoRA/QLoRA adapters and a tiny offline model.

Needs the ``medvqa[train]`` extra. transformers and peft are imported only when a function
that needs them is called.

Typical QLoRA setup (the paper's settings)::

    from medvqa.models import add_lora, load_idefics2, lora_report

    model, processor = load_idefics2("HuggingFaceM4/idefics2-8b", quantization="nf4")
    model = add_lora(model, preset="paper", r=8, alpha=8, dropout=0.1, init="gaussian")
    print(lora_report(model).trainable_params)
"""

from __future__ import annotations

from medvqa.models._dropout import active_dropout
from medvqa.models._loading import DType, load_idefics2, quantized_module_names
from medvqa.models._lora import (
    LORA_PRESETS,
    LoraInit,
    LoraPreset,
    LoraReport,
    LoraSettings,
    add_lora,
    check_adapter_folder,
    load_adapter,
    lora_report,
    lora_target_modules,
)
from medvqa.models._quant import (
    ComputeDType,
    QuantizationMode,
    QuantizationSettings,
    bnb_config,
    skip_modules,
    skip_pattern_matches,
)
from medvqa.models._tiny import (
    TINY_IMAGE_SEQ_LEN,
    TINY_IMAGE_SIZE,
    TinySize,
    save_tiny_idefics2,
    tiny_idefics2,
)

__all__ = [
    "LORA_PRESETS",
    "TINY_IMAGE_SEQ_LEN",
    "TINY_IMAGE_SIZE",
    "ComputeDType",
    "DType",
    "LoraInit",
    "LoraPreset",
    "LoraReport",
    "LoraSettings",
    "QuantizationMode",
    "QuantizationSettings",
    "TinySize",
    "active_dropout",
    "add_lora",
    "bnb_config",
    "check_adapter_folder",
    "load_adapter",
    "load_idefics2",
    "lora_report",
    "lora_target_modules",
    "quantized_module_names",
    "save_tiny_idefics2",
    "skip_modules",
    "skip_pattern_matches",
    "tiny_idefics2",
]
