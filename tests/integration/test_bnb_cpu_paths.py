"""4-bit models run on every x86 CPU: bitsandbytes' packed (AVX512-BF16) path and its plain path.

The packed path is forced with tests/bnb_cpu.py, so a CPU without AVX512-BF16 covers it too.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("bitsandbytes")
pytestmark = pytest.mark.train

import torch  # noqa: E402

from medvqa.models import QuantizationSettings, load_idefics2, save_tiny_idefics2, skip_modules  # noqa: E402
from tests.bnb_cpu import PACK_TILE_N, CpuPath, force_cpu_4bit_path  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
BLOCKSIZE = 64
"""bitsandbytes' 4-bit block size (what transformers' ``BitsAndBytesConfig`` uses)."""


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_idefics2(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def batch(tiny_dir: Path) -> Any:
    from PIL import Image
    from transformers import AutoProcessor

    processor: Any = AutoProcessor.from_pretrained(tiny_dir, local_files_only=True)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a fracture?"}]}
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    images = [[Image.new("RGB", (40, 40), (10, 120, 200))]]
    return processor(text=[text], images=images, return_tensors="pt")


def _load(tiny_dir: Path, path: CpuPath, **settings: Any) -> Any:
    with force_cpu_4bit_path(path):
        q = QuantizationSettings(compute_dtype="float32", **settings)
        return load_idefics2(tiny_dir, quantization=q, dtype="float32")[0]


def _packed(model: Any) -> list[bool]:
    return [
        bool(getattr(m.weight.quant_state, "packing_format_for_cpu", False))
        for m in model.modules()
        if type(m).__name__ == "Linear4bit"
    ]


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_every_quantizable_layer_fits_the_packed_cpu_layout(size: str) -> None:
    """The packed layout tiles 32 output rows and whole 64-wide input blocks per row."""
    from transformers import Idefics2ForConditionalGeneration

    from medvqa.models._tiny import _build_config

    with torch.device("meta"):
        model = Idefics2ForConditionalGeneration(_build_config(1024, size))
    skips = skip_modules(QuantizationSettings())
    layers = [
        (name, m.in_features, m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not any(name.startswith(s) for s in skips)
    ]
    assert len(layers) > 20
    misfits = [x for x in layers if x[1] % BLOCKSIZE or x[2] % PACK_TILE_N]
    assert misfits == []


def test_forcing_the_packed_path_runs_bitsandbytes_own_repacking() -> None:
    """Guard of the helper itself: a layer narrower than a block fails as on an AVX512-BF16 CPU."""
    import bitsandbytes as bnb

    with force_cpu_4bit_path("packed"):
        layer = bnb.nn.Linear4bit(32, 32, bias=False, compute_dtype=torch.float32, quant_type="nf4")
        layer = layer.to("cpu").eval()
        layer.weight = bnb.nn.Params4bit(
            torch.randn(32, 32), requires_grad=False, quant_type="nf4"
        )._quantize("cpu")
        with torch.no_grad(), pytest.raises(RuntimeError, match="is invalid for input of size"):
            layer(torch.randn(2, 32))


@pytest.mark.parametrize(
    ("path", "settings"),
    [
        ("plain", {"mode": "nf4"}),
        ("packed", {"mode": "nf4"}),
        ("packed", {"mode": "fp4", "double_quant": True}),
    ],
)
def test_quantized_tiny_model_runs_in_eval_without_grad(
    tiny_dir: Path, batch: Any, path: CpuPath, settings: dict[str, Any]
) -> None:
    model = _load(tiny_dir, "plain" if path == "plain" else "packed", **settings)
    reference = _load(tiny_dir, "plain", **settings)
    assert not any(_packed(model)) and not any(_packed(reference))
    with force_cpu_4bit_path(path), torch.no_grad():
        logits = model(**batch).logits
        expected = reference(**batch).logits
        generated = model.generate(**batch, max_new_tokens=4, do_sample=False)
    flags = _packed(model)
    assert flags and all(flags) == (path == "packed") and any(flags) == (path == "packed")
    assert torch.isfinite(logits).all()
    # The packed kernel multiplies in bfloat16: the two paths agree to bfloat16 precision.
    assert (logits - expected).abs().max() <= 0.02 * expected.abs().max()
    assert batch["input_ids"].shape[1] < generated.shape[1] <= batch["input_ids"].shape[1] + 4


def test_saving_a_packed_layer_scrambles_its_scales_in_bitsandbytes(tiny_dir: Path, batch: Any) -> None:
    """Why training never packs: bitsandbytes' unpacking (run by ``state_dict()``) leaves the
    scales in the packed layout, so the layer computes something else afterwards."""
    model = _load(tiny_dir, "packed", mode="nf4")
    with force_cpu_4bit_path("packed"), torch.no_grad():
        before = model(**batch).logits
        model.state_dict()
        after = model(**batch).logits
    assert (after - before).abs().max() > 0.05 * before.abs().max()


@pytest.mark.parametrize("double_quant", [False, True])
def test_a_model_prepared_for_training_never_packs(tiny_dir: Path, batch: Any, double_quant: bool) -> None:
    """Evaluating during training, then saving the adapter, leaves the base model unchanged."""
    from peft import get_peft_model_state_dict

    from medvqa.models import add_lora

    model = add_lora(_load(tiny_dir, "packed", mode="nf4", double_quant=double_quant))
    model.eval()
    with force_cpu_4bit_path("packed"), torch.no_grad():
        before = model(**batch).logits
        assert not any(_packed(model))
        get_peft_model_state_dict(model)
        model.state_dict()
        after = model(**batch).logits
    assert torch.equal(before, after)


def test_adding_lora_to_an_evaluated_model_unpacks_it_in_order(tiny_dir: Path, batch: Any) -> None:
    from medvqa.models import add_lora

    base = _load(tiny_dir, "packed", mode="nf4")
    with force_cpu_4bit_path("packed"), torch.no_grad():
        packed = base(**batch).logits
        model = add_lora(base).eval()
        assert not any(_packed(model))
        unpacked = model(**batch).logits  # LoRA starts as the identity (B = 0)
    reference = _load(tiny_dir, "plain", mode="nf4")
    with torch.no_grad():
        expected = reference(**batch).logits
    # same weights as the packed inference used (scales rounded to bfloat16), not scrambled ones
    assert (unpacked - packed).abs().max() <= 0.02 * packed.abs().max()
    assert (unpacked - expected).abs().max() <= 0.02 * expected.abs().max()


_SIMULATE_AVX512BF16 = """
import importlib.abc, sys

class _AsOnAvx512Bf16(importlib.abc.MetaPathFinder):
    # bitsandbytes decides when its CPU backend is imported whether to try the kernel hub
    def find_spec(self, name, path=None, target=None):
        if name == "bitsandbytes.backends.cpu.ops":
            sys.modules["bitsandbytes.functional"].has_avx512bf16 = lambda: True
        return None

sys.meta_path.insert(0, _AsOnAvx512Bf16())
sys.modules["kernels"] = None  # not installed: the hub kernel cannot be loaded
"""


def _import_log(medvqa_first: bool) -> str:
    code = _SIMULATE_AVX512BF16 + ("import medvqa.models\n" if medvqa_first else "") + "import bitsandbytes\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_the_kernel_hub_notice_of_bitsandbytes_is_silenced() -> None:
    # Without medvqa's filter, bitsandbytes on an AVX512-BF16 CPU prints the notice...
    assert "Failed to load CPU gemm_4bit_forward from kernels-community" in _import_log(medvqa_first=False)
    # ...which medvqa drops, and only it.
    assert "kernels-community" not in _import_log(medvqa_first=True)


def test_the_filter_drops_only_that_notice(caplog: pytest.LogCaptureFixture) -> None:
    from medvqa.models._quant import KERNEL_HUB_NOTICE

    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning(KERNEL_HUB_NOTICE + ": %s. Please make sure ...", "No module named 'kernels'")
        logger.warning("another warning from bitsandbytes")
    assert [r.getMessage() for r in caplog.records] == ["another warning from bitsandbytes"]


def test_quantizing_the_tiny_model_leaves_no_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medvqa.training import StageConfig, load_base_model

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model, _ = load_base_model(
        StageConfig(name="s", model="tiny", quantization="nf4", output_dir=str(tmp_path / "o"))
    )
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("medvqa-tiny-")] == []
