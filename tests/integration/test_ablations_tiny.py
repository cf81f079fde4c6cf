"""Every ablation end to end through the tiny offline Idefics2 (transforms, generation, probes, report),
and the swap on the real VQA-RAD release when it is present."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from medvqa.models import tiny_idefics2

    return tiny_idefics2(seed=0)


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.train
def test_every_ablation_through_the_tiny_model(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    from medvqa.data import load, sample_root
    from medvqa.probes import run_ablations
    from medvqa.transforms import NonsenseQuestions, parse_transforms

    model, processor = tiny
    samples = list(load("vqa_rad", sample_root() / "vqa_rad", split="test"))[:6]
    transforms = parse_transforms(
        "swap,swap_index,blank,noise,noimage,expert,expert_prepend,noimage+expert", seed=1
    )
    pool = tuple(s.image for s in samples if s.image is not None)
    questions = list(load("med_halt", sample_root() / "med_halt", split="train"))[:3]
    nonsense = {
        "nonsense": NonsenseQuestions(pool=pool, seed=1)(questions),
        "nonsense_plain": NonsenseQuestions(pool=pool, seed=1, with_options=False)(questions),
    }
    out = tmp_path / "abl"
    options: dict[str, Any] = {
        "nonsense": nonsense,
        "seed": 1,
        "n_boot": 50,
        "batch_size": 4,
        "max_new_tokens": 4,
        "nonsense_max_new_tokens": 6,
        "progress": False,
    }
    report = run_ablations(model, processor, samples, transforms, out, **options)
    ids = [s.id for s in samples]
    baseline = _read(out / "predictions" / "baseline.jsonl")
    assert sorted(r["id"] for r in baseline) == sorted(ids)
    assert all("transforms" not in r["metadata"] for r in baseline)
    for name, transform in transforms.items():
        rows = _read(out / "predictions" / f"{name}.jsonl")
        assert sorted(r["id"] for r in rows) == sorted(ids), name
        assert {r["metadata"]["transforms"] for r in rows} == {transform.tag}, name
    swapped = {r["id"]: r for r in _read(out / "predictions" / "swap.jsonl")}
    originals = {s.id: s for s in samples}
    for sample_id, row in swapped.items():
        donor = originals[row["metadata"]["swap_source_id"]]
        own = originals[sample_id]
        assert donor.image is not None and own.image is not None
        assert donor.image.content_hash() != own.image.content_hash()
        assert row["image"] == donor.image.path
    assert all(r["image"] is None for r in _read(out / "predictions" / "noimage.jsonl"))
    assert all(
        str(r["image"]).startswith("blank:0:378x378") for r in _read(out / "predictions" / "blank.jsonl")
    )
    expert_rows = _read(out / "predictions" / "expert.jsonl")
    assert all(
        r["metadata"]["prompt_instruction"].startswith("You are an expert radiologist") for r in expert_rows
    )
    nonsense_rows = _read(out / "predictions" / "nonsense.jsonl")
    assert len(nonsense_rows) == 3 and all("Options:" in r["question"] for r in nonsense_rows)
    assert all(r["image"] is not None for r in nonsense_rows)

    assert [r.name for r in report.reliance] == list(transforms)
    assert all(r.n == 6 for r in report.reliance)
    assert report.reliance[0].difference("accuracy").n == 6
    assert [a.name for a in report.abstention] == ["nonsense", "nonsense_plain"]
    assert all(a.n == 3 for a in report.abstention)
    md = (out / "report.md").read_text(encoding="utf-8")
    assert (
        "## Paired differences against the normal run" in md and "## Abstention on nonsense questions" in md
    )
    saved = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert len(saved["reliance"]) == len(transforms)
    settings = json.loads((out / "ablations.json").read_text(encoding="utf-8"))
    assert settings["transforms"]["swap"] == {
        "type": "swap_images",
        "seed": 1,
        "rule": "content",
        "within": [],
        "fallback": "error",
    }

    # A second run with the same output resumes from the files: nothing is generated again.
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("generate was called although every prediction file is complete")

    original = model.generate
    model.generate = refuse
    try:
        again = run_ablations(model, processor, samples, transforms, out, **options)
    finally:
        model.generate = original
    assert again.to_dict() == report.to_dict()


@pytest.mark.train
def test_ablate_command_with_the_tiny_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from medvqa.cli import main

    out = tmp_path / "cli"
    code = main(
        [
            "ablate",
            "--model", "tiny",
            "--dataset", "vqa_rad",
            "--split", "test",
            "--limit", "4",
            "--transform", "swap,noimage,nonsense",
            "--nonsense-limit", "2",
            "--max-new-tokens", "3",
            "--nonsense-max-new-tokens", "3",
            "--n-boot", "20",
            "--output", str(out),
            "--no-progress",
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "swap: accuracy drop" in printed and "nonsense: abstained on" in printed
    for name in ("baseline", "swap", "noimage", "nonsense"):
        assert (out / "predictions" / f"{name}.jsonl").is_file()
    assert (out / "report.md").is_file()
    assert (
        main(
            [
                "ablate",
                "--model",
                "tiny",
                "--dataset",
                "vqa_rad",
                "--transform",
                "rotate",
                "--output",
                str(out),
            ]
        )
        == 1
    )
    assert "unknown transform 'rotate'" in capsys.readouterr().err


@pytest.mark.data
def test_swap_on_real_vqa_rad(shared_data: Path) -> None:
    """On VQA-RAD test (451 questions, about two per image), the content swap never returns an
    image with the same content, while the paper's index rule does for some questions."""
    from collections import Counter

    from medvqa.data import load
    from medvqa.transforms import SwapImages

    test = list(load("vqa_rad", shared_data / "vqa_rad", split="test"))
    assert len(test) == 451
    hashes = {s.id: s.image.content_hash() for s in test if s.image is not None}
    assert len(set(hashes.values())) < len(test)  # several questions share an image
    swapped = SwapImages(seed=0)(test)
    assert all(s.image is not None and s.image.content_hash() != hashes[s.id] for s in swapped)
    assert Counter(s.image.path for s in swapped if s.image) == Counter(s.image.path for s in test if s.image)
    paper = SwapImages(seed=0, rule="index")(test)
    same = sum(s.image is not None and s.image.content_hash() == hashes[s.id] for s in paper)
    assert same > 0
    by_organ = SwapImages(seed=0, within=("organ",), fallback="pool")(test)
    by_id = {s.id: s for s in test}
    for s in by_organ:
        assert s.image is not None and s.image.content_hash() != hashes[s.id]
        if not s.metadata.get("swap_pooled"):
            assert by_id[str(s.metadata["swap_source_id"])].metadata["organ"] == s.metadata["organ"]
