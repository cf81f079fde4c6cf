"""The ``as_run`` evaluation mode: LoRA dropout really active at inference, seeded; the paper's precision."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("peft")
pytestmark = pytest.mark.train

import torch  # noqa: E402

from medvqa._errors import MedVQAError  # noqa: E402
from medvqa.models import active_dropout, add_lora, tiny_idefics2  # noqa: E402
from medvqa.records import ImageRef, VQASample  # noqa: E402
from medvqa.training import AS_RUN_NOTE, as_run_loading, predict_and_score  # noqa: E402


def _samples(n: int) -> list[VQASample]:
    from PIL import Image

    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (40, 32), (40 * i % 256, 90, 200)).save(buf, "PNG")
        out.append(
            VQASample(
                id=f"demo:{i}",
                question=["Is there a fracture?", "What organ is shown in this image?"][i % 2],
                answer="no",
                answer_type="closed",
                answer_type_source="annotation",
                dataset="demo",
                split="test",
                image=ImageRef(data=buf.getvalue(), name=f"img{i}.png"),
            )
        )
    return out


@pytest.fixture(scope="module")
def adapted() -> tuple[Any, Any]:
    """The tiny model with a LoRA adapter (dropout 0.5) whose B matrices are not zero, in eval mode."""
    model, processor = tiny_idefics2(seed=0)
    peft_model = add_lora(model, preset="paper", dropout=0.5)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 2.0)
    peft_model.eval()
    return peft_model, processor


def _logits(model: Any, processor: Any, seed: int | None) -> torch.Tensor:
    from medvqa.collate import GenerationCollator

    batch = GenerationCollator(processor)(_samples(2))
    with torch.inference_mode():
        if seed is None:
            return model(**batch).logits
        with active_dropout(model, seed) as n:
            assert n > 0
            return model(**batch).logits


def test_dropout_is_active_and_seeded(adapted: tuple[Any, Any]) -> None:
    model, processor = adapted
    plain_a, plain_b = _logits(model, processor, None), _logits(model, processor, None)
    assert torch.equal(plain_a, plain_b)  # eval mode alone: deterministic
    s0, s0_again, s1 = (_logits(model, processor, s) for s in (0, 0, 1))
    assert torch.equal(s0, s0_again)
    assert not torch.equal(s0, s1)
    assert not torch.equal(s0, plain_a)
    assert not model.training  # the model's mode is left alone
    assert torch.equal(_logits(model, processor, None), plain_a)  # hooks removed on exit


def test_active_dropout_counts_only_dropout_with_p_above_zero() -> None:
    model, _ = tiny_idefics2(seed=0)  # Idefics2's own dropout probabilities are 0
    with active_dropout(model, 0) as n:
        assert n == 0
    with active_dropout(add_lora(model, dropout=0.1), 0) as n:
        assert n == len([m for m in model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]) > 0


def _as_run(model: Any, processor: Any, out: Path, name: str, seed: int) -> list[str]:
    result = predict_and_score(
        model,
        processor,
        _samples(4),
        output_dir=out,
        name=name,
        batch_size=1,
        max_new_tokens=8,
        n_boot=0,
        progress=False,
        as_run=True,
        dropout_seed=seed,
    )
    assert result.info["as_run"] is True and result.info["dropout_seed"] == seed
    assert result.info["active_dropout_modules"] > 0 and result.info["as_run_note"] == AS_RUN_NOTE
    return [p.prediction for p in result.predictions]


def test_as_run_evaluation_same_seed_identical_other_seed_differs(
    adapted: tuple[Any, Any], tmp_path: Path
) -> None:
    model, processor = adapted
    a = _as_run(model, processor, tmp_path, "a", seed=0)
    b = _as_run(model, processor, tmp_path, "b", seed=0)
    c = _as_run(model, processor, tmp_path, "c", seed=1)
    assert a == b
    assert a != c
    fair = predict_and_score(
        model,
        processor,
        _samples(4),
        output_dir=tmp_path,
        name="fair",
        batch_size=1,
        max_new_tokens=8,
        n_boot=0,
        progress=False,
    )
    assert fair.info["as_run"] is False
    assert [p.prediction for p in fair.predictions] != a


def test_as_run_refuses_batches_and_resuming(adapted: tuple[Any, Any], tmp_path: Path) -> None:
    model, processor = adapted
    kwargs: dict[str, Any] = {
        "output_dir": tmp_path,
        "n_boot": 0,
        "progress": False,
        "as_run": True,
        "max_new_tokens": 2,
    }
    with pytest.raises(MedVQAError, match="one question at a time"):
        predict_and_score(model, processor, _samples(2), name="x", batch_size=2, **kwargs)
    predict_and_score(model, processor, _samples(2), name="x", batch_size=1, **kwargs)
    with pytest.raises(MedVQAError, match="cannot resume"):
        predict_and_score(model, processor, _samples(2), name="x", batch_size=1, **kwargs)


def test_as_run_refuses_shards_and_length_sorting(
    adapted: tuple[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, processor = adapted
    kwargs: dict[str, Any] = {"output_dir": tmp_path, "n_boot": 0, "progress": False, "as_run": True}
    with pytest.raises(MedVQAError, match="input order"):
        predict_and_score(
            model, processor, _samples(2), name="s", batch_size=1, sort_by_length=True, **kwargs
        )
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(MedVQAError, match="one process"):
        predict_and_score(model, processor, _samples(2), name="d", batch_size=1, **kwargs)
    assert not list(tmp_path.iterdir()), "refused before anything is written"


def test_as_run_loading_is_the_papers_precision() -> None:
    assert as_run_loading(None) == ("nf4", "fp16")
    assert as_run_loading("some/adapter") == ("none", "fp16")


@pytest.fixture(scope="module")
def adapter_dir(adapted: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("adapter")
    adapted[0].save_pretrained(folder)
    return folder


def test_cli_predict_as_run_is_seeded_and_refuses_resuming(
    adapter_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from medvqa.cli import main

    def run(name: str, seed: int) -> list[str]:
        out = tmp_path / f"{name}.jsonl"
        argv = ["predict", "--model", "tiny", "--adapter", str(adapter_dir), "--dataset", "vqa_rad"]
        argv += ["--limit", "3", "--max-new-tokens", "6", "--no-progress", "--output", str(out)]
        assert main([*argv, "--as-run", "--dropout-seed", str(seed)]) == 0
        settings = json.loads(out.with_suffix(".run.json").read_text())
        assert settings["as_run"] is True and settings["dropout_seed"] == seed and settings["batch_size"] == 1
        assert settings["quantization"] is None  # an adapter is evaluated on an unquantized base
        assert main([*argv, "--as-run", "--dropout-seed", str(seed)]) != 0
        assert "cannot resume" in capsys.readouterr().err
        return [json.loads(line)["prediction"] for line in out.read_text().splitlines()]

    a, b, c = run("a", 0), run("b", 0), run("c", 1)
    assert a == b and a != c
