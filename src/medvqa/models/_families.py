"""Model families: one declarative entry per vision-language architecture medvqa supports.

A :class:`ModelFamily` says everything the rest of medvqa needs to know about an
architecture: its transformers classes, its chat template (the one its checkpoints ship,
rendered by the processor itself), which tokens are image placeholders (never supervised),
which tokens end a turn (generation stops on them; the training target holds exactly one),
its LoRA presets as anchored regexes over module names, what quantization must skip, its
default image settings, whether a question may come without an image, and which extra
processor outputs a collator must keep.

This module imports neither torch nor transformers.

>>> get_family("qwen2_5_vl").end_of_turn
'<|im_end|>'
>>> sorted(FAMILIES)[:3]
['gemma3', 'idefics2', 'idefics3']
>>> get_family("blip2")
Traceback (most recent call last):
...
medvqa._errors.MedVQAError: unsupported model family 'blip2'; supported: gemma3, idefics2, idefics3, llava, llava_next, qwen2_5_vl, qwen2_vl, smolvlm
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from medvqa._errors import MedVQAError

__all__ = [
    "FAMILIES",
    "LORA_PRESET_NAMES",
    "ModelFamily",
    "chat_template",
    "detect_family",
    "family_of_model",
    "family_of_processor",
    "get_family",
]

LORA_PRESET_NAMES: tuple[str, ...] = ("paper", "llm_only", "connector_only", "all_linear")
"""Built-in LoRA presets every family defines."""

_PROJ = r"(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)"
_SIGLIP = r"encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])"


def _lm(prefix: str) -> str:
    return rf"{prefix}\.layers\.\d+\.{_PROJ}"


@dataclass(frozen=True)
class ModelFamily:
    """What medvqa needs to know about one vision-language architecture.

    Attributes:
        name: The family name (``--family NAME``), equal to its main ``model_type``.
        model_types: ``config.json`` ``model_type`` values detected as this family.
        model_class: The transformers model class.
        processor_class: The processor class medvqa drives the model with.
        image_processor_class: The image processor class used (a PIL one: no torchvision).
        examples: Example checkpoints on the Hugging Face hub.
        flagship: The checkpoint whose configuration the real-size shape tests use.
        template: Name of the bundled chat template (:func:`chat_template`).
        template_source: Where the bundled template was copied from.
        image_tokens: Tokens that stand for or frame an image; never supervised.
        end_of_turn: The token that ends the assistant's turn; the training target holds
            exactly one.
        stop_tokens: Generation stops on any of these.
        append_end_of_turn: The chat template ends the assistant turn with whitespace, not
            :attr:`end_of_turn` (LLaVA-1.5); the collator then replaces that trailing
            whitespace by the token, as the original LLaVA training format did, or the model
            would never learn to stop.
        lora_presets: Preset name -> regex matched in full (``re.fullmatch``, as peft does)
            against module names.
        lora_target_parameters: Preset name -> parameter names adapted with peft's
            ``target_parameters`` (a connector that is a bare weight, not a Linear layer;
            peft then needs ``dropout=0``).
        lora_modules_to_save: Preset name -> modules trained in full (and saved with the
            adapter) next to the LoRA layers.
        vision_prefix: Module prefix of the vision encoder's layers (never adapted by
            ``paper``; kept unquantized with ``quantize_vision=False``).
        quantization_skip: Module patterns quantization always keeps in full precision.
        image_settings: Image processor settings medvqa loads checkpoints with by default.
        image_tokens_per_image: Image tokens per image at the released settings (docs).
        recommended_resolution: The resolution the released checkpoints work at (docs).
        qlora_memory: Approximate GPU memory of NF4 QLoRA on the flagship, batch 1 (docs).
        text_only: Whether a question may be asked without an image.
        extra_inputs: Processor outputs besides ``input_ids``/``attention_mask``/
            ``pixel_values`` that the model needs and collators must keep.
        per_token_inputs: Those of :attr:`extra_inputs` that have one value per token
            (padded and truncated with the ids).
        nested_images: The processor takes images as one list per sample (else flat).
        expands_images_from_text: The processor expands each image placeholder into the
            same image tokens whatever the image (at :attr:`image_settings`), so a prompt
            can be tokenized without its image.
    """

    name: str
    model_types: tuple[str, ...]
    model_class: str
    processor_class: str
    image_processor_class: str
    examples: tuple[str, ...]
    flagship: str
    template: str
    template_source: str
    image_tokens: tuple[str, ...]
    end_of_turn: str
    stop_tokens: tuple[str, ...]
    lora_presets: Mapping[str, str]
    vision_prefix: str
    image_tokens_per_image: str
    recommended_resolution: str
    qlora_memory: str
    append_end_of_turn: bool = False
    lora_target_parameters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    lora_modules_to_save: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    quantization_skip: tuple[str, ...] = ("lm_head",)
    image_settings: Mapping[str, Any] = field(default_factory=dict)
    text_only: bool = True
    extra_inputs: tuple[str, ...] = ()
    per_token_inputs: tuple[str, ...] = ()
    nested_images: bool = True
    expands_images_from_text: bool = False

    def __post_init__(self) -> None:
        missing = [p for p in LORA_PRESET_NAMES if p not in self.lora_presets]
        if missing:
            raise ValueError(f"model family {self.name!r}: LoRA presets {missing} are missing")
        if self.end_of_turn not in self.stop_tokens:
            raise ValueError(f"model family {self.name!r}: end_of_turn must be one of the stop tokens")

    def lora_target(self, preset: str) -> str:
        """The regex of a built-in preset.

        >>> get_family("llava").lora_target("connector_only")
        'model\\\\.multi_modal_projector\\\\.linear_[12]'
        """
        if preset not in self.lora_presets:
            raise ValueError(
                f"unknown LoRA preset {preset!r} for family {self.name!r}; presets are "
                f"{', '.join(self.lora_presets)}"
            )
        return self.lora_presets[preset]

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly description (``medvqa models`` prints it)."""
        return {
            "family": self.name,
            "model_types": list(self.model_types),
            "model_class": self.model_class,
            "processor_class": self.processor_class,
            "examples": list(self.examples),
            "flagship": self.flagship,
            "chat_template": self.template,
            "template_source": self.template_source,
            "image_tokens_per_image": self.image_tokens_per_image,
            "recommended_resolution": self.recommended_resolution,
            "image_settings": dict(self.image_settings),
            "end_of_turn": self.end_of_turn,
            "stop_tokens": list(self.stop_tokens),
            "text_only": self.text_only,
            "lora_presets": dict(self.lora_presets),
            "lora_target_parameters": {k: list(v) for k, v in self.lora_target_parameters.items()},
            "lora_modules_to_save": {k: list(v) for k, v in self.lora_modules_to_save.items()},
            "quantization_skip": list(self.quantization_skip),
            "extra_inputs": list(self.extra_inputs),
        }


def _presets(lm: str, connector: str, all_linear: str, *, paper: str | None = None) -> dict[str, str]:
    return {
        "paper": paper if paper is not None else rf"{lm}|{connector}",
        "llm_only": lm,
        "connector_only": connector,
        "all_linear": all_linear,
    }


_I2_LM = _lm(r"model\.text_model")
_I2_CONNECTOR = (
    r"model\.connector\.(modality_projection\.(gate|up|down)_proj"
    rf"|perceiver_resampler\.layers\.\d+\.{_PROJ})"
)
_I2_PAPER_PROJ = "(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj)"

_IDEFICS2 = ModelFamily(
    name="idefics2",
    model_types=("idefics2",),
    model_class="Idefics2ForConditionalGeneration",
    processor_class="Idefics2Processor",
    image_processor_class="Idefics2ImageProcessorPil",
    examples=("HuggingFaceM4/idefics2-8b", "HuggingFaceM4/idefics2-8b-chatty"),
    flagship="HuggingFaceM4/idefics2-8b",
    template="idefics2",
    template_source="chat_template of HuggingFaceM4/idefics2-8b-chatty processor_config.json",
    image_tokens=("<image>", "<fake_token_around_image>"),
    end_of_turn="<end_of_utterance>",
    stop_tokens=("<end_of_utterance>", "</s>"),
    # the paper's published regexes (unanchored) stay this family's presets; they adapt the
    # same modules as the anchored LM / connector regexes (tested)
    lora_presets={
        "paper": rf".*(text_model|modality_projection|perceiver_resampler).*{_I2_PAPER_PROJ}.*$",
        "llm_only": rf".*text_model.*{_I2_PAPER_PROJ}$",
        "connector_only": rf".*(modality_projection|perceiver_resampler).*{_I2_PAPER_PROJ}$",
        "all_linear": rf"model\.(vision_model\.{_SIGLIP}|{_I2_CONNECTOR[7:]}|{_I2_LM[7:]})",
    },
    vision_prefix="model.vision_model",
    image_settings={"do_image_splitting": False},
    image_tokens_per_image="64 (x5 with image splitting)",
    recommended_resolution="378-980 px (shortest/longest edge), no splitting",
    qlora_memory="about 10-12 GB (NF4, bs 1, 8B)",
    extra_inputs=("pixel_attention_mask",),
    expands_images_from_text=True,
)

_I3_LM = _lm(r"model\.text_model")
_I3_CONNECTOR = r"model\.connector\.modality_projection\.proj"
_I3_ALL = rf"model\.(vision_model\.{_SIGLIP}|connector\.modality_projection\.proj|{_I3_LM[7:]})"
_I3_TOKENS = (
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
)

_I3_COMMON: dict[str, Any] = {
    "image_processor_class": "Idefics3ImageProcessorPil",
    "template": "smolvlm",
    "image_tokens": _I3_TOKENS,
    "end_of_turn": "<end_of_utterance>",
    "stop_tokens": ("<end_of_utterance>",),
    "lora_presets": _presets(_I3_LM, _I3_CONNECTOR, _I3_ALL),
    "vision_prefix": "model.vision_model",
    # the released preprocessors split every image into up to 17 tiles; medvqa's default does not
    "image_settings": {"do_image_splitting": False},
    "extra_inputs": ("pixel_attention_mask",),
}

_IDEFICS3 = ModelFamily(
    name="idefics3",
    model_types=("idefics3",),
    model_class="Idefics3ForConditionalGeneration",
    processor_class="Idefics3Processor",
    examples=(
        "HuggingFaceM4/Idefics3-8B-Llama3",
        "HuggingFaceTB/SmolVLM-256M-Instruct",
        "HuggingFaceTB/SmolVLM-500M-Instruct",
        "HuggingFaceTB/SmolVLM-Instruct",
    ),
    flagship="HuggingFaceM4/Idefics3-8B-Llama3",
    template_source="chat_template.json of HuggingFaceTB/SmolVLM-500M-Instruct (Idefics3-8B: same with <|begin_of_text|>)",
    image_tokens_per_image="169 (Idefics3-8B) / 81 (SmolVLM 2.2B) / 64 (256M, 500M) unsplit; x17 tiles split",
    recommended_resolution="one 364-512 px tile (unsplit); 1456-2048 px longest edge split",
    qlora_memory="about 10-12 GB (Idefics3-8B); under 4 GB (SmolVLM 256M/500M)",
    **_I3_COMMON,
)

_SMOLVLM = ModelFamily(
    name="smolvlm",
    model_types=("smolvlm",),
    model_class="SmolVLMForConditionalGeneration",
    processor_class="Idefics3Processor (SmolVLMProcessor needs torchvision)",
    examples=(
        "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
        "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
        "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
    ),
    flagship="HuggingFaceTB/SmolVLM2-2.2B-Instruct",
    template_source="chat_template.json of HuggingFaceTB/SmolVLM2-2.2B-Instruct",
    image_tokens_per_image="64 (256M, 500M) / 81 (2.2B) unsplit; x17 tiles split",
    recommended_resolution="one 384-512 px tile (unsplit)",
    qlora_memory="under 4 GB (256M/500M); about 5 GB (2.2B)",
    **_I3_COMMON,
)

_QWEN_LM = _lm(r"model\.language_model")
_QWEN_CONNECTOR = r"model\.visual\.merger\.mlp\.[02]"
_QWEN_TOKENS = ("<|image_pad|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|vision_pad|>")
_QWEN_COMMON: dict[str, Any] = {
    "template_source": "chat_template of Qwen/Qwen2-VL-2B-Instruct and Qwen/Qwen2.5-VL-7B-Instruct",
    "image_tokens": _QWEN_TOKENS,
    "end_of_turn": "<|im_end|>",
    "stop_tokens": ("<|im_end|>", "<|endoftext|>"),
    # the connector (model.visual.merger) lives inside model.visual: the encoder proper is the blocks
    "vision_prefix": "model.visual.blocks",
    "image_tokens_per_image": "h*w/28^2 after resizing to multiples of 28: 224^2 -> 64, 512^2 -> 324",
    "recommended_resolution": "native (dynamic, 3136 to 12845056 pixels as released); cap the pixels for large scans",
    "extra_inputs": ("image_grid_thw", "mm_token_type_ids"),
    "per_token_inputs": ("mm_token_type_ids",),
    "nested_images": False,
    "processor_class": "Qwen2_5_VLProcessor (an image-only subclass without torchvision)",
    "image_processor_class": "Qwen2VLImageProcessorPil",
}

_QWEN2_VL = ModelFamily(
    name="qwen2_vl",
    model_types=("qwen2_vl",),
    model_class="Qwen2VLForConditionalGeneration",
    examples=("Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-7B-Instruct"),
    flagship="Qwen/Qwen2-VL-7B-Instruct",
    template="qwen2_vl",
    lora_presets=_presets(
        _QWEN_LM,
        _QWEN_CONNECTOR,
        rf"model\.(visual\.(blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12])|merger\.mlp\.[02])|{_QWEN_LM[7:]})",
    ),
    qlora_memory="about 10 GB (7B)",
    **_QWEN_COMMON,
)

_QWEN2_5_VL = ModelFamily(
    name="qwen2_5_vl",
    model_types=("qwen2_5_vl",),
    model_class="Qwen2_5_VLForConditionalGeneration",
    examples=(
        "Qwen/Qwen2.5-VL-3B-Instruct",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        "FreedomIntelligence/HuatuoGPT-Vision-7B-Qwen2.5VL",
    ),
    flagship="Qwen/Qwen2.5-VL-7B-Instruct",
    template="qwen2_5_vl",
    lora_presets=_presets(
        _QWEN_LM,
        _QWEN_CONNECTOR,
        rf"model\.(visual\.(blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(gate|up|down)_proj)|merger\.mlp\.[02])|{_QWEN_LM[7:]})",
    ),
    qlora_memory="about 10 GB (7B)",
    **_QWEN_COMMON,
)

_GEMMA_LM = _lm(r"model\.language_model")
_GEMMA_CONNECTOR_WEIGHT = "model.multi_modal_projector.mm_input_projection_weight"

_GEMMA3 = ModelFamily(
    name="gemma3",
    model_types=("gemma3",),
    model_class="Gemma3ForConditionalGeneration",
    processor_class="Gemma3Processor",
    image_processor_class="Gemma3ImageProcessorPil",
    examples=("google/gemma-3-4b-it", "google/gemma-3-12b-it", "google/medgemma-4b-it"),
    flagship="google/gemma-3-4b-it",
    template="gemma3",
    template_source="transformers' convert_gemma3_weights.py (MedGemma's own template not verified)",
    image_tokens=("<start_of_image>", "<image_soft_token>", "<end_of_image>"),
    end_of_turn="<end_of_turn>",
    stop_tokens=("<end_of_turn>", "<eos>"),
    # the connector is a bare weight (no Linear): `paper` trains it in full next to the LM's
    # LoRA (peft's modules_to_save); `connector_only` adapts the weight through peft's
    # target_parameters, which peft allows only without LoRA dropout
    lora_presets=_presets(
        _GEMMA_LM,
        r"(?!)",
        rf"model\.(vision_tower\.{_SIGLIP}|{_GEMMA_LM[7:]})",
        paper=_GEMMA_LM,
    ),
    lora_target_parameters={"connector_only": (_GEMMA_CONNECTOR_WEIGHT,)},
    lora_modules_to_save={"paper": ("multi_modal_projector",)},
    vision_prefix="model.vision_tower",
    image_settings={"do_pan_and_scan": False},
    image_tokens_per_image="256 (fixed)",
    recommended_resolution="896 x 896 (aspect ratio not kept)",
    qlora_memory="about 6-8 GB (4B)",
    extra_inputs=("token_type_ids",),
    per_token_inputs=("token_type_ids",),
)

_LLAVA_LM = _lm(r"model\.language_model")
_LLAVA_CONNECTOR = r"model\.multi_modal_projector\.linear_[12]"
_CLIP = r"encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])"
_LLAVA_ALL = rf"model\.(vision_tower\.{_CLIP}|multi_modal_projector\.linear_[12]|{_LLAVA_LM[7:]})"

_LLAVA_COMMON: dict[str, Any] = {
    "image_tokens": ("<image>",),
    "end_of_turn": "</s>",
    "stop_tokens": ("</s>",),
    "lora_presets": _presets(_LLAVA_LM, _LLAVA_CONNECTOR, _LLAVA_ALL),
    "vision_prefix": "model.vision_tower",
    "nested_images": False,
}

_LLAVA = ModelFamily(
    name="llava",
    model_types=("llava",),
    model_class="LlavaForConditionalGeneration",
    processor_class="LlavaProcessor",
    image_processor_class="LlavaImageProcessorPil",
    examples=("llava-hf/llava-1.5-7b-hf", "Isotr0py/HuatuoGPT-Vision-7B-hf"),
    flagship="llava-hf/llava-1.5-7b-hf",
    template="llava",
    template_source="chat_template.json of llava-hf/llava-1.5-7b-hf (with the generation tag)",
    append_end_of_turn=True,
    image_tokens_per_image="576",
    recommended_resolution="336 x 336 (shortest edge resized, centre crop)",
    qlora_memory="about 8-10 GB (7B)",
    **_LLAVA_COMMON,
)

_LLAVA_NEXT = ModelFamily(
    name="llava_next",
    model_types=("llava_next",),
    model_class="LlavaNextForConditionalGeneration",
    processor_class="LlavaNextProcessor",
    image_processor_class="LlavaNextImageProcessorPil",
    examples=("llava-hf/llava-v1.6-mistral-7b-hf",),
    flagship="llava-hf/llava-v1.6-mistral-7b-hf",
    template="llava_next",
    template_source="chat_template.json of llava-hf/llava-v1.6-mistral-7b-hf (reconstructed, not byte-verified)",
    image_tokens_per_image="dynamic (any-resolution tiles): 224^2 -> 1176, 512^2 -> 2928",
    recommended_resolution="336 px tiles on the 672 px grid pinpoints",
    qlora_memory="about 10-12 GB (7B)",
    extra_inputs=("image_sizes",),
    **_LLAVA_COMMON,
)

FAMILIES: Mapping[str, ModelFamily] = {
    f.name: f for f in (_IDEFICS2, _IDEFICS3, _SMOLVLM, _QWEN2_VL, _QWEN2_5_VL, _GEMMA3, _LLAVA, _LLAVA_NEXT)
}
"""Every supported family, by name."""

_PROCESSOR_FAMILIES = {
    "Idefics2Processor": "idefics2",
    "Idefics3Processor": "idefics3",
    "SmolVLMProcessor": "smolvlm",
    "Qwen2VLProcessor": "qwen2_vl",
    "Qwen2_5_VLProcessor": "qwen2_5_vl",
    "Gemma3Processor": "gemma3",
    "LlavaProcessor": "llava",
    "LlavaNextProcessor": "llava_next",
}


def _supported() -> str:
    return ", ".join(sorted(FAMILIES))


def get_family(name: str | ModelFamily) -> ModelFamily:
    """The family called ``name`` (a family is returned unchanged).

    Raises:
        MedVQAError: No such family; the message lists the supported ones.
    """
    if isinstance(name, ModelFamily):
        return name
    try:
        return FAMILIES[name]
    except KeyError:
        raise MedVQAError(f"unsupported model family {name!r}; supported: {_supported()}") from None


def _by_model_type(model_type: str, where: str) -> ModelFamily:
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    raise MedVQAError(
        f"{where}: model_type {model_type!r} is not a supported vision-language family; supported: "
        f"{_supported()} (pass --family NAME / family=NAME if the checkpoint is one of them)"
    )


def detect_family(
    source: str | os.PathLike[str] | Mapping[str, Any], family: str | None = None
) -> ModelFamily:
    """The family of a checkpoint, from its ``config.json`` ``model_type`` (or ``family`` when given).

    Args:
        source: A model folder, a ``config.json`` file, or a parsed config dict. A hub id
            that is not a local folder is looked up in the Hugging Face cache (offline);
            when it is not there, ``family`` must be given.
        family: An explicit family name, which wins over detection.

    Raises:
        MedVQAError: Unknown ``family``; no readable ``config.json``; an unsupported
            ``model_type`` (the message lists the supported families).

    >>> detect_family({"model_type": "gemma3"}).name
    'gemma3'
    >>> detect_family({"model_type": "mllama"})
    Traceback (most recent call last):
    ...
    medvqa._errors.MedVQAError: config: model_type 'mllama' is not a supported vision-language family; supported: gemma3, idefics2, idefics3, llava, llava_next, qwen2_5_vl, qwen2_vl, smolvlm (pass --family NAME / family=NAME if the checkpoint is one of them)
    """
    if family is not None:
        return get_family(family)
    if isinstance(source, Mapping):
        return _by_model_type(str(source.get("model_type")), "config")
    path = Path(source)
    config_file = path / "config.json" if path.is_dir() else path
    if not config_file.is_file():
        cached = _cached_config(os.fspath(source))
        if cached is None:
            raise MedVQAError(
                f"{source}: no config.json to read the model family from; pass --family NAME "
                f"(supported: {_supported()})"
            )
        config_file = cached
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MedVQAError(f"{config_file}: not a readable config.json: {exc}") from None
    if not isinstance(data, dict) or "model_type" not in data:
        raise MedVQAError(f"{config_file}: no model_type; pass --family NAME (supported: {_supported()})")
    return _by_model_type(str(data["model_type"]), str(config_file))


def _cached_config(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - the train extra brings huggingface_hub
        return None
    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an invalid repo id is just "not cached"
        return None
    return Path(found) if isinstance(found, str) else None


def family_of_model(model: Any) -> ModelFamily:
    """The family of a loaded model (or peft wrapper), from ``model.config.model_type``."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise MedVQAError(f"{type(model).__name__}: no config.model_type to tell the model family from")
    return _by_model_type(str(model_type), type(model).__name__)


def family_of_processor(processor: Any) -> ModelFamily:
    """The family a processor belongs to, from its class (or a ``medvqa_family`` attribute).

    Processors of checkpoints medvqa loaded carry ``medvqa_family``; otherwise the class
    and its bases are looked up (a SmolVLM2 model driven by ``Idefics3Processor`` is
    reported as ``idefics3``, whose chat and tokens are the same).
    """
    name = getattr(processor, "medvqa_family", None)
    if isinstance(name, str):
        return get_family(name)
    for cls in type(processor).__mro__:
        if cls.__name__ in _PROCESSOR_FAMILIES:
            return FAMILIES[_PROCESSOR_FAMILIES[cls.__name__]]
    raise MedVQAError(
        f"{type(processor).__name__}: not the processor of a supported family ({_supported()}); "
        "pass family=NAME"
    )


@cache
def chat_template(name: str) -> str:
    """The bundled chat template ``name`` (``idefics2``, ``smolvlm``, ``qwen2_vl``, ...), verbatim.

    >>> chat_template("llava").startswith("{% for message in messages %}")
    True
    """
    asset = resources.files("medvqa.models").joinpath("_assets", f"{name}.chat_template.jinja")
    try:
        return asset.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MedVQAError(f"no bundled chat template {name!r}") from None
