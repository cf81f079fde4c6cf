"""``medvqa export``: a Hub-ready adapter folder whose model card states the run's metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")
yaml = pytest.importorskip("yaml")

from medvqa._errors import MedVQAError  # noqa: E402
from medvqa.cli import main  # noqa: E402
from tests.integration.training_helpers import tiny_config, vqa_samples  # noqa: E402

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny stage with one evaluation's scores in its folder."""
    from medvqa.training import load_trained_model, predict_and_score, run_stage

    root = tmp_path_factory.mktemp("run")
    cfg = tiny_config(root / "stage", max_steps=1)
    result = run_stage(cfg, train_samples=vqa_samples(root / "data", 4), progress=False)
    model, processor = load_trained_model("tiny", result.adapter_dir, quantization="none")
    test = vqa_samples(root / "data", 6, split="test")
    predict_and_score(
        model, processor, test, output_dir=root / "stage", name="eval", n_boot=50, progress=False
    )
    return root / "stage"


def _front_matter(card: str) -> dict[str, Any]:
    assert card.startswith("---\n")
    meta: dict[str, Any] = yaml.safe_load(card.split("---\n")[1])
    return meta


def test_export_writes_a_loadable_adapter_and_a_card_with_the_scores(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "hub"
    assert main(["export", str(run), str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "training_config.json"} <= names
    assert "tokenizer_config.json" in names and any("processor" in n or "preprocessor" in n for n in names)
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny"

    meta = _front_matter((out / "README.md").read_text())
    assert meta["base_model"] == "tiny" and meta["library_name"] == "peft" and "vqa_rad" in meta["datasets"]
    from medvqa.metrics import read_scores

    agg = read_scores(run / "eval.scores.json").run("eval", "paper").aggregates["containment"]
    assert agg.value is not None and agg.ci_low is not None and agg.ci_high is not None
    metrics = meta["model-index"][0]["results"][0]["metrics"]
    match = [
        m for m in metrics if f"profile paper, n={agg.denominator}" in m["name"] and m["type"] == agg.name
    ]
    assert match and match[0]["value"] == pytest.approx(agg.value, abs=1e-5)
    assert f"[{agg.ci_low:.4f}, {agg.ci_high:.4f}]" in match[0]["name"]
    assert "CC0" in (out / "README.md").read_text(), "the data's licence is stated"

    from peft import PeftModel
    from transformers import AutoProcessor

    from medvqa.models import tiny_idefics2

    loaded = PeftModel.from_pretrained(tiny_idefics2(seed=0)[0], str(out))
    assert loaded.peft_config["default"].r == tiny_config(tmp_path).lora_r
    assert AutoProcessor.from_pretrained(str(out)).tokenizer is not None


def test_export_refuses_unfinished_runs_and_full_folders(run: Path, tmp_path: Path) -> None:
    from medvqa.export import export_adapter

    with pytest.raises(MedVQAError, match=r"result\.json"):
        export_adapter(tmp_path, tmp_path / "x")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    with pytest.raises(MedVQAError, match="not empty"):
        export_adapter(run, full)


def test_push_uploads_the_folder(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    calls: list[tuple[str, Any]] = []

    class FakeApi:
        def create_repo(self, repo_id: str, **kwargs: Any) -> None:
            calls.append(("create", repo_id))

        def upload_folder(self, **kwargs: Any) -> str:
            calls.append(("upload", kwargs))
            return "https://huggingface.co/me/x/commit/abc"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    out = tmp_path / "hub"
    assert main(["export", str(run), str(out), "--push", "me/x"]) == 0
    assert calls[0] == ("create", "me/x")
    assert calls[1][1]["folder_path"] == str(out) and calls[1][1]["repo_id"] == "me/x"
