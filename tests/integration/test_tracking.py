"""--report-to tensorboard: training logs and evaluation summaries are written offline and read back."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from medvqa._errors import MedVQAError
from medvqa._tracking import check_report_to
from tests.integration.training_helpers import tiny_config, vqa_samples

pytestmark = pytest.mark.train


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    events = list(folder.rglob("events.out.tfevents.*"))
    assert events, f"no event file under {folder}"
    out: dict[str, list[tuple[int, float]]] = {}
    for path in events:
        acc = EventAccumulator(str(path))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def test_training_losses_go_to_tensorboard(tmp_path: Path) -> None:
    from medvqa.training import run_stage

    cfg = tiny_config(tmp_path / "stage", max_steps=2, logging_steps=1, report_to="tensorboard")
    result = run_stage(cfg, train_samples=vqa_samples(tmp_path / "data", 4), progress=False)
    scalars = _scalars(tmp_path / "stage" / "tensorboard")
    losses = [r["loss"] for r in result.loss_history if "loss" in r]
    assert [round(v, 4) for _, v in sorted(scalars["train/loss"])] == [round(v, 4) for v in losses]
    assert cfg.fingerprint() == cfg.replace(report_to="none").fingerprint(), "tracking is not part of the run"


def test_evaluation_summary_goes_to_tensorboard(tmp_path: Path) -> None:
    from medvqa.models import tiny_idefics2
    from medvqa.training import predict_and_score

    model, processor = tiny_idefics2(seed=0)
    samples = vqa_samples(tmp_path / "data", 4, split="test")
    result = predict_and_score(
        model,
        processor,
        samples,
        output_dir=tmp_path / "eval",
        name="row",
        n_boot=20,
        report_to="tensorboard",
    )
    scalars = _scalars(tmp_path / "eval" / "tensorboard" / "row")
    flat = {k: v for k, v in result.flat().items() if isinstance(v, int | float)}
    assert set(scalars) == set(flat)
    for key, value in flat.items():
        assert scalars[key] == [(0, pytest.approx(value, rel=1e-6))], key


def test_unknown_or_missing_backends_fail_early(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="report_to"):
        check_report_to("comet")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(MedVQAError, match="pip install wandb"):
        check_report_to("wandb")
