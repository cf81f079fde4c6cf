"""Properties of the one JSON Lines reader and writer."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from medvqa._io import JsonlWriter, atomic_write_jsonl, jsonl_line, parse_jsonl, read_jsonl
from tests.strategies import jsonl_records

SETTINGS = settings(max_examples=80, deadline=None)


@SETTINGS
@given(st.lists(jsonl_records, max_size=5))
def test_written_records_read_back_identical(records: list[dict]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        streamed = Path(tmp) / "streamed.jsonl"
        with JsonlWriter(streamed, fsync=False) as w:
            w.write_all(records)
        whole = Path(tmp) / "whole.jsonl"
        atomic_write_jsonl(whole, records)
        assert streamed.read_bytes() == whole.read_bytes()
        assert [obj for _, obj in read_jsonl(streamed)] == records


@SETTINGS
@given(jsonl_records)
def test_a_written_line_is_one_line_for_every_splitter(record: dict) -> None:
    line = jsonl_line(record)
    assert line.endswith("\n") and line.count("\n") == 1
    assert line.splitlines() == [line[:-1]]  # str.splitlines agrees: no hidden line break
    assert [v for _, v in parse_jsonl(line)] == [record]
