"""Tiny fixtures shared by the training tests: samples with small images, and tiny stage configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medvqa.records import ImageRef, VQASample
from medvqa.training import StageConfig

CAPTION = "The following image is a radiology scan. Deeply analyze and diagnose this image."


def make_images(folder: Path, n: int) -> list[Path]:
    """``n`` small distinct PNG images in ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        if not p.exists():
            Image.new("RGB", (40, 36), ((i * 37) % 256, (i * 91) % 256, 120)).save(p)
        paths.append(p)
    return paths


def vqa_samples(folder: Path, n: int = 8, *, split: str = "train") -> list[VQASample]:
    """Closed and open VQA samples over small images."""
    out = []
    for i, p in enumerate(make_images(folder / "images", n)):
        answer = ("yes", "no", "left lung", "ct")[i % 4]
        out.append(
            VQASample(
                id=f"toy:{split}:{i}",
                question=f"Is there an abnormality in region {i}?",
                answer=answer,
                answer_type="closed" if answer in ("yes", "no") else "open",
                answer_type_source="annotation",
                dataset="toy",
                split=split,
                image=ImageRef(path=str(p), root=str(folder)),
            )
        )
    return out


def caption_samples(folder: Path, n: int = 8) -> list[VQASample]:
    """Stage-1 style caption samples."""
    return [
        VQASample(
            id=f"cap:train:{i}",
            question=CAPTION,
            answer=f"Axial CT of the chest showing finding {i}.",
            answer_type="open",
            answer_type_source="inferred",
            dataset="roco",
            split="train",
            task="caption",
            image=ImageRef(path=str(p), root=str(folder)),
        )
        for i, p in enumerate(make_images(folder / "captions", n))
    ]


def tiny_config(output_dir: Path, **overrides: Any) -> StageConfig:
    """A stage that runs in about a second on a CPU with the tiny model."""
    base: dict[str, Any] = {
        "name": "stage",
        "model": "tiny",
        "quantization": "none",
        "batch_size": 2,
        "grad_accum": 1,
        "max_steps": 4,
        "warmup_steps": 1,
        "save_steps": 2,
        "logging_steps": 1,
        "precision": "fp32",
        "learning_rate": 1e-3,
        "output_dir": str(output_dir),
    }
    base.update(overrides)
    return StageConfig(**base)


def adapter_weights(folder: str | Path) -> dict[str, Any]:
    """The tensors of a saved adapter."""
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "adapter_model.safetensors"))


def max_abs_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest absolute difference between two adapters with the same tensor names."""
    assert sorted(a) == sorted(b), (sorted(a), sorted(b))
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
