"""The one JSON Lines reader and writer, and atomic writes that respect the umask."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from medvqa._errors import DataFormatError
from medvqa._io import (
    JsonlWriter,
    atomic_write_jsonl,
    atomic_write_text,
    current_umask,
    jsonl_line,
    read_jsonl,
    recover_jsonl,
)
from medvqa.cli import main
from medvqa.metrics import read_predictions
from medvqa.records import Prediction

#: Every character str.splitlines() breaks on.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


@pytest.mark.parametrize("char", list(LINE_BREAKS))
def test_writer_escapes_every_line_break_inside_strings(char: str, tmp_path: Path) -> None:
    line = jsonl_line({"prediction": f"a{char}b"})
    assert line.splitlines() == [line[:-1]]  # one line for every reader's idea of a line
    path = tmp_path / "p.jsonl"
    with JsonlWriter(path) as w:
        w.write({"prediction": f"a{char}b"})
        w.write({"prediction": "next"})
    assert [obj["prediction"] for _, obj in read_jsonl(path)] == [f"a{char}b", "next"]


def test_non_ascii_text_stays_readable() -> None:
    assert jsonl_line({"a": "Lésion 肺"}) == '{"a": "Lésion 肺"}\n'


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85"])
def test_reader_splits_on_newline_only(char: str, tmp_path: Path) -> None:
    # A file written by another tool with the raw character inside a string.
    path = tmp_path / "raw.jsonl"
    path.write_bytes(('{"id": "1", "t": "a' + char + 'b"}\r\n{"id": "2", "t": ""}\n').encode())
    assert [(n, o["t"]) for n, o in read_jsonl(path)] == [(1, f"a{char}b"), (2, "")]


def test_reader_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n{"a": \n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl, line 3: malformed JSON line"):
        list(read_jsonl(path))


def _prediction_with(text: str) -> Prediction:
    return Prediction("s1", "Is it normal?", "no", text, "closed", metadata={"prompt": "paper"})


def test_prediction_with_line_separator_is_scored_and_resumed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "preds.jsonl"
    with JsonlWriter(path) as w:
        w.write(_prediction_with("No.\u2028The lung is clear.").to_dict())
        w.write(Prediction("s2", "q", "yes", "Yes\u2029", "closed").to_dict())
    # The resume reader (generation) reads the records back, and so does the scorer.
    rows, dropped = recover_jsonl(path)
    assert not dropped
    assert Prediction.from_dict(rows[0]).prediction == "No.\u2028The lung is clear."
    assert [p.prediction for p in read_predictions(path)] == ["No.\u2028The lung is clear.", "Yes\u2029"]
    assert main(["score", str(path), "--n-boot", "0", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["runs"][0]["n"] == 2


def test_score_details_round_trip_line_separators(tmp_path: Path) -> None:
    path = tmp_path / "preds.jsonl"
    atomic_write_jsonl(path, [_prediction_with("no\u2028\x85").to_dict()])
    details = tmp_path / "details.jsonl"
    assert main(["score", str(path), "--n-boot", "0", "--details", str(details)]) == 0
    text = details.read_text(encoding="utf-8")
    assert len(text.splitlines()) == 1
    assert [row["prediction"] for _, row in read_jsonl(details)] == ["no\u2028\x85"]


# --- permissions ----------------------------------------------------------------------------


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_current_umask_reads_without_changing(umask: int) -> None:
    assert current_umask() == umask
    assert current_umask() == umask


def test_atomic_write_gives_the_mode_of_a_plain_open(tmp_path: Path, umask: int) -> None:
    plain = tmp_path / "plain.txt"
    with open(plain, "w") as fh:
        fh.write("x")
    atomic = tmp_path / "atomic.txt"
    atomic_write_text(atomic, "x")
    mode = stat.S_IMODE(atomic.stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask


def test_atomic_rewrite_keeps_the_existing_mode(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "kept.json"
    target.write_text("{}")
    target.chmod(0o640)
    atomic_write_text(target, "{}\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
