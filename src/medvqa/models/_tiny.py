"""A tiny, deterministic, fully offline Idefics2 for tests, benchmarks and the demo.

The model has the real architecture and module names (``model.text_model``,
``model.vision_model``, ``model.connector.modality_projection``,
``model.connector.perceiver_resampler``, ``lm_head``) at a size that trains on a CPU in
milliseconds per step. Its tokenizer is a byte-level BPE trained here with ``tokenizers`` on
a fixed corpus, so nothing is ever downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medvqa._extras import needs_train_extra
from medvqa.chat import CAPTION_INSTRUCTION, EXPERT_INSTRUCTION, IDEFICS2_CHAT_TEMPLATE

if TYPE_CHECKING:
    from transformers import Idefics2ForConditionalGeneration, Idefics2Processor

__all__ = [
    "SPECIAL_TOKENS",
    "TINY_IMAGE_SEQ_LEN",
    "TINY_IMAGE_SIZE",
    "TinySize",
    "save_tiny_idefics2",
    "tiny_idefics2",
]

SPECIAL_TOKENS: tuple[str, ...] = (
    "<unk>",
    "<s>",
    "</s>",
    "<pad>",
    "<fake_token_around_image>",
    "<image>",
    "<end_of_utterance>",
)
"""Special tokens of the tiny tokenizer, with ids 0..6 in this order."""

TINY_IMAGE_SIZE = 32
"""Images are resized to this many pixels on each side (the vision encoder's ``image_size``)."""

TINY_IMAGE_SEQ_LEN = 8
"""``<image>`` tokens per image: the perceiver's ``resampler_n_latents`` and the processor's ``image_seq_len``."""

_VOCAB_SIZE = 1024

TinySize = Literal["tiny", "small"]
"""``tiny`` (about 0.4 M parameters, for tests) or ``small`` (about 12 M, for benchmarks)."""

# text width, text layers, text MLP width, vision width, vision layers
_SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (64, 2, 128, 64, 2),
    "small": (384, 6, 1024, 128, 2),
}

_WORDS = """
yes no left right upper lower both none normal abnormal present absent mild moderate severe
chest abdomen head brain skull neck spine pelvis liver lung lungs heart kidney kidneys spleen
bladder colon bowel stomach pancreas gallbladder aorta trachea rib ribs bone bones femur
fracture mass lesion nodule tumor cyst effusion pneumothorax edema hemorrhage infarct
calcification consolidation opacity atelectasis cardiomegaly enlarged small large dilated
x-ray xray ct mri ultrasound scan radiograph image plane axial coronal sagittal contrast
t1 t2 flair weighted view pa ap lateral frontal hypodense hyperdense hyperintense hypointense
what where which how is are does do there the a an of in on this that with without shown
organ organs modality sign seen located side area region finding findings diagnosis
patient case answer question caption radiology medical image following deeply analyze and
diagnose briefly succinctly expert radiologist evaluating based you are be to it
one two three four five 1 2 3 4 5 6 7 8 9 0 cm mm
"""

_SENTENCES = (
    "Answer briefly.",
    EXPERT_INSTRUCTION,
    CAPTION_INSTRUCTION,
    "User: Answer briefly. Is there a fracture?",
    "Assistant: no",
    "Assistant: yes",
    "Is there evidence of a pneumothorax?",
    "What organ is shown in this image?",
    "Where is the lesion located?",
    "Is the heart enlarged?",
    "What is the modality of this image?",
    "Which side is the mass on?",
    "Are the lungs normal?",
    "Does the liver show a cyst?",
    "How many ribs are fractured?",
    "Axial CT of the abdomen with contrast showing a hypodense liver lesion.",
    "Frontal chest x-ray showing cardiomegaly and a small left pleural effusion.",
    "MRI of the brain, T2 weighted, with a hyperintense lesion in the left frontal lobe.",
    "I do not know.",
    "None of the above.",
)


def _corpus() -> list[str]:
    words = _WORDS.split()
    lines = list(_SENTENCES)
    lines += [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    lines += [w.capitalize() + "?" for w in words]
    lines += [f"Assistant: {w}" for w in words]
    return lines * 3


def _trained_bpe(specials: Sequence[str], *, unk: str | None, bos: str | None) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on the fixed corpus.

    ``specials`` get ids 0..n-1; with ``bos``, every encoded text starts with it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    if bos is not None:
        bos_id = list(specials).index(bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )
    return tok


def _build_tokenizer() -> Any:
    from transformers import PreTrainedTokenizerFast

    tok = _trained_bpe(SPECIAL_TOKENS, unk="<unk>", bos="<s>")
    fast: Any = PreTrainedTokenizerFast
    return fast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        padding_side="right",
        model_max_length=2048,
    )


_LM_HEAD_SCALE = 10.0
"""Factor applied to the random ``lm_head`` of the tiny model (see :func:`tiny_idefics2`)."""


def _build_config(vocab_size: int, size: str = "tiny") -> Any:
    from transformers import Idefics2Config

    if size not in _SIZES:
        raise ValueError(f"size must be one of {sorted(_SIZES)}, got {size!r}")
    width, layers, mlp, v_width, v_layers = _SIZES[size]

    ids = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    text_config = {
        "model_type": "mistral",
        "vocab_size": vocab_size,
        "hidden_size": width,
        "intermediate_size": mlp,
        "num_hidden_layers": layers,
        "num_attention_heads": width // 16,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "pad_token_id": ids["<pad>"],
        "bos_token_id": ids["<s>"],
        "eos_token_id": ids["</s>"],
        "sliding_window": None,
        "initializer_range": 0.05,
    }
    vision_config = {
        "hidden_size": v_width,
        "intermediate_size": 2 * v_width,
        "num_hidden_layers": v_layers,
        "num_attention_heads": 2,
        "image_size": TINY_IMAGE_SIZE,
        "patch_size": 8,
        "initializer_range": 0.05,
    }
    perceiver_config = {
        "hidden_size": width,
        "rms_norm_eps": 1e-5,
        "resampler_n_latents": TINY_IMAGE_SEQ_LEN,
        "resampler_depth": 1,
        "resampler_n_heads": 2,
        "resampler_head_dim": 32,
        "num_key_value_heads": 1,
        "initializer_range": 0.05,
    }
    config = Idefics2Config(
        text_config=text_config,
        vision_config=vision_config,
        perceiver_config=perceiver_config,
        image_token_id=ids["<image>"],
        tie_word_embeddings=False,
        use_cache=True,
    )
    config.pad_token_id = ids["<pad>"]
    config.bos_token_id = ids["<s>"]
    config.eos_token_id = [ids["</s>"], ids["<end_of_utterance>"]]
    return config


@needs_train_extra
def tiny_idefics2(
    seed: int = 0, *, size: TinySize = "tiny"
) -> tuple[Idefics2ForConditionalGeneration, Idefics2Processor]:
    """Build a tiny random Idefics2 and its processor, offline and deterministically.

    The same ``seed`` gives the same weights and the same tokenizer on every call and
    every machine (the global random state is left untouched). The model is in ``eval``
    mode, float32, on the CPU.

    Sizes: text model 2 layers of width 64 (vocabulary of about 1,000 byte-level BPE
    tokens), vision encoder 2 layers of width 64 on 32 x 32 images, perceiver with
    :data:`TINY_IMAGE_SEQ_LEN` latents; about 0.4 M parameters. Every linear layer that
    quantization may replace is at least as wide as bitsandbytes' 4-bit block: its input
    width is a multiple of 64 and its output width a multiple of 32, which bitsandbytes'
    packed CPU kernel for 4-bit weights (used on CPUs with AVX512-BF16) needs.

    Args:
        seed: Seed of the weight initialisation.
        size: ``tiny`` (the sizes above) or ``small`` (text model 6 layers of width 384,
            vision encoder of width 128; about 12 M parameters) for benchmarks that need
            the model, not the Python overhead, to dominate.

    Returns:
        ``(model, processor)``: an ``Idefics2ForConditionalGeneration`` and an
        ``Idefics2Processor`` with Idefics2's chat template, ``do_image_splitting=False``
        and ``image_seq_len`` equal to the perceiver's ``resampler_n_latents``.
    """
    import torch
    from transformers import Idefics2ForConditionalGeneration, Idefics2Processor
    from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil

    tokenizer = _build_tokenizer()
    image_processor = Idefics2ImageProcessorPil(
        size={"shortest_edge": TINY_IMAGE_SIZE, "longest_edge": TINY_IMAGE_SIZE},
        do_image_splitting=False,
    )
    processor = Idefics2Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=TINY_IMAGE_SEQ_LEN,
        chat_template=IDEFICS2_CHAT_TEMPLATE,
    )
    config = _build_config(len(tokenizer), size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: Any = Idefics2ForConditionalGeneration(config)
    # With the text model's small initialisation, a random lm_head caps every logit near
    # 0.05 * sqrt(hidden_size) * |h|: LoRA, which never adapts lm_head, could then not make a
    # confident prediction, and a trained tiny model would still answer with empty strings.
    # A larger (still deterministic) output layer lets it learn within a few dozen steps.
    with torch.no_grad():
        model.lm_head.weight.mul_(_LM_HEAD_SCALE)
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.bos_token_id = config.bos_token_id
    model.generation_config.eos_token_id = list(config.eos_token_id)
    model.eval()
    return model, processor


@needs_train_extra
def save_tiny_idefics2(path: str | os.PathLike[str], seed: int = 0, *, size: TinySize = "tiny") -> Path:
    """Write the tiny model and processor of :func:`tiny_idefics2` to a folder.

    The folder holds safetensors weights, the configs, the tokenizer and the processor,
    and is read back by :func:`medvqa.models.load_idefics2` or by transformers'
    ``from_pretrained`` (no network, no remote code).

    Args:
        path: The folder to create (or overwrite files in).
        seed: Seed of the weights.
        size: ``tiny`` or ``small`` (see :func:`tiny_idefics2`).

    Returns:
        The folder, as a ``Path``.
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model, processor = tiny_idefics2(seed, size=size)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
