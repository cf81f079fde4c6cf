"""Tiny model save/reload, quantization settings and LoRA target sets on the tiny Idefics2."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("peft")
pytestmark = pytest.mark.train

import torch  # noqa: E402

from medvqa._errors import MedVQAError  # noqa: E402
from medvqa.models import (  # noqa: E402
    LORA_PRESETS,
    TINY_IMAGE_SEQ_LEN,
    LoraSettings,
    QuantizationSettings,
    add_lora,
    load_adapter,
    load_idefics2,
    lora_report,
    lora_target_modules,
    save_tiny_idefics2,
    skip_modules,
    tiny_idefics2,
)

PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TEXT = {
    f"model.text_model.layers.{i}.{'self_attn' if p[0] in 'qkvo' else 'mlp'}.{p}"
    for i in range(2)
    for p in PROJ
}
MODALITY = {f"model.connector.modality_projection.{p}" for p in ("gate_proj", "up_proj", "down_proj")}
PERCEIVER = {
    f"model.connector.perceiver_resampler.layers.0.{'self_attn' if p[0] in 'qkvo' else 'mlp'}.{p}"
    for p in PROJ
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_idefics2(tmp_path_factory.mktemp("tiny"), seed=0)


def _fresh() -> Any:
    return tiny_idefics2(seed=0)[0]


def test_tiny_is_deterministic_and_mirrors_the_real_module_names() -> None:
    (a, proc), b = tiny_idefics2(seed=0), _fresh()
    c = tiny_idefics2(seed=1)[0]
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    names = {n for n, _ in a.named_modules()}
    for required in (
        "model.text_model",
        "model.vision_model",
        "model.connector.modality_projection",
        "model.connector.perceiver_resampler",
        "lm_head",
    ):
        assert required in names
    assert proc.image_seq_len == a.config.perceiver_config.resampler_n_latents == TINY_IMAGE_SEQ_LEN
    assert proc.image_processor.do_image_splitting is False
    tok = proc.tokenizer
    assert tok.convert_tokens_to_ids(["<unk>", "<s>", "</s>", "<pad>"]) == [0, 1, 2, 3]
    assert a.config.image_token_id == tok.convert_tokens_to_ids("<image>")


def test_tiny_saves_and_reloads_with_from_pretrained(tiny_dir: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    assert (tiny_dir / "model.safetensors").is_file()
    model = AutoModelForImageTextToText.from_pretrained(tiny_dir, use_safetensors=True)
    processor = AutoProcessor.from_pretrained(tiny_dir)
    ref = _fresh().state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())
    assert processor.image_seq_len == TINY_IMAGE_SEQ_LEN
    text = "User: Is it normal?<end_of_utterance>\nAssistant: yes<end_of_utterance>\n"
    assert processor(text=[text])["input_ids"] == tiny_idefics2(seed=0)[1](text=[text])["input_ids"]


def test_load_idefics2_refuses_folders_without_safetensors_and_bad_seq_len(
    tiny_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text((tiny_dir / "config.json").read_text())
    with pytest.raises(MedVQAError, match="safetensors"):
        load_idefics2(tmp_path)
    bad = tmp_path / "bad"
    save_tiny_idefics2(bad)
    cfg = json.loads((bad / "processor_config.json").read_text())
    cfg["image_seq_len"] = TINY_IMAGE_SEQ_LEN + 1
    (bad / "processor_config.json").write_text(json.dumps(cfg))
    with pytest.raises(MedVQAError, match="image_seq_len"):
        load_idefics2(bad)


def test_quantization_skip_patterns_keep_lm_head() -> None:
    assert skip_modules(QuantizationSettings()) == ["lm_head"]
    assert skip_modules(QuantizationSettings(quantize_vision=False, keep_modules=("model.connector",))) == [
        "lm_head",
        "model.vision_model",
        "model.connector",
    ]
    s = QuantizationSettings(mode="nf4", compute_dtype="bfloat16")
    assert QuantizationSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="mode"):
        QuantizationSettings(mode="int4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown quantization settings"):
        QuantizationSettings.from_dict({"bits": 4})


def _lora_params(model: Any, names: set[str], r: int) -> int:
    modules = dict(model.named_modules())
    return sum(r * (modules[n].in_features + modules[n].out_features) for n in names)


@pytest.mark.parametrize(
    ("preset", "expected"),
    [("paper", TEXT | MODALITY | PERCEIVER), ("llm_only", TEXT), ("connector_only", MODALITY | PERCEIVER)],
)
def test_lora_presets_adapt_exactly_the_expected_modules(preset: str, expected: set[str]) -> None:
    base = _fresh()
    n_params = _lora_params(base, expected, 8)
    model = add_lora(base, preset=preset)  # type: ignore[arg-type]
    report = lora_report(model)
    assert set(report.adapted_modules) == expected
    assert not [n for n in report.adapted_modules if "vision_model" in n or n.startswith("lm_head")]
    assert report.trainable_params == n_params
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert report.total_params > report.trainable_params
    assert model.training


def test_paper_regex_is_the_published_one() -> None:
    assert LORA_PRESETS["paper"] == (
        ".*(text_model|modality_projection|perceiver_resampler)"
        ".*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$"
    )
    vision = "model.vision_model.encoder.layers.0.self_attn.q_proj"
    assert re.fullmatch(LORA_PRESETS["paper"], vision) is None
    assert re.fullmatch(LORA_PRESETS["paper"], "lm_head") is None


def test_custom_targets_and_settings_validation() -> None:
    model = add_lora(_fresh(), preset="custom", target_modules=["lm_head"], r=4, alpha=16, init="kaiming")
    assert lora_report(model).adapted_modules == ("lm_head",)
    with pytest.raises(ValueError, match="needs target_modules"):
        lora_target_modules("custom")
    with pytest.raises(ValueError, match="only used with preset='custom'"):
        LoraSettings(preset="paper", target_modules=("q_proj",))
    with pytest.raises(ValueError, match="dropout"):
        LoraSettings(dropout=1.5)
    with pytest.raises(MedVQAError, match="matched no module"):
        add_lora(_fresh(), preset="custom", target_modules=["no_such_module"])
    s = LoraSettings(preset="custom", target_modules=("q_proj", "v_proj"), r=4)
    assert LoraSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_fresh_gaussian_adapter_is_a_no_op_and_load_adapter_is_eval(tmp_path: Path) -> None:
    base = _fresh()
    ids = torch.tensor([[1, 20, 30, 40, 6]])
    with torch.no_grad():
        ref = base(input_ids=ids).logits
    model = add_lora(base, dropout=0.5)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, ref)
    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    loaded = load_adapter(_fresh(), tmp_path / "adapter")
    assert not loaded.training
    assert not any(m.training for m in loaded.modules())
    trainable = load_adapter(_fresh(), tmp_path / "adapter", is_trainable=True)
    assert trainable.training and lora_report(trainable).trainable_params > 0
    (tmp_path / "adapter" / "adapter_model.safetensors").rename(tmp_path / "adapter" / "adapter_model.bin")
    with pytest.raises(MedVQAError, match="only from safetensors"):
        load_adapter(_fresh(), tmp_path / "adapter")
    with pytest.raises(MedVQAError, match="not a LoRA adapter folder"):
        load_adapter(_fresh(), tmp_path)
