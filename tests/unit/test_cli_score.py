"""``medvqa score``, ``medvqa report`` and ``medvqa review`` end to end on tiny files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medvqa._errors import DataFormatError
from medvqa.cli import main
from medvqa.metrics import read_predictions
from medvqa.records import Prediction


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _library_file(tmp_path: Path, n: int = 6) -> Path:
    refs = ["yes", "no", "left lung", "liver", "yes", "ct"]
    preds = ["Yes.", "No", "the left lung", "spleen", "", "CT scan"]
    rows = [
        Prediction(
            f"s{i}",
            "q",
            refs[i % 6],
            preds[i % 6],
            "closed" if refs[i % 6] in ("yes", "no") else "open",
            metadata={"modality": "CT" if i % 2 else "MRI"},
        ).to_dict()
        for i in range(n)
    ]
    return _write_jsonl(tmp_path / "preds.jsonl", rows)


def test_score_default_profile_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _library_file(tmp_path)
    assert main(["score", str(path), "--n-boot", "50"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].endswith("preds.jsonl: strict (6 items)")
    assert lines[1].split() == ["metric", "value", "95%", "interval", "n"]
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    assert rows["accuracy"][-1] == "6" and rows["empty_predictions"][1:] == ["1", "6"]
    assert max(len(line) for line in lines[1:]) <= 80  # the table fits 80 columns (the title holds the path)
    assert "1 of 6 predictions are empty" in err


def test_score_all_profiles_fit_80_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _library_file(tmp_path)
    assert main(["score", str(path), "--profile", "all", "--n-boot", "20", "--by", "answer_type"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines if not line.endswith("items)")) <= 80
    assert sum(line.endswith("(6 items)") for line in lines) == 6  # one block per profile


def test_score_all_profiles_json_and_details(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _library_file(tmp_path)
    details = tmp_path / "details.jsonl"
    assert (
        main(
            [
                "score",
                str(path),
                "--profile",
                "all",
                "--format",
                "json",
                "--n-boot",
                "0",
                "--details",
                str(details),
                "--by",
                "modality",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert [r["profile"] for r in data["runs"]] == [
        "paper",
        "llava_med",
        "lmms_eval",
        "multimedeval",
        "medevalkit",
        "strict",
    ]
    paper = data["runs"][0]["aggregates"]
    assert paper["containment"]["denominator"] == 6
    assert "containment/modality=CT" in paper
    rows = [json.loads(line) for line in details.read_text().splitlines()]
    assert len(rows) == 6 * 6
    first = rows[0]
    assert first["profile"] == "paper" and first["prediction"] == "Yes."
    assert first["extracted"] == "yes." and first["rule"] == "paper_verbatim"
    assert first["scores"] == {"containment": 1.0, "f1": pytest.approx(2 / 3), "bleu1": 0.5}
    strict = [r for r in rows if r["profile"] == "strict"]
    assert strict[4]["empty"] is True and strict[4]["scores"]["accuracy"] == 0.0


def test_score_reads_paper_result_files_with_two_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"question": "Is there a mass?", "true_answer": "No", "predicted_answer": "no"},
        {"question": "Which lobe?", "true_answer": "right upper lobe", "predicted_answer": "right lobe"},
    ]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    code = main(
        [
            "score",
            str(path),
            "--profile",
            "paper",
            "--format",
            "csv",
            "--n-boot",
            "0",
            "--reference-field",
            "true_answer",
            "--prediction-field",
            "predicted_answer",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("file,profile,key,metric,subset,value")
    closed = next(line for line in lines if ",containment/closed," in line)
    assert closed.endswith(",1.0,1.0,1,,")  # 'no' inferred as closed, contained


def test_score_md_format_and_output_file(tmp_path: Path) -> None:
    path = _library_file(tmp_path)
    out = tmp_path / "scores.md"
    assert main(["score", str(path), "--format", "md", "--n-boot", "0", "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("| file | profile | n | accuracy |")


def test_read_predictions_errors_name_row_and_field(tmp_path: Path) -> None:
    bad = _write_jsonl(
        tmp_path / "bad.jsonl",
        [
            {"id": "a", "reference": "yes", "prediction": "yes"},
            {"id": "b", "reference": " ", "prediction": "no"},
        ],
    )
    with pytest.raises(DataFormatError, match=r"line 2, field 'reference': item 'b' has an empty"):
        read_predictions(bad)
    missing = _write_jsonl(tmp_path / "missing.jsonl", [{"id": "a", "answer": "yes", "prediction": "yes"}])
    with pytest.raises(
        DataFormatError, match=r"line 1, field 'reference': missing field .*--reference-field"
    ):
        read_predictions(missing)
    kind = _write_jsonl(
        tmp_path / "kind.jsonl", [{"reference": "yes", "prediction": "y", "answer_type": "yn"}]
    )
    with pytest.raises(DataFormatError, match="field 'answer_type'"):
        read_predictions(kind)
    dup = _write_jsonl(
        tmp_path / "dup.jsonl",
        [{"id": 1, "reference": "a", "prediction": "a"}, {"id": 1, "reference": "b", "prediction": "b"}],
    )
    with pytest.raises(DataFormatError, match="duplicate id '1'"):
        read_predictions(dup)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 1, "reference": "a", "prediction": "a"}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match="line 2"):
        read_predictions(broken)


def test_read_predictions_fields_and_nulls(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"qid": 7, "gt": "Yes", "out": None, "type": "CLOSED ", "organ": "lung", "nested": {"x": 1}},
        ],
    )
    [p] = read_predictions(
        path, id_field="qid", reference_field="gt", prediction_field="out", answer_type_field="type"
    )
    assert (p.id, p.reference, p.prediction, p.answer_type) == ("7", "Yes", "", "closed")
    assert p.metadata["organ"] == "lung" and "nested" not in p.metadata
    assert "answer_type_source" not in p.metadata


def test_byte_order_mark_and_crlf_are_read_and_a_folder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    rows = [
        {"id": "a", "reference": "yes", "prediction": "Yes"},
        {"id": "b", "reference": "no", "prediction": "no"},
    ]
    path.write_bytes(("\r\n".join(json.dumps(r) for r in rows) + "\r\n").encode("utf-8-sig"))
    assert [p.id for p in read_predictions(path)] == ["a", "b"]
    with pytest.raises(DataFormatError, match="is a folder, not a prediction file"):
        read_predictions(tmp_path)


def test_cli_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", str(tmp_path / "absent.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("medvqa: error:") and "file not found" in err


def test_report_and_review_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _library_file(tmp_path)
    sheet = tmp_path / "sheet.csv"
    assert main(["review", "export", str(path), "-o", str(sheet)]) == 0
    text = sheet.read_text(encoding="utf-8").splitlines()
    filled = [text[0]] + [line[:-2] + ",1," if line.endswith(",,") else line for line in text[1:]]
    sheet.write_text("\n".join(filled) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["review", "import", str(sheet), "--predictions", str(path), "--format", "json"]) == 0
    human = json.loads(capsys.readouterr().out)
    assert human["accuracy"]["value"] == 1.0 and human["reviewed"] == 6
    assert "paper:containment" in human["agreements"]

    assert (
        main(["report", f"base={path}", f"tuned={path}", "--human", f"tuned={sheet}", "--n-boot", "20"]) == 0
    )
    md = capsys.readouterr().out.splitlines()
    assert md[0] == "| run | n | EM (containment) | F1 | BLEU-1 | human |"
    assert md[2].startswith("| base | 6 |") and md[3].startswith("| tuned | 6 |")

    scores = tmp_path / "scores.json"
    assert main(["score", str(path), "--profile", "strict", "--format", "json", "-o", str(scores)]) == 0
    assert (
        main(["report", str(scores), "--profile", "strict", "--metric", "accuracy", "--format", "latex"]) == 0
    )
    latex = capsys.readouterr().out
    assert "preds & 6 &" in latex  # the run is named after its prediction file and "\\bottomrule" in latex


def test_score_help_has_an_example_epilog(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    out = capsys.readouterr().out
    for option in (
        "--profile",
        "--format",
        "--reference-field",
        "--prediction-field",
        "--answer-type-field",
        "--id-field",
        "--details",
        "--seed",
        "--n-boot",
    ):
        assert option in out
    assert "examples:" in out


@pytest.mark.parametrize("command", [["score"], ["report"], ["review", "import"]])
def test_help_descriptions_render_percent_signs(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert "95% " in out and "%%" not in out


def test_score_by_a_field_no_item_has_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _library_file(tmp_path)
    assert main(["score", str(path), "--n-boot", "0", "--by", "modality", "--by", "organ"]) == 0
    out, err = capsys.readouterr()
    assert "modality=CT" in out and "organ=" not in out
    assert "no item has the field 'organ'; no breakdown by it" in err
    assert "'modality'" not in err


def test_score_subprocess_imports_no_torch(tmp_path: Path) -> None:
    refs = ["yes", "no", "left lung", "liver"]
    rows = [
        {"id": i, "reference": refs[i % 4], "prediction": refs[(i * 7) % 4] + ".", "answer_type": "open"}
        for i in range(451)
    ]
    path = _write_jsonl(tmp_path / "run451.jsonl", rows)
    code = (
        f"import sys, runpy; sys.argv = ['medvqa', 'score', {str(path)!r}, '--profile', 'all'];"
        "from medvqa.cli import main; rc = main(sys.argv[1:]);"
        "bad = [m for m in ('torch', 'transformers', 'nltk') if m in sys.modules];"
        "print('HEAVY', bad); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout  # its speed is measured in benchmarks/bench_scoring.py, not here


def test_report_refuses_two_runs_with_one_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _library_file(tmp_path)
    assert main(["report", f"a={path}", f"a={path}", "--n-boot", "0"]) == 1
    err = capsys.readouterr().err
    assert "'a' given more than once" in err and err.count("\n") == 1
