"""Generation with DataLoader workers and length-sorted batches gives the same answers, in input order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

from medvqa._dataloading import restore_input_order
from medvqa.data import load, sample_root
from medvqa.generation import generate_answers
from medvqa.transforms import NoImage

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    from medvqa.models import tiny_idefics2

    return tiny_idefics2(seed=0)


@pytest.fixture(scope="module")
def samples() -> list[Any]:
    test = list(load("vqa_rad", sample_root() / "vqa_rad", split="test"))[:9]
    # text-only questions have far shorter prompts: sorting by length regroups them
    return [*test[:5], *NoImage()(test[5:])]


def test_workers_and_length_sorting_change_nothing(
    tiny: tuple[Any, Any], samples: list[Any], tmp_path: Path
) -> None:
    model, processor = tiny
    plain = generate_answers(
        model, processor, samples, batch_size=4, output=tmp_path / "a.jsonl", progress=False
    )
    seen: list[int] = []
    generate = model.generate

    def spy(**kwargs: Any) -> Any:
        seen.append(int(kwargs["input_ids"].shape[1]))
        return generate(**kwargs)

    model.generate = spy
    try:
        fast = generate_answers(
            model,
            processor,
            samples,
            batch_size=4,
            output=tmp_path / "b.jsonl",
            num_workers=2,
            sort_by_length=True,
            progress=False,
        )
    finally:
        del model.generate
    assert [p.to_dict() for p in fast] == [p.to_dict() for p in plain]
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()
    assert seen == sorted(seen, reverse=True), "batches go from the longest prompts to the shortest"


def test_an_interrupted_sorted_run_resumes_into_input_order(
    tiny: tuple[Any, Any], samples: list[Any], tmp_path: Path
) -> None:
    model, processor = tiny
    ref = tmp_path / "ref.jsonl"
    generate_answers(model, processor, samples, batch_size=3, output=ref, progress=False)
    out = tmp_path / "out.jsonl"
    generate = model.generate
    calls = []

    def stop_at_second(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return generate(**kwargs)

    model.generate = stop_at_second
    try:
        with pytest.raises(KeyboardInterrupt):
            generate_answers(
                model, processor, samples, batch_size=3, output=out, sort_by_length=True, progress=False
            )
    finally:
        del model.generate
    first = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert len(first) == 3 and first != [s.id for s in samples[:3]], "the longest prompts went first"
    generate_answers(model, processor, samples, batch_size=3, output=out, progress=False)
    assert out.read_bytes() == ref.read_bytes()


def test_restore_input_order_keeps_the_lines(tmp_path: Path, samples: list[Any]) -> None:
    path = tmp_path / "p.jsonl"
    rows = [json.dumps({"id": s.id, "x": i}) + "\n" for i, s in enumerate(samples)]
    path.write_text("".join(reversed(rows)))
    restore_input_order(path, samples)
    assert path.read_text() == "".join(rows)
    before = path.stat().st_mtime_ns
    restore_input_order(path, samples)
    assert path.stat().st_mtime_ns == before, "a file already in order is not rewritten"
