"""Vision-language models: families, loading, quantization, LoRA/QLoRA adapters, tiny offline models.

Every supported architecture is one :class:`ModelFamily` entry of :data:`FAMILIES`
(Idefics2, the paper's model, is the reference; Idefics3/SmolVLM, Qwen2-VL/Qwen2.5-VL,
Gemma 3/MedGemma and LLaVA/LLaVA-NeXT follow the same pipeline).

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
from medvqa.models._families import (
    FAMILIES,
    LORA_PRESET_NAMES,
    ModelFamily,
    chat_template,
    detect_family,
    family_of_model,
    family_of_processor,
    get_family,
)
from medvqa.models._loading import DType, load_idefics2, load_model, quantized_module_names
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
from medvqa.models._tiny_families import save_tiny_model, tiny_model

__all__ = [
    "FAMILIES",
    "LORA_PRESETS",
    "LORA_PRESET_NAMES",
    "TINY_IMAGE_SEQ_LEN",
    "TINY_IMAGE_SIZE",
    "ComputeDType",
    "DType",
    "LoraInit",
    "LoraPreset",
    "LoraReport",
    "LoraSettings",
    "ModelFamily",
    "QuantizationMode",
    "QuantizationSettings",
    "TinySize",
    "active_dropout",
    "add_lora",
    "bnb_config",
    "chat_template",
    "check_adapter_folder",
    "detect_family",
    "family_of_model",
    "family_of_processor",
    "get_family",
    "load_adapter",
    "load_idefics2",
    "load_model",
    "lora_report",
    "lora_target_modules",
    "quantized_module_names",
    "save_tiny_idefics2",
    "save_tiny_model",
    "skip_modules",
    "skip_pattern_matches",
    "tiny_idefics2",
    "tiny_model",
]
