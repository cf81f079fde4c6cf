"""A tiny random text-only causal LM built offline, to exercise the judge in tests and the demo.

Its verdicts are noise (random weights): it shows the machinery (prompt, greedy decoding,
cache, report), never a real judgement.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["save_tiny_judge"]


def save_tiny_judge(path: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write a tiny random Llama-architecture causal LM and its tokenizer to a folder.

    About 0.2 M parameters; the tokenizer is the offline BPE tokenizer of the tiny Idefics2
    model. The folder loads with ``AutoModelForCausalLM.from_pretrained`` and
    :class:`medvqa.judge.LocalJudge`, without network.

    Args:
        path: The folder to create (or overwrite files in).
        seed: Seed of the weights.

    Returns:
        The folder, as a ``Path``.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from medvqa.models._tiny import _build_tokenizer

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model: Any = LlamaForCausalLM(config)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
