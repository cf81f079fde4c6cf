"""The paper's recipes in examples/: every config loads, every script imports, every --tiny path runs."""

from __future__ import annotations

import importlib
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(p.stem for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
CONFIGS = sorted(EXAMPLES.glob("*.yaml"))


@pytest.fixture(autouse=True)
def _examples_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))


def test_every_row_and_figure_has_a_recipe() -> None:
    rows = {
        "base",
        "single_stage",
        "two_stage",
        "base_ood",
        "two_stage_ood",
        "swapped_images",
        "expert_prompt",
    }
    figures = {"size_sweep", "loss_curves", "human_evaluation_sheet"}
    assert rows | figures | {"nonsense_questions"} <= set(SCRIPTS)
    assert {c.stem for c in CONFIGS} >= set(SCRIPTS)
    assert (EXAMPLES / "run_all.sh").is_file()
    run_all = (EXAMPLES / "run_all.sh").read_text()
    assert all(s in run_all for s in SCRIPTS)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_its_header_is_the_command(config: Path) -> None:
    pytest.importorskip("yaml")
    from _recipes import load_recipe

    first = config.read_text().splitlines()[0]
    script = config.stem if config.stem in SCRIPTS else "single_stage"
    assert first == f"# python examples/{script}.py --config examples/{config.name}"
    recipe = load_recipe(config)
    assert recipe.stage1 or recipe.stage2 or recipe.evaluation or recipe.extra
    for stage in (recipe.stage1, recipe.stage2):
        if stage is not None:
            assert stage.model == "HuggingFaceM4/idefics2-8b" and stage.quantization == "nf4"
    if recipe.evaluation is not None:
        assert recipe.evaluation.model == "HuggingFaceM4/idefics2-8b"


def test_configs_match_the_presets() -> None:
    from _recipes import load_recipe
    from medvqa.training import (
        paper_single_stage,
        paper_single_stage_as_run,
        paper_stage1,
        paper_stage2,
    )

    two = load_recipe(EXAMPLES / "two_stage.yaml")
    one = load_recipe(EXAMPLES / "single_stage.yaml").stage2
    as_run = load_recipe(EXAMPLES / "single_stage_as_run.yaml").stage2
    assert two.stage1 is not None and two.stage2 is not None
    assert one is not None and as_run is not None
    ignore = {"data_dir", "output_dir"}
    for got, want in (
        (two.stage1, paper_stage1()),
        (two.stage2, paper_stage2()),
        (one, paper_single_stage()),
        (as_run, paper_single_stage_as_run()),
    ):
        assert {k: v for k, v in got.to_dict().items() if k not in ignore} == {
            k: v for k, v in want.to_dict().items() if k not in ignore
        }
    assert load_recipe(EXAMPLES / "size_sweep.yaml").sweep_sizes == (0, 7000, 20000, 55000)


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_imports(script: str) -> None:
    pytest.importorskip("yaml")
    module = importlib.import_module(script)
    assert callable(module.main) and module.__doc__


@pytest.mark.train
@pytest.mark.slow
def test_every_tiny_path_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    order = [
        "base",
        "two_stage",
        "two_stage_ood",
        "swapped_images",
        "expert_prompt",
        "base_ood",
        "single_stage",
        "nonsense_questions",
        "loss_curves",
        "human_evaluation_sheet",
        "size_sweep",
    ]
    assert sorted(order) == SCRIPTS
    for script in order:
        module = importlib.import_module(script)
        module.main(["--tiny", "--output", str(tmp_path), "--no-progress"])
    out = capsys.readouterr().out
    assert "abstained on" in out and "wrote" in out
    for name in (
        "loss_curves.png",
        "human_evaluation_sheet.csv",
        "size_sweep/sweep.png",
        "evaluations/two_stage.scores.json",
        "evaluations/swapped_images.scores.json",
    ):
        assert (tmp_path / name).is_file(), name
    table = _final_table_step(tmp_path)
    assert table.returncode == 0, table.stderr
    assert "| two_stage |" in table.stdout and "| sweep_size_0 |" in table.stdout


def test_only_the_as_run_recipe_evaluates_as_run() -> None:
    from _recipes import load_recipe

    flagged = {p.name for p in EXAMPLES.glob("*.yaml") if (ev := load_recipe(p).evaluation) and ev.as_run}
    assert flagged == {"single_stage_as_run.yaml"}
    ev = load_recipe(EXAMPLES / "single_stage_as_run.yaml").evaluation
    assert ev is not None and (ev.quantization, ev.precision, ev.batch_size) == ("none", "fp16", 1)


@pytest.mark.train
@pytest.mark.slow
def test_the_as_run_recipe_runs_tiny_and_records_the_mode(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from medvqa.metrics import read_scores

    module = importlib.import_module("single_stage")
    config = EXAMPLES / "single_stage_as_run.yaml"
    module.main(["--tiny", "--config", str(config), "--output", str(tmp_path), "--no-progress"])
    info = read_scores(tmp_path / "evaluations" / "single_stage_as_run.scores.json").runs[0].info
    assert info["as_run"] is True and info["dropout_seed"] == 42 and info["active_dropout_modules"] > 0


def _final_table_step(output: Path) -> subprocess.CompletedProcess[str]:
    """Run the last step of run_all.sh (the combined table) on an output folder."""
    script = (EXAMPLES / "run_all.sh").read_text()
    step = script[script.index('echo "== every evaluation in one table"') :]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    prelude = f"set -euo pipefail\nPY={shlex.quote(sys.executable)}\nout={shlex.quote(str(output))}\n"
    return subprocess.run(
        ["bash", "-c", prelude + step], capture_output=True, text=True, env=env, check=False
    )


def test_run_all_ends_with_one_table_of_every_evaluation(tmp_path: Path) -> None:
    from medvqa.metrics import build_score_file, write_scores
    from medvqa.records import Prediction

    preds = [Prediction(f"q{i}", "q", "yes", "yes" if i % 2 else "no", "closed") for i in range(4)]
    (tmp_path / "evaluations").mkdir()
    for name in ("base", "two_stage"):
        sf = build_score_file({name: preds}, profiles=["paper", "strict"], n_boot=0)
        write_scores(tmp_path / "evaluations" / f"{name}.scores.json", sf)
    for size in (7000, 0, 20000):
        (tmp_path / "size_sweep" / f"size_{size}").mkdir(parents=True)
        sf = build_score_file({"eval": preds[: 1 + size // 7000]}, profiles="strict", n_boot=0)
        write_scores(tmp_path / "size_sweep" / f"size_{size}" / "eval.scores.json", sf)
    proc = _final_table_step(tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("|")[1].strip() for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert rows == ["run", "base", "two_stage", "sweep_size_0", "sweep_size_7000", "sweep_size_20000"]
    assert "do not hold the same items" in proc.stderr  # the sweep sizes score other items
