"""The model of a stage: the base model, the precision it trains in, its LoRA adapter and prompt."""

from __future__ import annotations

import os
from typing import Any

from medvqa._errors import MedVQAError
from medvqa._extras import needs_train_extra
from medvqa.training._config import TINY_MODEL, StageConfig


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
