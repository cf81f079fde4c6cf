"""Tiny, deterministic, fully offline models of every supported family except Idefics2.

Each builder makes the family's real model class with its real module names at a size that
runs a training step on a CPU in milliseconds, a processor of the family (with a PIL image
processor, so torchvision is never needed) and a byte-level BPE tokenizer trained here on a
fixed corpus, carrying the family's real special tokens and its published chat template.

Every linear layer that 4-bit bitsandbytes quantizes is at least 64 wide on both sides
(bitsandbytes' packed CPU kernels need it), so QLoRA runs on these models on a CPU.

Idefics2's builder lives in :mod:`medvqa.models._tiny`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from medvqa._extras import needs_train_extra
from medvqa.models._tiny import _LM_HEAD_SCALE, _trained_bpe

__all__ = ["TINY_BUILDERS", "image_only_qwen_processor_class", "save_tiny_model", "tiny_model"]

_WIDTH = 64
_HEADS = 4
_HEAD_DIM = 16
_INIT = 0.05


def _tokenizer(
    specials: Sequence[str],
    *,
    bos: str | None,
    eos: str,
    pad: str,
    unk: str | None = None,
    add_bos: bool = False,
    extra: dict[str, str] | None = None,
    chat_template: str | None = None,
) -> Any:
    """A byte-level BPE tokenizer trained on the fixed corpus, with ``specials`` as ids 0..n-1."""
    from transformers import PreTrainedTokenizerFast

    tok = _trained_bpe(specials, unk=unk, bos=bos if add_bos else None)
    fast: Any = PreTrainedTokenizerFast
    kwargs: dict[str, Any] = {"bos_token": bos, "eos_token": eos, "pad_token": pad}
    if unk is not None:
        kwargs["unk_token"] = unk
    if extra:
        kwargs["extra_special_tokens"] = extra
    return fast(
        tokenizer_object=tok,
        padding_side="right",
        model_max_length=4096,
        chat_template=chat_template,
        **kwargs,
    )


def _text_config(tokenizer: Any, model_type: str, **more: Any) -> dict[str, Any]:
    config = {
        "model_type": model_type,
        "vocab_size": len(tokenizer),
        "hidden_size": _WIDTH,
        "intermediate_size": 2 * _WIDTH,
        "num_hidden_layers": 2,
        "num_attention_heads": _HEADS,
        # as many key/value heads as query heads: k_proj and v_proj stay 64 wide
        "num_key_value_heads": _HEADS,
        "head_dim": _HEAD_DIM,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "initializer_range": _INIT,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    config.update(more)
    return config


def _vision_config(**more: Any) -> dict[str, Any]:
    config = {
        "hidden_size": _WIDTH,
        "intermediate_size": 2 * _WIDTH,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
        "initializer_range": _INIT,
    }
    config.update(more)
    return config


def _finish(model_cls: Any, config: Any, seed: int, stop_ids: Sequence[int], pad_id: int) -> Any:
    """Build the model under a forked RNG, widen ``lm_head`` and set the generation config."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: Any = model_cls(config)
    if model.lm_head.weight is not model.get_input_embeddings().weight:
        # see medvqa.models._tiny: a larger random output layer lets LoRA make confident predictions
        with torch.no_grad():
            model.lm_head.weight.mul_(_LM_HEAD_SCALE)
    model.generation_config.pad_token_id = pad_id
    model.generation_config.eos_token_id = list(stop_ids)
    model.eval()
    return model


def _ids(tokenizer: Any, tokens: Sequence[str]) -> list[int]:
    return [int(tokenizer.convert_tokens_to_ids(t)) for t in tokens]


# -- Idefics3 / SmolVLM -----------------------------------------------------------------------

_IDEFICS3_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
    "<global-img>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
)


def _idefics3_like(seed: int, smolvlm: bool) -> tuple[Any, Any]:
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    from medvqa.models._families import chat_template

    template = chat_template("smolvlm")
    tokenizer = _tokenizer(
        _IDEFICS3_SPECIALS,
        bos="<|im_start|>",
        eos="<end_of_utterance>",
        pad="<|im_end|>",
        unk="<|endoftext|>",
        chat_template=template,
    )
    # 32-pixel tiles, 8-pixel patches, scale factor 2: (32/8)^2 / 2^2 = 4 image tokens per tile
    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=False
    )
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4, chat_template=template
    )
    text = _text_config(tokenizer, "llama")
    if smolvlm:
        from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

        config_cls: Any = SmolVLMConfig
        model_cls: Any = SmolVLMForConditionalGeneration
    else:
        from transformers import Idefics3Config, Idefics3ForConditionalGeneration

        config_cls, model_cls = Idefics3Config, Idefics3ForConditionalGeneration
    config = config_cls(
        text_config=text,
        vision_config=_vision_config(),
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=False,
    )
    stops = _ids(tokenizer, ["<end_of_utterance>"])
    return _finish(model_cls, config, seed, stops, tokenizer.pad_token_id), processor


def tiny_idefics3(seed: int = 0) -> tuple[Any, Any]:
    """A tiny ``Idefics3ForConditionalGeneration`` with SmolVLM's chat template and tokens."""
    return _idefics3_like(seed, smolvlm=False)


def tiny_smolvlm(seed: int = 0) -> tuple[Any, Any]:
    """A tiny ``SmolVLMForConditionalGeneration`` (SmolVLM2), driven by an ``Idefics3Processor``.

    ``SmolVLMProcessor`` cannot be built without torchvision (its video processor) and
    ``num2words``; for images its processing is Idefics3's.
    """
    return _idefics3_like(seed, smolvlm=True)


# -- Qwen2-VL / Qwen2.5-VL --------------------------------------------------------------------

_QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


def image_only_qwen_processor_class() -> Any:
    """A Qwen2.5-VL processor class that needs no video processor (so no torchvision).

    transformers' ``Qwen2VLProcessor`` and ``Qwen2_5_VLProcessor`` refuse to be built when
    torchvision is missing, even for images only; this subclass drops the video processor
    and behaves identically on images and text. It loads with ``from_pretrained`` from a
    folder holding a Qwen tokenizer and a ``Qwen2VLImageProcessor`` configuration.
    """
    from transformers import Qwen2_5_VLProcessor
    from transformers.processing_utils import ProcessorMixin

    base: Any = Qwen2_5_VLProcessor

    class ImageOnlyQwenVLProcessor(base):  # type: ignore[misc]
        attributes: ClassVar[list[str]] = ["image_processor", "tokenizer"]

        def __init__(
            self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any
        ) -> None:
            self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            mixin_init: Any = ProcessorMixin.__init__
            mixin_init(self, image_processor, tokenizer, chat_template=chat_template)

    return ImageOnlyQwenVLProcessor


def _qwen_classes(v2_5: bool) -> tuple[Any, Any, dict[str, Any]]:
    """The config and model classes of Qwen2-VL or Qwen2.5-VL, and the tiny vision config."""
    if v2_5:
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        vision = {
            "depth": 2,
            "hidden_size": _WIDTH,
            "intermediate_size": 2 * _WIDTH,
            "num_heads": 2,
            "out_hidden_size": _WIDTH,
            "patch_size": 4,
            "window_size": 16,
            "fullatt_block_indexes": [1],
            "initializer_range": _INIT,
        }
        return Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, vision
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    vision = {
        "depth": 2,
        "embed_dim": _WIDTH,
        "hidden_size": _WIDTH,
        "num_heads": 2,
        "mlp_ratio": 2,
        "patch_size": 4,
        "initializer_range": _INIT,
    }
    return Qwen2VLConfig, Qwen2VLForConditionalGeneration, vision


def _qwen(seed: int, v2_5: bool) -> tuple[Any, Any]:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from medvqa.models._families import chat_template

    template = chat_template("qwen2_5_vl" if v2_5 else "qwen2_vl")
    tokenizer = _tokenizer(
        _QWEN_SPECIALS, bos=None, eos="<|im_end|>", pad="<|endoftext|>", chat_template=template
    )
    # 4-pixel patches merged 2 x 2: an image resized to 32 x 32 is 8 x 8 patches -> 16 image tokens
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=4,
        merge_size=2,
        temporal_patch_size=2,
        size={"shortest_edge": 32 * 32, "longest_edge": 32 * 32},
    )
    processor = image_only_qwen_processor_class()(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=template
    )
    ids = dict(zip(_QWEN_SPECIALS, _ids(tokenizer, _QWEN_SPECIALS), strict=True))
    text = _text_config(
        tokenizer,
        "qwen2_5_vl_text" if v2_5 else "qwen2_vl_text",
        rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
        bos_token_id=ids["<|endoftext|>"],
    )
    top: dict[str, Any] = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "tie_word_embeddings": False,
    }
    config_cls, model_cls, vision = _qwen_classes(v2_5)
    config = config_cls(text_config=text, vision_config=vision, **top)
    stops = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    return _finish(model_cls, config, seed, stops, ids["<|endoftext|>"]), processor


def tiny_qwen2_vl(seed: int = 0) -> tuple[Any, Any]:
    """A tiny ``Qwen2VLForConditionalGeneration`` with an image-only Qwen processor."""
    return _qwen(seed, v2_5=False)


def tiny_qwen2_5_vl(seed: int = 0) -> tuple[Any, Any]:
    """A tiny ``Qwen2_5_VLForConditionalGeneration`` with an image-only Qwen processor."""
    return _qwen(seed, v2_5=True)


# -- Gemma 3 ----------------------------------------------------------------------------------

_GEMMA_SPECIALS = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
)


def tiny_gemma3(seed: int = 0) -> tuple[Any, Any]:
    """A tiny ``Gemma3ForConditionalGeneration`` (the MedGemma architecture).

    Its tokenizer adds ``<bos>`` like Gemma 3's, and the template writes one too: rendered
    chats must be tokenized without special tokens.
    """
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    from medvqa.models._families import chat_template

    template = chat_template("gemma3")
    tokenizer = _tokenizer(
        _GEMMA_SPECIALS,
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        unk="<unk>",
        add_bos=True,
        extra={
            "image_token": "<image_soft_token>",
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
        },
        chat_template=template,
    )
    ids = dict(zip(_GEMMA_SPECIALS, _ids(tokenizer, _GEMMA_SPECIALS), strict=True))
    image_processor = Gemma3ImageProcessorPil(
        size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    processor = Gemma3Processor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=template, image_seq_length=4
    )
    text = _text_config(
        tokenizer,
        "gemma3_text",
        query_pre_attn_scalar=_HEAD_DIM,
        sliding_window=16,
        num_key_value_heads=_HEADS,
    )
    vision = _vision_config(model_type="siglip_vision_model", vision_use_head=False)
    config = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=4,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
        tie_word_embeddings=True,
    )
    stops = [ids["<eos>"], ids["<end_of_turn>"]]
    return _finish(Gemma3ForConditionalGeneration, config, seed, stops, ids["<pad>"]), processor


# -- LLaVA-1.5 / LLaVA-NeXT -------------------------------------------------------------------

_LLAVA_SPECIALS = ("<unk>", "<s>", "</s>", "<image>", "<pad>")


def _llava(seed: int, next_: bool) -> tuple[Any, Any]:
    from medvqa.models._families import chat_template

    template = chat_template("llava_next" if next_ else "llava")
    tokenizer = _tokenizer(
        _LLAVA_SPECIALS, bos="<s>", eos="</s>", pad="<pad>", unk="<unk>", add_bos=True, chat_template=template
    )
    vision = _vision_config(
        model_type="clip_vision_model", num_hidden_layers=3, projection_dim=_WIDTH
    )  # 3 layers: the features come from the second to last
    text = _text_config(tokenizer, "llama")
    common = {
        "image_token_index": tokenizer.convert_tokens_to_ids("<image>"),
        "vision_feature_select_strategy": "default",
        "vision_feature_layer": -2,
        "tie_word_embeddings": False,
    }
    processor_kwargs = {
        "patch_size": 8,
        "vision_feature_select_strategy": "default",
        "num_additional_image_tokens": 1,
        "chat_template": template,
    }
    if next_:
        from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration
        from transformers import LlavaNextProcessor as _LlavaNextProcessor
        from transformers.models.llava_next.image_processing_pil_llava_next import (
            LlavaNextImageProcessorPil,
        )

        pinpoints = [[32, 64], [64, 32], [64, 64]]
        image_processor: Any = LlavaNextImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints
        )
        next_processor: Any = _LlavaNextProcessor
        processor: Any = next_processor(
            image_processor=image_processor, tokenizer=tokenizer, **processor_kwargs
        )
        config: Any = LlavaNextConfig(
            text_config=text, vision_config=vision, image_grid_pinpoints=pinpoints, **common
        )
        model_cls: Any = LlavaNextForConditionalGeneration
    else:
        from transformers import LlavaConfig, LlavaForConditionalGeneration
        from transformers import LlavaProcessor as _LlavaProcessor
        from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

        image_processor = LlavaImageProcessorPil(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        )
        llava_processor: Any = _LlavaProcessor
        processor = llava_processor(image_processor=image_processor, tokenizer=tokenizer, **processor_kwargs)
        config = LlavaConfig(text_config=text, vision_config=vision, image_seq_length=16, **common)
        model_cls = LlavaForConditionalGeneration
    stops = _ids(tokenizer, ["</s>"])
    return _finish(model_cls, config, seed, stops, tokenizer.pad_token_id), processor


def tiny_llava(seed: int = 0) -> tuple[Any, Any]:
    """A tiny ``LlavaForConditionalGeneration`` (LLaVA-1.5 layout: CLIP tower, 2-layer projector)."""
    return _llava(seed, next_=False)


def tiny_llava_next(seed: int = 0) -> tuple[Any, Any]:
    """A tiny ``LlavaNextForConditionalGeneration`` (any-resolution tiling)."""
    return _llava(seed, next_=True)


TINY_BUILDERS: dict[str, Callable[[int], tuple[Any, Any]]] = {
    "idefics3": tiny_idefics3,
    "smolvlm": tiny_smolvlm,
    "qwen2_vl": tiny_qwen2_vl,
    "qwen2_5_vl": tiny_qwen2_5_vl,
    "gemma3": tiny_gemma3,
    "llava": tiny_llava,
    "llava_next": tiny_llava_next,
}
"""Tiny builders by family name (Idefics2's is :func:`medvqa.models.tiny_idefics2`)."""


@needs_train_extra
def tiny_model(family: str = "idefics2", seed: int = 0) -> tuple[Any, Any]:
    """Build the tiny random model of a family and its processor, offline and deterministically.

    The same ``family`` and ``seed`` give the same weights and tokenizer on every call (the
    global random state is left untouched). The model is in ``eval`` mode, float32, on the
    CPU; the processor carries the family's chat template and ``medvqa_family``.

    Args:
        family: A family name (see :data:`medvqa.models.FAMILIES`).
        seed: Seed of the weight initialisation.

    Returns:
        ``(model, processor)``.

    Raises:
        MedVQAError: An unknown family (the message lists the supported ones).
    """
    from medvqa.models._families import get_family

    fam = get_family(family)
    if fam.name == "idefics2":
        from medvqa.models._tiny import tiny_idefics2

        model, processor = tiny_idefics2(seed)
    else:
        model, processor = TINY_BUILDERS[fam.name](seed)
    processor.medvqa_family = fam.name  # type: ignore[union-attr,attr-defined]
    return model, processor


@needs_train_extra
def save_tiny_model(path: str | os.PathLike[str], family: str = "idefics2", seed: int = 0) -> Path:
    """Write the tiny model and processor of :func:`tiny_model` to a folder.

    The folder (safetensors weights, configs, tokenizer, processor) is read back by
    :func:`medvqa.models.load_model`, which detects the family from ``config.json``.

    Args:
        path: The folder to create (or overwrite files in).
        family: A family name.
        seed: Seed of the weights.

    Returns:
        The folder, as a ``Path``.
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model, processor = tiny_model(family, seed)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
