"""QLoRA really runs on CPU: a 4-bit tiny Idefics2 trains, its adapter reloads exactly and merges."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("bitsandbytes")
pytest.importorskip("peft")
pytestmark = pytest.mark.train

import torch  # noqa: E402

from medvqa._errors import MedVQAError  # noqa: E402
from medvqa.collate import TrainingCollator  # noqa: E402
from medvqa.models import (  # noqa: E402
    QuantizationSettings,
    add_lora,
    load_adapter,
    load_idefics2,
    lora_report,
    quantized_module_names,
    save_tiny_idefics2,
)
from medvqa.records import ImageRef, VQASample  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_idefics2(tmp_path_factory.mktemp("tiny"), seed=0)


def _samples() -> list[VQASample]:
    from PIL import Image

    out = []
    for i, (q, a) in enumerate(
        [("Is there a fracture?", "no"), ("What organ is shown?", "liver"), ("Is the heart enlarged?", "yes")]
    ):
        buf = io.BytesIO()
        Image.new("RGB", (36, 36), (40 * i, 100, 200 - 30 * i)).save(buf, "PNG")
        out.append(
            VQASample(
                id=f"q{i}",
                question=q,
                answer=a,
                answer_type="closed" if a in ("yes", "no") else "open",
                answer_type_source="annotation",
                dataset="demo",
                split="train",
                image=ImageRef(data=buf.getvalue(), name=f"{i}.png"),
            )
        )
    return out


def _nf4(tiny_dir: Path, **kw: Any) -> tuple[Any, Any]:
    settings = QuantizationSettings(mode="nf4", compute_dtype="float32", **kw)
    return load_idefics2(tiny_dir, quantization=settings, dtype="float32")


def test_nf4_quantizes_linear_layers_but_never_lm_head(tiny_dir: Path) -> None:
    model, _ = _nf4(tiny_dir)
    names = quantized_module_names(model)
    assert "model.text_model.layers.0.self_attn.q_proj" in names
    assert "model.connector.modality_projection.gate_proj" in names
    assert any(n.startswith("model.vision_model.") for n in names)  # the paper quantized it
    assert "lm_head" not in names
    kept, _ = _nf4(tiny_dir, quantize_vision=False)
    names = quantized_module_names(kept)
    assert names and not any(n.startswith("model.vision_model.") for n in names)
    assert "lm_head" not in names


def test_int8_loads_on_cpu(tiny_dir: Path) -> None:
    model, processor = load_idefics2(tiny_dir, quantization="int8", dtype="float32")
    names = quantized_module_names(model)
    assert "model.text_model.layers.1.mlp.down_proj" in names and "lm_head" not in names
    ids = processor(text=["User: Is it normal?<end_of_utterance>\nAssistant:"], return_tensors="pt")
    with torch.no_grad():
        assert torch.isfinite(model(**ids).logits).all()


def test_qlora_trains_reloads_exactly_and_merges(tiny_dir: Path, tmp_path: Path) -> None:
    model, processor = _nf4(tiny_dir)
    model = add_lora(model, preset="paper", gradient_checkpointing=True)
    report = lora_report(model)
    assert len(report.adapted_modules) == 24 and report.trainable_params > 0
    assert model.get_base_model().is_activation_checkpointing
    checkpointed = [
        m._gradient_checkpointing_func for m in model.modules() if getattr(m, "gradient_checkpointing", False)
    ]
    assert checkpointed and all(f.keywords.get("use_reentrant") is False for f in checkpointed)
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if "lora_" in n)
    batch = TrainingCollator(processor, mode="answer")(_samples())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    torch.manual_seed(0)
    losses = []
    for _ in range(6):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5, losses

    model.eval()
    with torch.no_grad():
        trained = model(**batch).logits
    model.save_pretrained(tmp_path / "adapter")

    base, _ = _nf4(tiny_dir)
    reloaded = load_adapter(base, tmp_path / "adapter")
    assert not reloaded.training
    with torch.no_grad():
        again = reloaded(**batch).logits
    assert torch.equal(again, trained)

    full, _ = load_idefics2(tiny_dir, dtype="float32")
    unmerged = load_adapter(full, tmp_path / "adapter")
    with torch.no_grad():
        before = unmerged(**batch).logits
    merged = unmerged.merge_and_unload()
    assert not lora_report(merged).adapted_modules
    with torch.no_grad():
        after = merged(**batch).logits
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_skip_pattern_trap_on_the_tiny_model(tiny_dir: Path) -> None:
    """Why skip_modules always lists lm_head, and why patterns need the full prefix."""
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    raw = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.float32,
        llm_int8_skip_modules=["vision_model"],  # a short name, and no lm_head
    )
    model = AutoModelForImageTextToText.from_pretrained(
        tiny_dir, quantization_config=raw, dtype=torch.float32, device_map="cpu", use_safetensors=True
    )
    names = quantized_module_names(model)
    assert "lm_head" in names  # an explicit list drops transformers' default lm_head skip
    assert any(n.startswith("model.vision_model.") for n in names)  # 'vision_model' kept nothing


def test_keep_modules_patterns_are_checked_and_honoured(tiny_dir: Path) -> None:
    with pytest.raises(
        MedVQAError, match=r"keep_modules pattern 'connector' matches no linear layer.*model\.connector"
    ):
        _nf4(tiny_dir, keep_modules=("connector",))
    model, _ = _nf4(tiny_dir, keep_modules=("model.connector",))
    names = quantized_module_names(model)
    assert not any(n.startswith("model.connector.") for n in names)
    assert "model.text_model.layers.0.mlp.up_proj" in names and "lm_head" not in names
