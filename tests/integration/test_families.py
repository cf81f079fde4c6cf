"""Every model family through the same pipeline, on its tiny offline model.

Rendering (the reference examples of each family's published chat template), the tiny
builders, exact loss masks of both masking modes, batch-invariant resumable generation that
stops on the family's end tokens, LoRA presets, and QLoRA (train, reload, merge).
"""

from __future__ import annotations

import functools
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
pytestmark = pytest.mark.train

import torch  # noqa: E402

from medvqa._errors import MedVQAError  # noqa: E402
from medvqa.collate import IGNORE_INDEX, GenerationCollator, TrainingCollator  # noqa: E402
from medvqa.generation import generate_answers, stop_token_ids  # noqa: E402
from medvqa.models import (  # noqa: E402
    FAMILIES,
    LORA_PRESETS,
    QuantizationSettings,
    detect_family,
    get_family,
    load_model,
    skip_modules,
    tiny_model,
)
from medvqa.records import ImageRef, VQASample  # noqa: E402

NAMES = sorted(FAMILIES)
OTHERS = [n for n in NAMES if n != "idefics2"]


@functools.cache
def _tiny(family: str) -> tuple[Any, Any]:
    return tiny_model(family, seed=0)


def _png(size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (120, 30, 200)) -> ImageRef:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return ImageRef(data=buf.getvalue(), name="x.png")


def _sample(sid: str, question: str, answer: str, *, image: bool = True) -> VQASample:
    return VQASample(
        id=sid,
        question=question,
        answer=answer,
        answer_type="closed" if answer in ("yes", "no") else "open",
        answer_type_source="annotation",
        dataset="demo",
        split="train",
        image=_png(color=(len(sid) * 40 % 255, 90, 200)) if image else None,
    )


SAMPLES = [
    _sample("a", "Is there a fracture?", "no"),
    _sample("b", "What organ is shown?", "the liver", image=False),
    _sample("c", "Where is the lesion located?", "left lung"),
]

# The reference examples, rendered by transformers' own engine from each published template
# (user: [image, "What organ is shown?"], assistant: "Liver").
REFERENCE = {
    "idefics2": "User:<image>What organ is shown?<end_of_utterance>\nAssistant: Liver<end_of_utterance>\n",
    "smolvlm": "<|im_start|>User:<image>What organ is shown?<end_of_utterance>\nAssistant: Liver<end_of_utterance>\n",
    "idefics3": "<|begin_of_text|>User:<image>What organ is shown?<end_of_utterance>\nAssistant: Liver<end_of_utterance>\n",
    "qwen2_vl": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|>What organ is shown?<|im_end|>\n<|im_start|>assistant\n"
    "Liver<|im_end|>\n",
    "gemma3": "<bos><start_of_turn>user\n<start_of_image>What organ is shown?<end_of_turn>\n"
    "<start_of_turn>model\nLiver<end_of_turn>\n",
    "llava": "USER: <image>\nWhat organ is shown? ASSISTANT: Liver ",
    "llava_next": "[INST] <image>\nWhat organ is shown? [/INST] Liver</s> ",
}
PROMPTS = {
    "idefics2": "User:<image>What organ is shown?<end_of_utterance>\nAssistant:",
    "smolvlm": "<|im_start|>User:<image>What organ is shown?<end_of_utterance>\nAssistant:",
    "idefics3": "<|begin_of_text|>User:<image>What organ is shown?<end_of_utterance>\nAssistant:",
    "qwen2_vl": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|image_pad|><|vision_end|>What organ is shown?<|im_end|>\n<|im_start|>assistant\n",
    "gemma3": "<bos><start_of_turn>user\n<start_of_image>What organ is shown?<end_of_turn>\n<start_of_turn>model\n",
    "llava": "USER: <image>\nWhat organ is shown? ASSISTANT:",
    "llava_next": "[INST] <image>\nWhat organ is shown? [/INST]",
}
REFERENCE["qwen2_5_vl"], PROMPTS["qwen2_5_vl"] = REFERENCE["qwen2_vl"], PROMPTS["qwen2_vl"]
MESSAGES = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What organ is shown?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "Liver"}]},
]


@pytest.mark.parametrize("template", sorted(REFERENCE))
def test_bundled_templates_render_the_reference_examples(template: str) -> None:
    from transformers.utils.chat_template_utils import render_jinja_template

    from medvqa.models import chat_template

    text = chat_template(template)
    shared = (
        Path(__file__).resolve().parents[2] / ".." / "shared" / "models" / f"{template}.chat_template.jinja"
    )
    if shared.is_file():  # the bundled copy is the published text, byte for byte
        assert shared.read_text(encoding="utf-8") == text
    bos = {"idefics3": "<|begin_of_text|>", "gemma3": "<bos>"}.get(template, "<s>")
    kwargs = {"chat_template": text, "bos_token": bos, "eos_token": "</s>"}
    rendered, _ = render_jinja_template(conversations=[MESSAGES], **kwargs)
    prompt, _ = render_jinja_template(conversations=[MESSAGES[:1]], add_generation_prompt=True, **kwargs)
    assert (rendered[0], prompt[0]) == (REFERENCE[template], PROMPTS[template])


@pytest.mark.parametrize("family", NAMES)
def test_tiny_processor_renders_with_its_own_template(family: str) -> None:
    _, processor = _tiny(family)
    template = "smolvlm" if family in ("idefics3", "smolvlm") else family
    assert processor.apply_chat_template(MESSAGES, tokenize=False) == REFERENCE[template]


def test_registry_detection_and_errors(tmp_path: Path) -> None:
    for name, fam in FAMILIES.items():
        assert set(fam.lora_presets) == {"paper", "llm_only", "connector_only", "all_linear"}
        assert fam.end_of_turn in fam.stop_tokens
        (tmp_path / "config.json").write_text(json.dumps({"model_type": fam.model_types[0]}))
        assert get_family(name) is fam
        assert detect_family(tmp_path) is fam
        assert detect_family(tmp_path, family="llava") is FAMILIES["llava"]
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "blip-2"}))
    with pytest.raises(MedVQAError, match=r"'blip-2' is not a supported .*supported: gemma3, idefics2"):
        detect_family(tmp_path)
    assert dict(FAMILIES["idefics2"].lora_presets) == {
        **LORA_PRESETS,
        "all_linear": FAMILIES["idefics2"].lora_presets["all_linear"],
    }


@pytest.mark.parametrize("family", NAMES)
def test_tiny_models_are_deterministic_wide_and_of_their_family(family: str) -> None:
    model, processor = _tiny(family)
    again, _ = tiny_model(family, seed=0)
    other, _ = tiny_model(family, seed=1)
    state, state2, state3 = model.state_dict(), again.state_dict(), other.state_dict()
    assert all(torch.equal(state[k], state2[k]) for k in state)
    assert any(not torch.equal(state[k], state3[k]) for k in state if state[k].is_floating_point())
    fam = get_family(family)
    assert model.config.model_type in fam.model_types
    assert processor.medvqa_family == family
    # every layer quantization takes fits bitsandbytes' packed CPU layout (tests/bnb_cpu.py):
    # input width a multiple of its 64-wide blocks, output width a multiple of its 32-row tiles
    skips = skip_modules(QuantizationSettings(), family)
    layers = [
        (n, m.in_features, m.out_features)
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not any(n == s or n.startswith(s + ".") for s in skips)
    ]
    assert len(layers) > 10
    assert [x for x in layers if x[1] % 64 or x[2] % 32] == []
    tok = processor.tokenizer
    for token in (fam.end_of_turn, *fam.stop_tokens, fam.image_tokens[0]):
        assert tok.convert_tokens_to_ids(token) not in (None, tok.unk_token_id), token


def _supervised(batch: dict[str, Any], row: int) -> list[int]:
    labels = batch["labels"][row]
    return labels[labels != IGNORE_INDEX].tolist()


@pytest.mark.parametrize("family", NAMES)
def test_answer_mode_supervises_exactly_the_answer_and_one_end_of_turn(family: str) -> None:
    model, processor = _tiny(family)
    fam, tok = get_family(family), processor.tokenizer
    end = tok.convert_tokens_to_ids(fam.end_of_turn)
    batch = TrainingCollator(processor, mode="answer")(SAMPLES)
    for row, sample in enumerate(SAMPLES):
        ids = _supervised(batch, row)
        assert tok.decode(ids).strip() == f"{sample.answer}{fam.end_of_turn}"
        assert ids[-1] == end and ids.count(end) == 1
    for key in fam.extra_inputs:
        assert key in batch, key
    assert torch.isfinite(model(**batch).loss)


@pytest.mark.parametrize("family", NAMES)
def test_paper_mode_supervises_every_text_token_but_never_image_or_pad(family: str) -> None:
    _, processor = _tiny(family)
    fam, tok = get_family(family), processor.tokenizer
    batch = TrainingCollator(processor, mode="paper")(SAMPLES)
    image_ids = {tok.convert_tokens_to_ids(t) for t in fam.image_tokens} - {tok.unk_token_id}
    supervised = set(batch["labels"][batch["labels"] != IGNORE_INDEX].tolist())
    assert not supervised & (image_ids | {tok.pad_token_id})
    for row, sample in enumerate(SAMPLES):
        text = tok.decode(_supervised(batch, row))
        assert sample.question in text and text.rstrip().endswith(f"{sample.answer}{fam.end_of_turn}")
        # every non-image, non-padding token after the first is supervised
        ids, labels = batch["input_ids"][row], batch["labels"][row]
        keep = batch["attention_mask"][row].bool()
        expected = [t for t in ids[keep].tolist()[1:] if t not in image_ids]
        assert labels[keep].tolist()[1:] == [
            t if t not in image_ids else IGNORE_INDEX for t in ids[keep].tolist()[1:]
        ]
        assert _supervised(batch, row) == expected


@pytest.mark.parametrize("family", OTHERS)
def test_truncation_keeps_per_token_inputs_aligned(family: str) -> None:
    _, processor = _tiny(family)
    full = TrainingCollator(processor, mode="answer")(SAMPLES[:1])
    length = full["input_ids"].shape[1] - 1
    cut = TrainingCollator(processor, mode="answer", max_length=length)(SAMPLES[:1])
    assert cut["input_ids"].shape[1] == length
    for key in get_family(family).per_token_inputs:
        assert torch.equal(cut[key], full[key][:, :length])


@pytest.mark.parametrize("family", NAMES)
def test_generation_is_left_padded_batch_invariant_and_resumable(family: str, tmp_path: Path) -> None:
    model, processor = _tiny(family)
    batch = GenerationCollator(processor)(SAMPLES)
    assert (batch["attention_mask"][:, -1] == 1).all()
    one = generate_answers(model, processor, SAMPLES, batch_size=1, max_new_tokens=6, progress=False)
    out = tmp_path / "pred.jsonl"
    generate_answers(
        model, processor, SAMPLES[:2], batch_size=2, max_new_tokens=6, progress=False, output=out
    )
    rest = generate_answers(
        model, processor, SAMPLES, batch_size=4, max_new_tokens=6, progress=False, output=out
    )
    assert [p.prediction for p in one] == [p.prediction for p in rest]
    assert len(out.read_text().splitlines()) == len(SAMPLES)
    by_length = generate_answers(
        model, processor, SAMPLES, batch_size=2, max_new_tokens=6, progress=False, sort_by_length=True
    )
    assert [p.prediction for p in by_length] == [p.prediction for p in one]


@pytest.mark.parametrize("family", NAMES)
def test_generation_stops_on_each_of_the_familys_end_tokens(family: str) -> None:
    model, processor = _tiny(family)
    tok = processor.tokenizer
    stops = stop_token_ids(processor)
    assert set(stops) >= {tok.convert_tokens_to_ids(t) for t in get_family(family).stop_tokens}
    batch = GenerationCollator(processor)(SAMPLES[:2])
    for stop in stops:

        def force(_module: Any, _inputs: Any, output: torch.Tensor, stop: int = stop) -> torch.Tensor:
            output = output.clone()
            output[..., stop] += 1e4
            return output

        handle = model.lm_head.register_forward_hook(force)
        try:
            with torch.no_grad():
                out = model.generate(
                    **batch,
                    max_new_tokens=8,
                    do_sample=False,
                    eos_token_id=stops,
                    pad_token_id=tok.pad_token_id,
                )
        finally:
            handle.remove()
        assert out.shape[1] == batch["input_ids"].shape[1] + 1


def _linear(model: Any) -> dict[str, Any]:
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def _matched(model: Any, regex: str) -> set[str]:
    return {n for n in _linear(model) if re.fullmatch(regex, n)}


@pytest.mark.parametrize("family", NAMES)
def test_lora_presets_on_the_tiny_models(family: str) -> None:
    model, _ = _tiny(family)
    fam = get_family(family)
    linear = set(_linear(model))
    sets = {p: _matched(model, fam.lora_target(p)) for p in fam.lora_presets}
    vision = {n for n in linear if n.startswith(fam.vision_prefix + ".")}
    assert sets["llm_only"] and vision
    assert sets["paper"] == sets["llm_only"] | sets["connector_only"]
    assert sets["all_linear"] == linear - {"lm_head"}
    for preset in ("paper", "llm_only", "connector_only"):
        assert not sets[preset] & (vision | {"lm_head"})
    assert bool(sets["connector_only"]) != bool(fam.lora_target_parameters.get("connector_only"))


def test_gemma3_connector_is_trained_in_full_by_paper_and_adapted_by_connector_only() -> None:
    pytest.importorskip("peft")
    from medvqa.models import add_lora, lora_report

    model, _ = tiny_model("gemma3")
    paper = add_lora(model, preset="paper")
    trainable = {n for n, p in paper.named_parameters() if p.requires_grad and "lora_" not in n}
    assert any("multi_modal_projector.modules_to_save" in n for n in trainable)
    model, _ = tiny_model("gemma3")
    with pytest.raises(MedVQAError, match="dropout=0"):
        add_lora(model, preset="connector_only")
    connector = add_lora(model, preset="connector_only", dropout=0.0)
    assert lora_report(connector).adapted_modules == ("model.multi_modal_projector",)


@pytest.mark.parametrize("family", OTHERS)
def test_unsupported_processor_and_text_only_batches(family: str) -> None:
    _, processor = _tiny(family)
    batch = TrainingCollator(processor)(SAMPLES[1:2])  # text only
    assert "pixel_values" not in batch
    with pytest.raises(MedVQAError, match="supported"):
        TrainingCollator(object(), family="nope")


@pytest.mark.slow
@pytest.mark.parametrize("family", OTHERS)
def test_qlora_trains_reloads_exactly_and_merges(family: str, tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    from medvqa.models import (
        QuantizationSettings,
        add_lora,
        load_adapter,
        lora_report,
        quantized_module_names,
    )

    folder = tmp_path / "tiny"
    from medvqa.models import save_tiny_model

    save_tiny_model(folder, family, seed=0)
    settings = QuantizationSettings(mode="nf4", compute_dtype="float32")
    model, processor = load_model(folder, quantization=settings, dtype="float32")
    assert processor.medvqa_family == family
    quantized = quantized_module_names(model)
    assert quantized and "lm_head" not in quantized
    model = add_lora(model, preset="paper")
    fam = get_family(family)
    adapted = lora_report(model).adapted_modules
    assert adapted and not [n for n in adapted if n.startswith(fam.vision_prefix + ".") or n == "lm_head"]
    batch = TrainingCollator(processor, mode="answer")(SAMPLES)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    losses = []
    for _ in range(5):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    model.eval()
    with torch.no_grad():
        trained = model(**batch).logits
    model.save_pretrained(tmp_path / "adapter")
    base, _ = load_model(folder, quantization=settings, dtype="float32")
    reloaded = load_adapter(base, tmp_path / "adapter")
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, trained)
    full, _ = load_model(folder, dtype="float32")
    unmerged = load_adapter(full, tmp_path / "adapter")
    with torch.no_grad():
        before = unmerged(**batch).logits
        after = unmerged.merge_and_unload()(**batch).logits
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", OTHERS)
def test_nf4_tiny_model_runs_on_the_packed_cpu_path(family: str, tmp_path: Path) -> None:
    """In eval without gradients bitsandbytes repacks every 4-bit layer (as on AVX512-BF16 CPUs)."""
    pytest.importorskip("bitsandbytes")
    from medvqa.models import save_tiny_model
    from tests.bnb_cpu import force_cpu_4bit_path

    folder = save_tiny_model(tmp_path / "tiny", family, seed=0)
    settings = QuantizationSettings(mode="nf4", compute_dtype="float32")
    logits = {}
    for path in ("plain", "packed"):
        with force_cpu_4bit_path(path):
            model, processor = load_model(folder, quantization=settings, dtype="float32")
            batch = GenerationCollator(processor)(SAMPLES[:2])
            with torch.no_grad():
                logits[path] = model(**batch).logits
        flags = [
            bool(getattr(m.weight.quant_state, "packing_format_for_cpu", False))
            for m in model.modules()
            if type(m).__name__ == "Linear4bit"
        ]
        assert flags and all(flags) == (path == "packed") and any(flags) == (path == "packed")
    # the packed kernel multiplies in bfloat16: the two paths agree to bfloat16 precision
    expected = logits["plain"]
    assert (logits["packed"] - expected).abs().max() <= 0.02 * expected.abs().max()


_LLAMA_8B = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
}
_SIGLIP_SO400M = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
}
_CLIP_L336 = {
    "model_type": "clip_vision_model",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "projection_dim": 768,
}
_QWEN_7B_TEXT = {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
}

# The flagship checkpoints' shapes (text, vision, connector), and the number of linear layers
# each preset adapts: (language model, connector, vision encoder).
FLAGSHIPS: dict[str, tuple[str, dict[str, Any], tuple[int, int, int]]] = {
    "idefics3": (
        "Idefics3Config",
        {
            "text_config": {"model_type": "llama", **_LLAMA_8B, "vocab_size": 128259},
            "vision_config": {**_SIGLIP_SO400M, "image_size": 364, "patch_size": 14},
            "scale_factor": 2,
        },
        (32 * 7, 1, 27 * 6),
    ),
    "smolvlm": (
        "SmolVLMConfig",  # SmolVLM2-2.2B: SmolLM2-1.7B + SigLIP so400m
        {
            "text_config": {
                "model_type": "llama",
                "hidden_size": 2048,
                "intermediate_size": 8192,
                "num_hidden_layers": 24,
                "num_attention_heads": 32,
                "num_key_value_heads": 32,
                "vocab_size": 49280,
            },
            "vision_config": {**_SIGLIP_SO400M, "image_size": 384, "patch_size": 14},
            "scale_factor": 3,
        },
        (24 * 7, 1, 27 * 6),
    ),
    "qwen2_vl": (
        "Qwen2VLConfig",
        {
            "text_config": _QWEN_7B_TEXT,
            "vision_config": {
                "depth": 32,
                "embed_dim": 1280,
                "hidden_size": 3584,
                "num_heads": 16,
                "mlp_ratio": 4,
            },
        },
        (28 * 7, 2, 32 * 4),
    ),
    "qwen2_5_vl": (
        "Qwen2_5_VLConfig",
        {
            "text_config": _QWEN_7B_TEXT,
            "vision_config": {
                "depth": 32,
                "hidden_size": 1280,
                "intermediate_size": 3420,
                "num_heads": 16,
                "out_hidden_size": 3584,
            },
        },
        (28 * 7, 2, 32 * 5),
    ),
    "gemma3": (
        "Gemma3Config",  # gemma-3-4b-it / medgemma-4b-it
        {
            "text_config": {
                "hidden_size": 2560,
                "intermediate_size": 10240,
                "num_hidden_layers": 34,
                "num_attention_heads": 8,
                "num_key_value_heads": 4,
                "head_dim": 256,
                "vocab_size": 262208,
                "sliding_window": 1024,
                "query_pre_attn_scalar": 256,
            },
            "vision_config": {
                **_SIGLIP_SO400M,
                "image_size": 896,
                "patch_size": 14,
                "vision_use_head": False,
            },
            "mm_tokens_per_image": 256,
        },
        (34 * 7, 0, 27 * 6),
    ),
    "llava": (
        "LlavaConfig",  # llava-1.5-7b-hf
        {
            "text_config": {
                "model_type": "llama",
                "hidden_size": 4096,
                "intermediate_size": 11008,
                "num_hidden_layers": 32,
                "num_attention_heads": 32,
                "vocab_size": 32064,
            },
            "vision_config": _CLIP_L336,
        },
        (32 * 7, 2, 24 * 6),
    ),
    "llava_next": (
        "LlavaNextConfig",  # llava-v1.6-mistral-7b-hf
        {
            "text_config": {"model_type": "mistral", **_LLAMA_8B, "vocab_size": 32064},
            "vision_config": _CLIP_L336,
        },
        (32 * 7, 2, 24 * 6),
    ),
}


@pytest.mark.parametrize("family", sorted(FLAGSHIPS))
def test_presets_on_the_flagship_shapes(family: str) -> None:
    """Built on the meta device (no memory): each preset adapts exactly the intended layers."""
    import transformers
    from transformers import AutoModelForImageTextToText

    class_name, kwargs, (n_lm, n_connector, n_vision) = FLAGSHIPS[family]
    config = getattr(transformers, class_name)(**kwargs)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    fam = get_family(family)
    linear = set(_linear(model))
    vision = {n for n in linear if n.startswith(fam.vision_prefix + ".")}
    counts = {p: len(_matched(model, fam.lora_target(p))) for p in fam.lora_presets}
    assert counts == {
        "paper": n_lm + n_connector,
        "llm_only": n_lm,
        "connector_only": n_connector,
        "all_linear": n_lm + n_connector + n_vision,
    }
    assert len(vision) == n_vision
    assert not _matched(model, fam.lora_target("paper")) & (vision | {"lm_head"})
    assert _matched(model, fam.lora_target("all_linear")) == linear - {"lm_head"}
    for name in fam.lora_target_parameters.get("connector_only", ()):
        assert dict(model.named_parameters())[name].dim() == 2


@pytest.mark.parametrize("family", ["qwen2_vl", "gemma3", "llava"])
def test_control_tokens_in_the_data_are_refused(family: str) -> None:
    _, processor = _tiny(family)
    token = get_family(family).end_of_turn
    bad = _sample("x", f"Is it {token} normal?", "no")
    with pytest.raises(ValueError, match="reserved token"):
        TrainingCollator(processor)([bad])
