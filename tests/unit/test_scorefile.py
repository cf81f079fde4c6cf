"""The score file: round trip, earlier layouts read with a notice, malformed files named by field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medvqa._errors import DataFormatError
from medvqa.metrics import (
    SCORE_FORMAT,
    ItemSet,
    ScoreFile,
    ScoreRun,
    build_score_file,
    evaluate,
    read_scores,
    write_scores,
)
from medvqa.records import Prediction


def _preds(n: int = 6, *, start: int = 0) -> list[Prediction]:
    refs = ["yes", "no", "liver", "left lung"]
    said = ["Yes.", "yes", "The liver", "lung"]
    return [
        Prediction(f"s{i}", "q", refs[i % 4], said[i % 4], "closed" if i % 4 < 2 else "open")
        for i in range(start, start + n)
    ]


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    preds = _preds()
    sf = build_score_file(
        {"base": preds, "tuned": preds[:4]},
        profiles=["paper", "strict"],
        n_boot=30,
        seed=3,
        files={"base": "base.jsonl"},
        info={"model": "tiny"},
    )
    path = tmp_path / "s.json"
    write_scores(path, sf)
    back = read_scores(path)
    assert back == sf and back.format == SCORE_FORMAT
    assert json.loads(path.read_text())["format"] == "medvqa.scores/2"
    run = back.run("tuned", "strict")
    assert run.n == 4 and run.items == ItemSet.of(p.id for p in preds[:4]) and run.info == {"model": "tiny"}
    assert run.aggregates == evaluate(preds[:4], profile="strict", seed=3, n_boot=30).aggregates
    assert back.run("base", "paper").file == "base.jsonl" and back.run("tuned", "paper").file == ""


def test_item_sets_differ_when_the_ids_do() -> None:
    assert ItemSet.of(["a", "b"]) != ItemSet.of(["a", "c"])
    assert ItemSet.of(["a", "b"]).count == ItemSet.of(["a", "c"]).count == 2
    assert ItemSet.of(["b", "a", "b"]) == ItemSet.of(["a", "b"])


def test_two_runs_with_one_label_and_profile_are_refused() -> None:
    run = build_score_file({"a": _preds()}, n_boot=0).runs[0]
    with pytest.raises(ValueError, match="two runs labelled 'a' under profile 'strict'"):
        ScoreFile(runs=(run, run))


def test_version_1_files_are_read_with_a_notice(tmp_path: Path) -> None:
    result = evaluate(_preds(), profile="paper", n_boot=20)
    strict = evaluate(_preds(), profile="strict", n_boot=20)
    data = {
        "format": "medvqa.scores/1",
        "fields": {
            "id": "id",
            "reference": "reference",
            "prediction": "prediction",
            "answer_type": "answer_type",
        },
        "runs": [
            {"file": "runs/a/base.jsonl", **result.to_dict()},
            {"file": "runs/a/base.jsonl", **strict.to_dict()},
            {"file": "runs/b/base.jsonl", **result.to_dict()},
        ],
    }
    path = _write(tmp_path / "v1.json", data)
    with pytest.warns(FutureWarning, match="medvqa.scores/1"):
        sf = read_scores(path)
    assert sf.format == "medvqa.scores/1" and sf.fields["id"] == "id"
    labels = ["runs/a/base.jsonl", "runs/a/base.jsonl", "runs/b/base.jsonl"]  # same stem: the paths
    assert [r.label for r in sf.runs] == labels and sf.profiles() == ["paper", "strict"]
    assert sf.runs[0].aggregates == result.aggregates and sf.runs[0].items is None and sf.runs[0].n_boot == 20


def test_earlier_evaluate_files_are_read_with_a_notice(tmp_path: Path) -> None:
    from medvqa.training import EvalResult

    preds = _preds()
    results = {p: evaluate(preds, profile=p, n_boot=20) for p in ("paper", "strict")}
    old = EvalResult(
        name="two_stage",
        n=len(preds),
        predictions_path="runs/two_stage.predictions.jsonl",
        scores={p: {k: a.to_dict() for k, a in r.aggregates.items()} for p, r in results.items()},
        info={"model": "tiny", "dataset": "vqa_rad"},
    )
    path = _write(tmp_path / "two_stage.scores.json", old.to_dict())
    with pytest.warns(FutureWarning, match="rewrite it with medvqa.metrics.write_scores"):
        sf = read_scores(path)
    assert sf.format == "evaluate" and sf.profiles() == ["paper", "strict"]
    for p, r in results.items():
        run = sf.run("two_stage", p)
        assert run.aggregates == r.aggregates and run.n == 6 and run.info["dataset"] == "vqa_rad"
    write_scores(path, sf)  # the rewrite the notice suggests
    assert read_scores(path).runs == sf.runs


def _valid() -> dict[str, Any]:
    return build_score_file({"a": _preds()}, n_boot=0).to_dict()


@pytest.mark.parametrize(
    ("edit", "field", "reason"),
    [
        (lambda d: d.pop("runs"), "runs", "missing"),
        (lambda d: d.update(runs={}), "runs", "expected a list"),
        (lambda d: d["runs"][0].pop("label"), "runs[0].label", "missing"),
        (lambda d: d["runs"][0].update(n="6"), "runs[0].n", "expected an integer"),
        (lambda d: d["runs"][0].update(n=True), "runs[0].n", "expected an integer"),
        (lambda d: d["runs"][0].update(profile=None), "runs[0].profile", "expected a string"),
        (lambda d: d["runs"][0]["items"].pop("sha256"), "runs[0].items.sha256", "missing"),
        (
            lambda d: d["runs"][0]["aggregates"]["accuracy"].update(denominator=1.5),
            "runs[0].aggregates['accuracy'].denominator",
            "expected an integer",
        ),
        (
            lambda d: d["runs"][0]["aggregates"]["accuracy"].pop("numerator"),
            "runs[0].aggregates['accuracy'].numerator",
            "missing",
        ),
        (
            lambda d: d["runs"][0]["aggregates"].update(accuracy=[1]),
            "runs[0].aggregates['accuracy']",
            "expected an object",
        ),
        (lambda d: d.update(format="medvqa.scores/9"), "format", "unknown score format"),
    ],
)
def test_malformed_files_name_the_file_and_field(tmp_path: Path, edit: Any, field: str, reason: str) -> None:
    data = _valid()
    edit(data)
    path = _write(tmp_path / "bad.json", data)
    with pytest.raises(DataFormatError) as info:
        read_scores(path)
    assert info.value.file == str(path) and info.value.field == field
    assert reason in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("data", [[{"id": "a"}], {"rows": []}, "text"])
def test_other_json_is_not_a_score_file(tmp_path: Path, data: Any) -> None:
    with pytest.raises(DataFormatError, match="not a medvqa score file"):
        read_scores(_write(tmp_path / "x.json", data))


def test_empty_subsets_and_missing_intervals_round_trip(tmp_path: Path) -> None:
    closed_only = [p for p in _preds() if p.answer_type == "closed"]
    sf = build_score_file({"c": closed_only}, profiles="paper", n_boot=0)
    assert any(a.value is None for a in sf.runs[0].aggregates.values())
    write_scores(tmp_path / "c.json", sf)
    assert read_scores(tmp_path / "c.json") == sf


def test_score_runs_from_a_profile_result_keep_its_settings() -> None:
    result = evaluate(_preds(), profile="strict", seed=5, n_boot=10)
    run = ScoreRun.from_result(result, label="x")
    assert (run.seed, run.n_boot, run.n, run.options) == (5, 10, 6, result.options)


def test_report_says_when_it_reads_an_earlier_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medvqa.cli import main

    result = evaluate(_preds(), profile="paper", n_boot=0)
    path = _write(
        tmp_path / "v1.json", {"format": "medvqa.scores/1", "runs": [{"file": "b.jsonl", **result.to_dict()}]}
    )
    assert main(["report", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[2].startswith("| b | 6 |")
    assert (
        err.startswith(f"medvqa: note: {path}: a score file in format 'medvqa.scores/1'")
        and err.count("\n") == 1
    )


def test_report_warns_when_score_files_hold_different_items(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medvqa.cli import main

    write_scores(tmp_path / "a.json", build_score_file({"a": _preds(4)}, profiles="paper", n_boot=0))
    write_scores(tmp_path / "b.json", build_score_file({"b": _preds(4, start=2)}, profiles="paper", n_boot=0))
    assert main(["report", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    assert (
        "do not hold the same items but 2 different sets: a (4 items); b (4 items)" in capsys.readouterr().err
    )
    write_scores(tmp_path / "b.json", build_score_file({"b": _preds(4)}, profiles="paper", n_boot=0))
    assert main(["report", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    assert "WARNING" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", [["review", "export"], ["review", "import", "sheet.csv", "--predictions"]]
)
def test_review_names_the_prediction_file_of_a_score_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    from medvqa.cli import main

    path = tmp_path / "base.scores.json"
    write_scores(path, build_score_file({"base": _preds()}, n_boot=0, files={"base": "runs/base.jsonl"}))
    (tmp_path / "sheet.csv").write_text("id,image,question,truth,prediction,correct,justification\n")
    argv = [*command[:2], *(str(tmp_path / c) if c.endswith(".csv") else c for c in command[2:]), str(path)]
    assert main([*argv, "-o", str(tmp_path / "out.csv")] if command[1] == "export" else argv) == 1
    err = capsys.readouterr().err
    assert "a score file holds aggregates" in err and "runs/base.jsonl" in err and str(path) in err


def test_score_labels_files_of_one_name_by_their_paths(tmp_path: Path) -> None:
    from medvqa.cli import main

    files = []
    for folder, preds in (("a", _preds(4)), ("b", _preds(4, start=1))):
        (tmp_path / folder).mkdir()
        files.append(tmp_path / folder / "run.jsonl")
        files[-1].write_text("".join(json.dumps(p.to_dict()) + "\n" for p in preds), encoding="utf-8")
    out = tmp_path / "scores.json"  # -o NAME.json without --format: the score file
    assert (
        main(["score", *map(str, files), "--profile", "paper", "strict", "--n-boot", "0", "-o", str(out)])
        == 0
    )
    sf = read_scores(out)
    assert [(r.label, r.profile) for r in sf.runs] == [
        (str(f), p) for f in files for p in ("paper", "strict")
    ]
    assert sf.runs[0].items != sf.runs[2].items and sf.runs[0].items == sf.runs[1].items
