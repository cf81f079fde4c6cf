"""Batched generation on the tiny Idefics2: batch invariance, streaming, resuming, metadata."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
pytestmark = pytest.mark.train

from medvqa._errors import MedVQAError  # noqa: E402
from medvqa._io import read_jsonl  # noqa: E402
from medvqa.generation import generate_answers, stop_token_ids  # noqa: E402
from medvqa.models import tiny_idefics2  # noqa: E402
from medvqa.records import ImageRef, Prediction, VQASample  # noqa: E402
from tests.lock_holder import lock_held_elsewhere  # noqa: E402

QUESTIONS = (
    "Is there a fracture?",
    "What organ is shown in this image?",
    "Where is the mass located?",
    "Is this an MRI?",
    "How many ribs are fractured on the left side of the chest?",
)


def _samples(n: int) -> list[VQASample]:
    from PIL import Image

    out = []
    for i in range(n):
        image = None
        if i % 4 != 3:  # every fourth sample is text-only
            buf = io.BytesIO()
            Image.new("RGB", (30 + 7 * i, 24 + 3 * i), (17 * i % 256, 90, 255 - 11 * i % 256)).save(
                buf, "PNG"
            )
            image = ImageRef(data=buf.getvalue(), name=f"img{i}.png")
        out.append(
            VQASample(
                id=f"demo:{i}",
                question=QUESTIONS[i % len(QUESTIONS)],
                answer="no" if i % 2 else "left lung",
                answer_type="closed" if i % 2 else "open",
                answer_type_source="annotation",
                dataset="demo",
                split="test",
                image=image,
                metadata={"transforms": "no_image" if image is None else "", "organ": "CHEST"},
            )
        )
    return out


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    return tiny_idefics2(seed=0)


@pytest.fixture(scope="module")
def reference(tiny: tuple[Any, Any]) -> list[Prediction]:
    model, processor = tiny
    return generate_answers(model, processor, _samples(10), batch_size=1, max_new_tokens=8, progress=False)


def test_batch_size_one_and_eight_give_identical_answers(
    tiny: tuple[Any, Any], reference: list[Prediction]
) -> None:
    model, processor = tiny
    batched = generate_answers(model, processor, _samples(10), batch_size=8, max_new_tokens=8, progress=False)
    assert [p.prediction for p in batched] == [p.prediction for p in reference]
    assert all(p.prediction for p in reference)


def test_predictions_carry_the_sample_and_the_prompt(reference: list[Prediction]) -> None:
    samples = _samples(10)
    assert [p.id for p in reference] == [s.id for s in samples]
    for p, s in zip(reference, samples):
        assert p.reference == s.answer and p.answer_type == s.answer_type and p.question == s.question
        assert p.metadata["prompt"] == "paper" and p.metadata["organ"] == "CHEST"
        assert p.metadata["transforms"] == s.metadata["transforms"]
        assert p.extracted is not None
        assert p.image == (None if s.image is None else s.image.name)
        assert p.prediction == p.prediction.strip()
        assert "<end_of_utterance>" not in p.prediction and "<image>" not in p.prediction


def test_generation_is_deterministic_and_decodes_only_new_tokens(
    tiny: tuple[Any, Any], reference: list[Prediction]
) -> None:
    model, processor = tiny
    again = generate_answers(model, processor, _samples(3), batch_size=2, max_new_tokens=8, progress=False)
    assert [p.prediction for p in again] == [p.prediction for p in reference[:3]]
    assert not any("Answer briefly" in p.prediction for p in again)
    tok = processor.tokenizer
    assert stop_token_ids(processor) == sorted(
        [tok.eos_token_id, tok.convert_tokens_to_ids("<end_of_utterance>")]
    )


@pytest.mark.parametrize("stop", ["<end_of_utterance>", "</s>"])
def test_generation_stops_at_either_stop_token(tiny: tuple[Any, Any], stop: str) -> None:
    import torch

    model, processor = tiny
    stop_id = processor.tokenizer.convert_tokens_to_ids(stop)
    head = model.lm_head
    forced = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        forced.weight.zero_()
        forced.bias.fill_(-10.0)
        forced.bias[stop_id] = 10.0
    new_lengths: list[int] = []
    original = model.generate

    def recording(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        new_lengths.append(out.shape[1] - kwargs["input_ids"].shape[1])
        return out

    # like many real checkpoints, let the model's own generation config know only </s>:
    # generate_answers must pass <end_of_utterance> itself
    own_eos = model.generation_config.eos_token_id
    model.lm_head, model.generate = forced, recording
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    try:
        preds = generate_answers(
            model, processor, _samples(2), batch_size=2, max_new_tokens=8, progress=False
        )
    finally:
        model.lm_head = head
        model.generation_config.eos_token_id = own_eos
        del model.generate
    assert new_lengths == [1]  # stopped right after the forced stop token
    assert [p.prediction for p in preds] == ["", ""]


def test_streams_and_resumes_without_redoing_or_losing_items(
    tiny: tuple[Any, Any], reference: list[Prediction], tmp_path: Path
) -> None:
    model, processor = tiny
    out = tmp_path / "preds.jsonl"
    calls: list[int] = []
    original = model.generate

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["input_ids"].shape[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    model.generate = interrupted
    try:
        with pytest.raises(KeyboardInterrupt):
            generate_answers(
                model, processor, _samples(10), batch_size=3, max_new_tokens=8, output=out, progress=False
            )
    finally:
        del model.generate
    written = [row["id"] for _, row in read_jsonl(out)]
    assert written == [f"demo:{i}" for i in range(6)]

    # a crash in the middle of a line leaves a partial record: it is dropped and redone
    with out.open("a") as fh:
        fh.write('{"id": "demo:6", "pred')
    seen: list[str] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        seen.append(str(kwargs["input_ids"].shape[0]))
        return original(*args, **kwargs)

    model.generate = counting
    try:
        with pytest.warns(UserWarning, match="partial last line"):
            preds = generate_answers(
                model, processor, _samples(10), batch_size=3, max_new_tokens=8, output=out, progress=False
            )
    finally:
        del model.generate
    assert seen == ["3", "1"]  # only the 4 missing items were generated
    rows = [row for _, row in read_jsonl(out)]
    assert [r["id"] for r in rows] == [f"demo:{i}" for i in range(10)]
    assert [p.prediction for p in preds] == [p.prediction for p in reference]
    assert [Prediction.from_dict(r).prediction for r in rows] == [p.prediction for p in reference]
    assert json.loads(out.read_text().splitlines()[0])["metadata"]["prompt"] == "paper"


def test_resuming_refuses_another_runs_file(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    model, processor = tiny
    out = tmp_path / "preds.jsonl"
    generate_answers(model, processor, _samples(2), max_new_tokens=2, output=out, progress=False)
    with pytest.raises(MedVQAError, match=r"generated with prompt 'paper'.*'expert'"):
        generate_answers(
            model, processor, _samples(2), max_new_tokens=2, prompt="expert", output=out, progress=False
        )
    with pytest.raises(MedVQAError, match="not among the samples"):
        generate_answers(model, processor, _samples(2)[1:], max_new_tokens=2, output=out, progress=False)


def test_duplicate_ids_and_bad_options_are_refused(tiny: tuple[Any, Any]) -> None:
    model, processor = tiny
    s = _samples(1)
    with pytest.raises(MedVQAError, match="appears twice"):
        generate_answers(model, processor, s + s, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        generate_answers(model, processor, s, batch_size=0, progress=False)


def test_training_mode_is_restored(tiny: tuple[Any, Any]) -> None:
    model, processor = tiny
    model.train()
    try:
        generate_answers(model, processor, _samples(1), max_new_tokens=2, progress=False)
        assert model.training
    finally:
        model.eval()


def _with_bad_image(tmp_path: Path, n: int, bad: int) -> list[VQASample]:
    """``n`` samples on image files, the ``bad``-th a truncated PNG (the first bytes of a real one)."""
    from PIL import Image

    out = []
    for i, s in enumerate(_samples(n)):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (32, 32), (10 * i, 80, 200)).save(path)
        if i == bad:
            path.write_bytes(path.read_bytes()[:40])
        out.append(VQASample(**{**s.__dict__, "image": ImageRef(path=str(path), root=str(tmp_path))}))
    return out


def test_an_unreadable_image_names_the_sample_and_the_file(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    from medvqa._errors import ImageLoadError

    model, processor = tiny
    samples = _with_bad_image(tmp_path, 3, bad=1)
    with pytest.raises(ImageLoadError) as info:
        generate_answers(
            model, processor, samples, max_new_tokens=2, output=tmp_path / "p.jsonl", progress=False
        )
    msg = str(info.value)
    assert "sample 'demo:1'" in msg and "img1.png" in msg and "on_bad_image='skip'" in msg


def test_skipping_unreadable_images_lists_them_and_writes_the_rest(
    tiny: tuple[Any, Any], tmp_path: Path
) -> None:
    model, processor = tiny
    samples = _with_bad_image(tmp_path, 4, bad=2)
    out = tmp_path / "p.jsonl"
    with pytest.warns(UserWarning, match=r"skipped 1 samples whose image cannot be decoded \('demo:2'\)"):
        preds = generate_answers(
            model,
            processor,
            samples,
            batch_size=2,
            max_new_tokens=2,
            output=out,
            progress=False,
            on_bad_image="skip",
        )
    assert [p.id for p in preds] == ["demo:0", "demo:1", "demo:3"]
    assert [row["id"] for _, row in read_jsonl(out)] == ["demo:0", "demo:1", "demo:3"]
    record = json.loads((tmp_path / "p.run.json").read_text())
    assert record["n"] == 4 and record["skipped_bad_images"] == 1
    assert record["bad_images"][0]["id"] == "demo:2" and "img2.png" in record["bad_images"][0]["error"]


def test_unreadable_images_in_dataloader_workers_are_skipped_or_named(
    tiny: tuple[Any, Any], tmp_path: Path
) -> None:
    from medvqa._errors import ImageLoadError

    model, processor = tiny
    samples = _with_bad_image(tmp_path, 5, bad=3)
    kwargs: dict[str, Any] = {"batch_size": 2, "max_new_tokens": 2, "progress": False, "num_workers": 2}
    with pytest.raises(ImageLoadError, match=r"sample 'demo:3'.*img3\.png"):
        generate_answers(model, processor, samples, output=tmp_path / "e.jsonl", **kwargs)
    out = tmp_path / "s.jsonl"
    with pytest.warns(UserWarning, match=r"skipped 1 samples"):
        preds = generate_answers(
            model, processor, samples, output=out, on_bad_image="skip", sort_by_length=True, **kwargs
        )
    assert [p.id for p in preds] == ["demo:0", "demo:1", "demo:2", "demo:4"]
    assert [row["id"] for _, row in read_jsonl(out)] == ["demo:0", "demo:1", "demo:2", "demo:4"]
    record = json.loads((tmp_path / "s.run.json").read_text())
    assert [b["id"] for b in record["bad_images"]] == ["demo:3"] and record["skipped_bad_images"] == 1


def test_a_file_without_run_record_is_resumed_only_unverified(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    model, processor = tiny
    out = tmp_path / "preds.jsonl"
    generate_answers(model, processor, _samples(2), max_new_tokens=2, output=out, progress=False)
    (tmp_path / "preds.run.json").unlink()  # a file from elsewhere, or from an older version
    before = out.read_text()
    with pytest.raises(MedVQAError, match=r"no run record \(preds.run.json\).*--resume-unverified"):
        generate_answers(model, processor, _samples(3), max_new_tokens=2, output=out, progress=False)
    assert out.read_text() == before and not (tmp_path / "preds.run.json").exists()

    run = {"model": "tiny", "adapter": None}
    generate_answers(
        model,
        processor,
        _samples(3),
        max_new_tokens=2,
        output=out,
        progress=False,
        run=run,
        resume_unverified=True,
    )
    record = json.loads((tmp_path / "preds.run.json").read_text())
    assert record["unverified_rows"] == {"n": 2, "ids": ["demo:0", "demo:1"]}
    assert record["model"] == "tiny" and record["n"] == 3
    # a later verified resume keeps saying which rows were not this run's
    generate_answers(model, processor, _samples(4), max_new_tokens=2, output=out, progress=False, run=run)
    record = json.loads((tmp_path / "preds.run.json").read_text())
    assert record["unverified_rows"]["ids"] == ["demo:0", "demo:1"] and record["n"] == 4
    with pytest.raises(MedVQAError, match=r"other settings \(model; model was 'tiny', now 'other'\)"):
        generate_answers(
            model,
            processor,
            _samples(4),
            max_new_tokens=2,
            output=out,
            progress=False,
            run={"model": "other"},
        )


def test_a_file_being_written_by_another_process_is_refused(tiny: tuple[Any, Any], tmp_path: Path) -> None:

    model, processor = tiny
    out = tmp_path / "preds.jsonl"
    with lock_held_elsewhere(out) as proc:
        with pytest.raises(
            MedVQAError, match=rf"preds.jsonl: this prediction file is being written.*pid {proc.pid}"
        ):
            generate_answers(model, processor, _samples(2), max_new_tokens=2, output=out, progress=False)
        assert not out.exists()
