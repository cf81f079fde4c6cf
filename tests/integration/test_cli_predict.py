"""``medvqa predict`` end to end on the bundled VQA-RAD sample with the tiny model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytestmark = pytest.mark.train

from medvqa._io import read_jsonl  # noqa: E402
from medvqa.cli import main  # noqa: E402
from medvqa.records import Prediction  # noqa: E402
from tests.lock_holder import lock_held_elsewhere  # noqa: E402


def _rows(path: Path) -> list[Prediction]:
    return [Prediction.from_dict(row, file=str(path), line=n) for n, row in read_jsonl(path)]


def test_predict_writes_scoreable_predictions_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "preds.jsonl"
    argv = ["predict", "--model", "tiny", "--dataset", "vqa_rad", "--split", "test", "--limit", "3"]
    argv += ["--batch-size", "2", "--max-new-tokens", "4", "--no-progress", "--output", str(out)]
    assert main(argv) == 0
    preds = _rows(out)
    assert len(preds) == 3
    assert all(
        p.dataset == "vqa_rad" and p.split == "test" and p.metadata["prompt"] == "paper" for p in preds
    )
    assert all(p.reference and p.image for p in preds)
    run = json.loads((tmp_path / "preds.run.json").read_text())
    assert run["n"] == 3 and run["model"] == "tiny" and run["prompt"] is None and run["decoding"] == "greedy"
    assert "wrote 3 predictions" in capsys.readouterr().err
    if importlib.util.find_spec("medvqa._commands.score") is not None:
        assert main(["score", str(out)]) == 0  # the default reader of `medvqa score` accepts the file
        assert "strict" in capsys.readouterr().out

    # running again resumes: nothing is generated twice, the file is unchanged
    before = out.read_text()
    assert main(argv) == 0
    assert out.read_text() == before

    # asking for more questions appends only the missing ones
    argv[argv.index("3")] = "5"
    assert main(argv) == 0
    more = _rows(out)
    assert [p.id for p in more[:3]] == [p.id for p in preds] and len(more) == 5


def test_predict_with_adapter_and_expert_prompt(tmp_path: Path) -> None:
    from medvqa.models import add_lora, tiny_idefics2

    model = add_lora(tiny_idefics2(seed=0)[0])
    model.save_pretrained(tmp_path / "adapter")
    out = tmp_path / "expert.jsonl"
    argv = ["predict", "--model", "tiny", "--adapter", str(tmp_path / "adapter"), "--dataset", "vqa_rad"]
    argv += [
        "--limit",
        "2",
        "--prompt",
        "expert",
        "--max-new-tokens",
        "3",
        "--no-progress",
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    preds = _rows(out)
    assert [p.metadata["prompt"] for p in preds] == ["expert", "expert"]
    run = json.loads((tmp_path / "expert.run.json").read_text())
    assert run["adapted_modules"] == 24 and run["prompt"]["name"] == "expert"


def test_predict_reports_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "x.jsonl")
    base = ["predict", "--model", "tiny", "--dataset", "vqa_rad", "--no-progress", "--output", out]
    with pytest.raises(SystemExit) as bad_prompt:  # argparse: the built-in prompts are its choices
        main([*base, "--prompt", "nope"])
    assert bad_prompt.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
    assert main([*base, "--prompt", "paper", "--instruction", "Be brief."]) == 1
    assert "not both" in capsys.readouterr().err
    assert main([*base, "--split", "validation"]) == 1
    assert "validation" in capsys.readouterr().err


def test_predict_with_a_quantized_base(tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    out = tmp_path / "nf4.jsonl"
    argv = ["predict", "--model", "tiny", "--quantization", "nf4", "--dataset", "vqa_rad", "--limit", "2"]
    argv += ["--max-new-tokens", "2", "--no-progress", "--output", str(out)]
    assert main(argv) == 0
    assert len(_rows(out)) == 2
    run = json.loads((tmp_path / "nf4.run.json").read_text())
    assert run["quantization"]["mode"] == "nf4" and run["quantization"]["compute_dtype"] == "float32"


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("medvqa: error: ") and "\n" not in err, err
    return err


def test_predict_bad_model_adapter_and_dataset_are_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "x.jsonl")
    base = ["predict", "--dataset", "vqa_rad", "--limit", "1", "--no-progress", "--output", out]
    assert main([*base, "--model", str(tmp_path / "no_model")]) == 1
    assert "no_model: model folder not found" in _error_line(capsys)
    assert main([*base, "--model", "tiny", "--adapter", str(tmp_path / "no_adapter")]) == 1
    assert "no_adapter: adapter folder not found" in _error_line(capsys)
    bad = tmp_path / "bad_adapter"
    bad.mkdir()
    (bad / "adapter_config.json").write_text("{oops")
    assert main([*base, "--model", "tiny", "--adapter", str(bad)]) == 1
    assert "adapter_config.json: not a readable JSON adapter config" in _error_line(capsys)
    assert main([*base, "--model", "tiny", "--dataset", "path_vqa"]) == 1
    assert "--data is required for 'path_vqa'" in _error_line(capsys)
    with pytest.raises(SystemExit) as too_small:  # argparse: every count option is at least 1
        main([*base, "--model", "tiny", "--batch-size", "0"])
    assert too_small.value.code == 2
    assert "argument --batch-size: must be a whole number of at least 1, got '0'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # argparse: unknown dataset name
        main(["predict", "--model", "tiny", "--dataset", "vqa-rad", "--output", out])
    assert info.value.code == 2
    assert "invalid choice: 'vqa-rad'" in capsys.readouterr().err
    assert not Path(out).exists()  # nothing written by a failed start


def test_resuming_with_other_settings_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "preds.jsonl"
    argv = ["predict", "--model", "tiny", "--dataset", "vqa_rad", "--limit", "1", "--max-new-tokens", "2"]
    argv += ["--no-progress", "--output", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    before = out.read_text()
    assert main([*argv, "--prompt", "expert"]) == 1
    assert "other settings (prompt; prompt was None, now 'expert')" in _error_line(capsys)
    assert main([*argv[:-2], "--seed", "1", "--output", str(out)]) == 1
    assert "other settings (seed" in _error_line(capsys)
    assert out.read_text() == before
    assert json.loads((tmp_path / "preds.run.json").read_text())["seed"] == 0  # settings not overwritten
    assert main([*argv, "--batch-size", "3"]) == 0  # batch size does not change answers


def test_predict_help_explains_every_option_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = capsys.readouterr().out
    options = [
        "--model", "--adapter", "--dataset", "--data", "--split", "--prompt", "--instruction", "--limit",
        "--batch-size", "--max-new-tokens", "--quantization", "--dtype", "--seed", "--output", "--no-progress",
    ]  # fmt: skip
    for option in options:
        assert option in text
    assert text.count("  medvqa predict --model") >= 3 and "resumes" in text


def test_a_second_predict_on_the_same_output_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    out = tmp_path / "preds.jsonl"
    with lock_held_elsewhere(out) as first:
        argv = ["predict", "--model", "tiny", "--dataset", "vqa_rad", "--limit", "1", "--no-progress"]
        assert main([*argv, "--output", str(out)]) == 1
        line = _error_line(capsys)
        assert f"{out}: this prediction file is being written by another run (pid {first.pid}" in line
        assert f"{out}.lock" in line
    assert not out.exists() and not (tmp_path / "preds.run.json").exists()


def test_resuming_a_file_without_run_record_needs_resume_unverified(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "preds.jsonl"
    argv = ["predict", "--model", "tiny", "--dataset", "vqa_rad", "--max-new-tokens", "2", "--no-progress"]
    assert main([*argv, "--limit", "1", "--output", str(out)]) == 0
    (tmp_path / "preds.run.json").unlink()
    capsys.readouterr()
    assert main([*argv, "--limit", "2", "--output", str(out)]) == 1
    assert "no run record (preds.run.json)" in _error_line(capsys)
    assert main([*argv, "--limit", "2", "--resume-unverified", "--output", str(out)]) == 0
    run = json.loads((tmp_path / "preds.run.json").read_text())
    assert run["unverified_rows"]["n"] == 1 and run["n"] == 2 and len(_rows(out)) == 2
