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
    bnb_config,
    check_adapter_folder,
    load_adapter,
    load_idefics2,
    lora_report,
    lora_target_modules,
    save_tiny_idefics2,
    skip_modules,
    skip_pattern_matches,
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


def test_bnb_config_is_the_papers_nf4_without_double_quantization() -> None:
    cfg = bnb_config(QuantizationSettings())
    assert cfg.load_in_4bit and not cfg.load_in_8bit
    assert cfg.bnb_4bit_quant_type == "nf4"
    assert cfg.bnb_4bit_use_double_quant is False
    assert cfg.bnb_4bit_compute_dtype == torch.float16
    assert cfg.llm_int8_skip_modules == ["lm_head"]
    bf16 = bnb_config(QuantizationSettings(compute_dtype="bfloat16", quantize_vision=False))
    assert bf16.bnb_4bit_compute_dtype == torch.bfloat16
    assert bf16.llm_int8_skip_modules == ["lm_head", "model.vision_model"]
    int8 = bnb_config("int8")
    assert int8.load_in_8bit and int8.llm_int8_skip_modules == ["lm_head"]
    with pytest.raises(ValueError, match="not a valid regular expression"):
        QuantizationSettings(keep_modules=("model.(",))


def test_skip_pattern_matching_agrees_with_the_installed_transformers() -> None:
    from transformers.quantizers.quantizers_utils import should_convert_module

    names = [
        "lm_head",
        "model.vision_model.encoder.layers.0.mlp.fc1",
        "model.vision_model.encoder.layers.11.self_attn.q_proj",
        "model.text_model.layers.1.mlp.up_proj",
        "model.text_model.layers.11.mlp.up_proj",
        "model.connector.modality_projection.gate_proj",
        "model.connector.perceiver_resampler.layers.0.self_attn.o_proj",
    ]
    patterns = [
        "lm_head",
        "model.vision_model",
        "vision_model",
        "connector",
        "model.connector",
        "model.text_model.layers.1",
        "fc1",
        "model.text_model.layers.*",
        "mlp.up",
    ]
    for name in names:
        for pattern in patterns:
            assert skip_pattern_matches(pattern, name) == (not should_convert_module(name, [pattern])), (
                pattern,
                name,
            )
    # the trap: the short name keeps nothing below it, the full prefix keeps the whole encoder
    vision = "model.vision_model.encoder.layers.0.mlp.fc1"
    assert not skip_pattern_matches("vision_model", vision) and skip_pattern_matches(
        "model.vision_model", vision
    )


def test_paper_regex_on_an_idefics2_8b_shaped_model() -> None:
    """The published regex adapts exactly the 248 intended layers of the real architecture."""
    from transformers import AutoModelForImageTextToText, Idefics2Config

    config = Idefics2Config(  # the shapes of HuggingFaceM4/idefics2-8b (Mistral-7B + SigLIP)
        text_config={
            "model_type": "mistral",
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "vocab_size": 32003,
        },
        vision_config={
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_hidden_layers": 27,
            "num_attention_heads": 16,
            "image_size": 980,
            "patch_size": 14,
        },
        perceiver_config={
            "hidden_size": 4096,
            "resampler_n_latents": 64,
            "resampler_depth": 3,
            "resampler_n_heads": 16,
            "resampler_head_dim": 96,
            "num_key_value_heads": 4,
        },
    )
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    modules = dict(model.named_modules())
    matched = {n for n in modules if re.fullmatch(LORA_PRESETS["paper"], n)}
    assert all(isinstance(modules[n], torch.nn.Linear) for n in matched)
    text = {n for n in matched if n.startswith("model.text_model.layers.")}
    perceiver = {n for n in matched if n.startswith("model.connector.perceiver_resampler.layers.")}
    modality = {n for n in matched if n.startswith("model.connector.modality_projection.")}
    assert (len(text), len(perceiver), len(modality)) == (32 * 7, 3 * 7, 3)
    assert matched == text | perceiver | modality
    vision_linear = [
        n
        for n, m in modules.items()
        if n.startswith("model.vision_model.") and isinstance(m, torch.nn.Linear)
    ]
    assert len(vision_linear) == 27 * 6 and not matched & set(vision_linear)
    assert "lm_head" not in matched


def test_load_idefics2_never_trusts_remote_code_and_reads_only_safetensors(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModelForImageTextToText

    seen: dict[str, Any] = {}

    def fake(path: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", fake)
    with pytest.raises(RuntimeError, match="stop here"):
        load_idefics2(tiny_dir)
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is True
    assert seen["local_files_only"] is True


def test_load_idefics2_names_a_missing_or_wrong_model_in_one_line(tmp_path: Path, tiny_dir: Path) -> None:
    cases = [
        (tmp_path / "no_such_model", "model folder not found"),
        ("./relative/missing/model", "model folder not found"),
        (tiny_dir / "config.json", "is a file, not a model folder"),
        (tmp_path, "no config.json"),
    ]
    for path, message in cases:
        with pytest.raises(MedVQAError, match=message) as info:
            load_idefics2(path)
        assert "\n" not in str(info.value)


def test_adapter_folders_are_checked_with_one_line_errors(tmp_path: Path) -> None:
    model = add_lora(_fresh())
    good = tmp_path / "adapter"
    model.save_pretrained(good)
    assert check_adapter_folder(good) == good
    with pytest.raises(MedVQAError, match="adapter folder not found"):
        check_adapter_folder(tmp_path / "missing")
    with pytest.raises(MedVQAError, match="is a file"):
        check_adapter_folder(good / "adapter_config.json")
    cfg = json.loads((good / "adapter_config.json").read_text())

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "adapter_config.json").write_text("{not json")
    with pytest.raises(MedVQAError, match=r"corrupt.adapter_config\.json: not a readable JSON"):
        load_adapter(_fresh(), corrupt)

    other = tmp_path / "prefix"
    other.mkdir()
    (other / "adapter_config.json").write_text(json.dumps({**cfg, "peft_type": "PREFIX_TUNING"}))
    with pytest.raises(MedVQAError, match="peft_type is 'PREFIX_TUNING'"):
        check_adapter_folder(other)

    # an adapter of another rank than its config says: shapes do not fit the base model
    wrong = tmp_path / "wrong_rank"
    wrong.mkdir()
    (wrong / "adapter_model.safetensors").write_bytes((good / "adapter_model.safetensors").read_bytes())
    (wrong / "adapter_config.json").write_text(json.dumps({**cfg, "r": 4}))
    with pytest.raises(MedVQAError, match=r"does not fit this base model \(48 weight\(s\)") as info:
        load_adapter(_fresh(), wrong)
    assert "\n" not in str(info.value)
