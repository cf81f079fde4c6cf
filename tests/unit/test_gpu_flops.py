"""The FLOP count behind the GPU kit's MFU, against a computation done by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def flops() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_bench_flops", BENCHMARKS / "_flops.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


CONFIG = SimpleNamespace(
    text_config=SimpleNamespace(
        hidden_size=8, intermediate_size=16, vocab_size=10, num_attention_heads=2,
        num_key_value_heads=1, head_dim=4, num_hidden_layers=1,
    ),
    vision_config=SimpleNamespace(hidden_size=4, intermediate_size=8, patch_size=2, num_hidden_layers=1),
    perceiver_config=SimpleNamespace(
        resampler_n_latents=2, resampler_n_heads=2, resampler_head_dim=2, num_key_value_heads=1, resampler_depth=1
    ),
)  # fmt: skip


def test_idefics2_flops_match_a_hand_computation(flops: ModuleType) -> None:
    # 1 sequence of 5 tokens, 1 image of 3 patches, LoRA rank 1. Products cost 2 * t * n_in * n_out.
    got = flops.idefics2_flops(CONFIG, batch=1, seq_len=5, n_images=1, patches_per_image=3, lora_r=1)
    # text (t = 5): q 2*5*8*8=640, k and v 2*5*8*4=320 each, o 640, gate/up/down 2*5*8*16=1280 each: 5760;
    # lm_head 2*5*8*10=800
    assert got.text_linear == 5760 + 800
    assert got.text_attention == 4 * 5 * 5 * 8  # Q K^T and A V over 5 x 5 positions, width 2 heads x 4
    # vision (t = 3 patches): patch embedding 2*3*(3*2*2)*4=288; q/k/v/out 4 * 2*3*4*4=384; fc1, fc2 2*3*4*8=192 each
    assert got.vision_linear == 288 + 384 + 2 * 192
    assert got.vision_attention == 4 * 3 * 3 * 4
    # modality projection (t = 3): gate, up 2*3*4*16=384 each, down 2*3*16*8=768;
    # perceiver: q (t = 2 latents) 2*2*8*4=128, k and v (t = 3 + 2) 2*5*8*2=160 each, o 128,
    # MLP on the latents with width 4*8: 3 * 2*2*8*32=3072
    assert got.connector_linear == (384 + 384 + 768) + (128 + 160 + 160 + 128 + 3072)
    assert got.connector_attention == 4 * 2 * 5 * 4  # 2 latent queries over 5 keys, width 2 x 2
    # LoRA rank 1 costs 2*t*n_in + 2*t*n_out per adapted layer:
    # text 160 + 120 + 120 + 160 + 3 * 240 = 1280; projection 120 + 120 + 144 = 384;
    # perceiver 48 + 100 + 100 + 48 + 3 * 160 = 776
    assert got.lora == 1280 + 384 + 776
    assert got.forward == 16344
    # training: vision forward once, frozen products twice, attention 3x, LoRA 3x
    assert got.training == (1056 + 144) + 2 * (5184 + 6560) + 3 * (160 + 800) + 3 * 2440 == 34888
    assert got.training_3x == 3 * 16344
    assert got.linear == 1056 + 5184 + 6560 + 2440


def test_flops_scale_as_expected(flops: ModuleType) -> None:
    one = flops.idefics2_flops(CONFIG, batch=1, seq_len=5, n_images=1, patches_per_image=3)
    two = flops.idefics2_flops(CONFIG, batch=2, seq_len=5, n_images=2, patches_per_image=3)
    assert one.lora == 0
    assert two.forward == 2 * one.forward  # a batch of two is twice the work
    longer = flops.idefics2_flops(CONFIG, batch=1, seq_len=10, n_images=1, patches_per_image=3)
    assert longer.text_attention == 4 * one.text_attention  # quadratic in the length
    assert longer.text_linear == 2 * one.text_linear  # linear in the length


def test_the_8b_configuration_is_about_8_billion_parameters_per_token(flops: ModuleType) -> None:
    # A forward costs about 2 FLOPs per parameter per token: the text model of Idefics2-8B
    # (Mistral-7B, 7.24 B parameters with embeddings; the embedding lookup costs nothing).
    text = SimpleNamespace(
        hidden_size=4096, intermediate_size=14336, vocab_size=32003, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, num_hidden_layers=32,
    )  # fmt: skip
    config = SimpleNamespace(**{**vars(CONFIG), "text_config": text})
    got = flops.idefics2_flops(config, batch=1, seq_len=1, n_images=0, patches_per_image=0)
    params_without_input_embeddings = 7.24e9 - 32003 * 4096
    assert got.text_linear / 2 == pytest.approx(params_without_input_embeddings, rel=0.01)
