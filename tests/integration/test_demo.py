"""The end-to-end demo on the tiny model and the bundled sample, and the commands around it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("matplotlib")

from medvqa._errors import MedVQAError
from medvqa.cli import main
from medvqa.pipeline import NONSENSE_ROWS, PAPER_RESULTS, DemoConfig

pytestmark = [pytest.mark.train, pytest.mark.slow]

ROWS = list(PAPER_RESULTS)
ALL_ROWS = [*ROWS, *NONSENSE_ROWS]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "demo"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["demo", "--output", str(out), "--no-progress"])
    assert code == 0
    return out, buf.getvalue()


def test_demo_prints_where_the_report_is(demo: tuple[Path, str]) -> None:
    out, stdout = demo
    assert f"report: {(out / 'report.md').resolve()}" in stdout
    assert f"output folder: {out.resolve()}" in stdout


def test_demo_writes_every_output(demo: tuple[Path, str]) -> None:
    out, _ = demo
    for name in (
        "report.md",
        "report.json",
        "demo_config.json",
        "loss_curves.png",
        "loss_curves.json",
        "human_evaluation_sheet.csv",
        "sweep/sweep.png",
        "sweep/sweep.json",
        "sweep/sweep.md",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    preds = sorted(p.name for p in (out / "predictions").glob("*.predictions.jsonl"))
    assert len(preds) == len(ROWS) + 2  # the seven table rows + nonsense questions for base and two-stage
    for p in (out / "predictions").glob("*.predictions.jsonl"):
        rows = [json.loads(line) for line in p.read_text().splitlines()]
        assert rows and all({"id", "reference", "prediction", "answer_type"} <= set(r) for r in rows)


def test_report_has_every_table_row_under_both_profiles(demo: tuple[Path, str]) -> None:
    out, _ = demo
    report = json.loads((out / "report.json").read_text())
    assert set(ALL_ROWS) <= set(report["rows"])
    for row in ALL_ROWS:
        assert set(report["rows"][row]["scores"]) == {"paper", "strict"}
        assert (
            report["rows"][row]["scores"]["paper"]["containment"]["denominator"] == report["rows"][row]["n"]
        )
    assert report["rows"]["base"]["n"] == report["data"]["test (VQA-RAD)"]["n"] > 0
    assert (
        report["rows"]["two-stage, OOD"]["n"] == report["data"]["out-of-distribution test (slake)"]["n"] > 0
    )
    assert report["abstention"]["two-stage"]["n"] > 0
    sizes = [r["stage1_size"] for r in report["sweep"]]
    assert sizes == sorted(sizes) and sizes[0] == 0 and len(sizes) == 3
    md = (out / "report.md").read_text()
    assert "mean nothing about medicine" in md
    for profile in ("paper", "strict"):  # every row in the table of each profile
        table = md.split(f"### `{profile}` profile", 1)[1].strip().split("\n\n", 1)[0]
        assert [line.split(" | ")[0].removeprefix("| ") for line in table.splitlines()[2:]] == ALL_ROWS
    assert "SLAKE" in md and "PathVQA" in md  # says which OOD set and why


def test_two_stage_continues_and_sweep_reuses_the_runs(demo: tuple[Path, str]) -> None:
    out, _ = demo
    report = json.loads((out / "report.json").read_text())
    s1, s2 = report["training"]["stage1"], report["training"]["stage2"]
    assert s1["global_step"] > 0 and s2["global_step"] > 0
    # the sweep's largest size is the two-stage run itself: trained once
    two_stage = json.loads(
        (out / "sweep" / f"size_{report['sweep'][-1]['stage1_size']}" / "two_stage.json").read_text()
    )
    assert two_stage["adapter_dir"] == report["rows"]["two-stage"]["info"]["adapter"]
    curves = json.loads((out / "loss_curves.json").read_text())
    assert [s["stage"] for s in curves["series"]] == ["stage1", "stage2"]


def test_rerun_reuses_everything_and_other_settings_are_refused(demo: tuple[Path, str]) -> None:
    out, _ = demo
    from medvqa.pipeline import run_demo

    results = sorted(out.glob("sweep/size_*/stage*/result.json"))
    preds = sorted(out.glob("predictions/*.predictions.jsonl"))
    before = {p: p.stat().st_mtime_ns for p in results + preds}
    # the same command again (the command's defaults: --n-boot 1000, --quantization resolved)
    assert main(["demo", "--output", str(out), "--no-progress"]) == 0
    assert (out / "report.md").is_file()
    assert {p: p.stat().st_mtime_ns for p in results + preds} == before  # nothing retrained or regenerated
    with pytest.raises(MedVQAError, match="other settings"):
        run_demo(DemoConfig(output_dir=str(out), n_boot=10), progress=False)


def test_demo_refuses_a_foreign_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--output", str(tmp_path), "--no-progress"]) == 1
    assert "not a medvqa demo folder" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_report_has_a_judged_column(demo: tuple[Path, str]) -> None:
    out, _ = demo
    report = json.loads((out / "report.json").read_text())
    assert list(report["judged"]) == ROWS  # the paper's seven rows
    for row, v in report["judged"].items():
        n_open = v["judge_on_open"]["denominator"] + v["unparseable"]
        assert v["rules"]["denominator"] == v["judged"]["denominator"] == report["rows"][row]["n"]
        assert n_open > 0
    lines = (out / "judge_cache.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line)["prompt"][0]["role"] == "user" for line in lines)
    md = (out / "report.md").read_text()
    assert "## Judged column (`medevalkit` profile)" in md and "random weights" in md
