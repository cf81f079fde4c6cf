"""The sections of the demo's ``report.md``, built from hand-made inputs (no training)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from medvqa import pipeline
from medvqa._tables import MISSING
from medvqa.pipeline import PAPER_RESULTS, DemoConfig


def _run(tmp: Path, name: str, loss: float | None) -> SimpleNamespace:
    return SimpleNamespace(
        train_samples=8, global_step=2, train_loss=loss, precision="float32", output_dir=str(tmp / name)
    )


def _rows(lines: list[str]) -> list[list[str]]:
    table = [line for line in "\n".join(lines).splitlines() if line.startswith("| ")][1:]  # past the header
    return [line[2:-2].split(" | ") for line in table]


def test_data_section_escapes_pipes_and_names_the_sample_licences(tmp_path: Path) -> None:
    data = {"train (vqa_rad)": {"source": "a|b", "split": "train", "n": 12}}
    bundled = pipeline._data_section(DemoConfig(output_dir=str(tmp_path)), data)
    assert _rows(bundled) == [["train (vqa_rad)", "`a\\|b`", "train", "12"]]
    assert "LICENSES.md" in bundled[-1]
    own = pipeline._data_section(DemoConfig(output_dir=str(tmp_path), vqa_rad="x"), data)
    assert not any("LICENSES.md" in line for line in own)


def test_training_section_lists_the_runs_that_exist(tmp_path: Path) -> None:
    cfg = DemoConfig(output_dir=str(tmp_path))
    two = SimpleNamespace(stage1=_run(tmp_path, "s1", 1.23456), stage2=_run(tmp_path, "s2", None))
    rows = _rows(pipeline._training_section(cfg, two, None))
    assert [r[0] for r in rows] == ["stage 1", "stage 2"]  # no single-stage run: no row
    assert rows[0][3] == "1.235" and rows[1][3] == MISSING
    assert rows[0][5] == "`s1`"  # the folder relative to the demo's folder


def test_paper_table_section_keeps_every_profile_and_the_papers_numbers() -> None:
    lines = pipeline._paper_table_section({"paper": "| run |\n|---|\n| base |\n", "strict": "| run |"})
    assert "### `paper` profile" in lines and "### `strict` profile" in lines
    rows = _rows([lines[-1]])  # the paper's numbers close the section
    assert [r[0] for r in rows] == list(PAPER_RESULTS)
    human = {r[0]: r[-1] for r in rows}
    assert human["two-stage"] == "63%" and human["base, OOD"] == ""  # not reported: blank, not a dash


def test_abstention_section_shows_missing_rates_as_a_dash() -> None:
    abst = {
        "base": SimpleNamespace(n=5, abstained=2, rate=0.4, ci_low=0.1, ci_high=0.8),
        "two-stage": SimpleNamespace(n=0, abstained=0, rate=None, ci_low=None, ci_high=None),
    }
    rows = _rows(pipeline._abstention_section(abst))
    assert rows == [["base", "5", "2", "0.40 [0.10, 0.80]"], ["two-stage", "0", "0", MISSING]]


def test_markdown_joins_the_sections_with_one_blank_line(tmp_path: Path) -> None:
    cfg = DemoConfig(output_dir=str(tmp_path))
    two = SimpleNamespace(stage1=_run(tmp_path, "s1", 1.0), stage2=_run(tmp_path, "s2", 0.5))
    report = {"data": {"train": {"source": "s", "split": "train", "n": 3}}}
    abst = {"base": SimpleNamespace(n=1, abstained=1, rate=1.0, ci_low=None, ci_high=None)}
    md = pipeline._markdown(cfg, report, {"paper": "| run |\n|---|"}, abst, two, None, None, 1.0)
    assert md.endswith("\n") and not md.endswith("\n\n") and "\n\n\n" not in md
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Data",
        "## Training",
        "## The paper's table",
        "## Nonsense questions (Med-HALT reasoning_fake)",
        "## Files",  # no sweep: no sweep section
    ]
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.md").write_text("| size |\n|---|\n| 0 |\n", encoding="utf-8")
    sweep = SimpleNamespace(output_dir=str(tmp_path / "sweep"))
    with_sweep = pipeline._markdown(cfg, report, {"paper": "| run |"}, abst, two, None, sweep, 1.0)
    assert "## Pretraining-size sweep (Figure 3)" in with_sweep and "| 0 |" in with_sweep
