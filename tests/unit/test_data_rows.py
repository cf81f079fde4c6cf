"""Every data reader names rows the same way, and a duplicate id names both of its rows.

Line formats (JSON Lines, CSV, text) give the 1-based line an editor shows; JSON arrays give
the 0-based record index; the message says which.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvqa._errors import DataFormatError, RowRef
from medvqa.data import load
from tests.unit.test_data_layouts import (
    MED_HALT_CSV,
    VQA_RAD_ROWS,
    make_imagefolder,
    make_path_vqa,
    make_roco,
    make_slake,
    make_vqa_rad,
    write_images,
)


def test_row_ref_wording() -> None:
    assert str(RowRef.line(1)) == "line 1" and str(RowRef.record(0)) == "record 0"
    err = DataFormatError("bad", file="f.jsonl", line=3, field="x")
    assert str(err) == "f.jsonl, line 3, field 'x': bad" and err.row == RowRef.line(3)
    assert str(DataFormatError("bad", file="f.json", record=2)) == "f.json, record 2: bad"
    with pytest.raises(TypeError):
        DataFormatError("bad", line=1, record=1)


def test_jsonl_rows_are_lines_counting_blank_ones(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path, fmt="jsonl")
    meta = root / "train" / "metadata.jsonl"
    lines = meta.read_text().splitlines()
    bad = json.loads(lines[1]) | {"answer": None}
    meta.write_text("\n".join([lines[0], "", json.dumps(bad), *lines[2:]]) + "\n")
    with pytest.raises(DataFormatError, match=r"metadata.jsonl, line 3, field 'answer': expected text"):
        load("vqa_rad", root, split="train")


def test_csv_rows_are_named_by_the_line_they_start_on(tmp_path: Path) -> None:
    # u2's question spans lines 3-4; u3 (with bad options) starts on line 5
    (tmp_path / "reasoning_fake.csv").write_text(
        "id,subject_name,topic_name,split_type,dataset,len,year,exam_name,question,options\n"
        "u1,a,,train,m,1,,,Where?,\"{'0': 'x', '1': 'I do not know'}\"\n"
        "u2,a,,train,m,1,,,\"Which\ndragon bone?\",\"{'0': 'x', '1': 'I do not know'}\"\n"
        "u3,a,,train,m,1,,,Which nerve?,oops\n"
    )
    with pytest.raises(DataFormatError, match=r"reasoning_fake.csv, line 5, field 'options'"):
        load("med_halt", tmp_path)


def test_json_arrays_name_records_and_jsonl_names_lines(tmp_path: Path) -> None:
    write_images(tmp_path / "images", ["a.jpg"])
    conv = [{"from": "gpt", "value": "A caption."}]
    rows = [{"id": "R1", "image": "a.jpg", "conversations": conv}, {"id": "R2", "image": "a.jpg"}]
    (tmp_path / "roco.json").write_text(json.dumps(rows))
    (tmp_path / "roco.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataFormatError, match=r"roco.json, record 1, field 'conversations'"):
        load("roco", tmp_path / "roco.json")
    with pytest.raises(DataFormatError, match=r"roco.jsonl, line 2, field 'conversations'"):
        load("roco", tmp_path / "roco.jsonl")


def test_duplicate_ids_name_both_rows(tmp_path: Path) -> None:
    rows = [dict(r) for r in VQA_RAD_ROWS]
    rows[3]["qid"] = 1  # a test row repeating a train row's qid
    make_vqa_rad(tmp_path / "rad", rows)
    with pytest.raises(
        DataFormatError,
        match=r"Public.json, record 3, field 'qid': duplicate sample id 'vqa_rad:1': "
        r"first seen at .*Public.json, record 1$",
    ):
        load("vqa_rad", tmp_path / "rad", split="test")

    slake = make_slake(tmp_path / "slake")
    data = json.loads((slake / "train.json").read_text())
    data[2]["qid"] = 0
    (slake / "train.json").write_text(json.dumps(data))
    with pytest.raises(
        DataFormatError, match=r"record 2, field 'qid': .*'slake:0': first seen at .*train.json, record 0"
    ):
        load("slake", slake)

    roco = make_roco(tmp_path / "roco")
    cap = roco / "validation" / "radiology" / "captions.txt"
    cap.write_text(cap.read_text() + "ROCO_00001\t again\n")
    with pytest.raises(
        DataFormatError, match=r"line 3, field 'id': .*'roco:ROCO_00001': first seen at .*, line 1"
    ):
        load("roco", roco, split="validation")

    pvqa = make_path_vqa(tmp_path / "pvqa", images=False)
    qa = pvqa / "official_qa" / "pvqa_train.json"
    recs = json.loads(qa.read_text())
    qa.write_text(json.dumps([*recs, recs[1]]))
    with pytest.raises(
        DataFormatError, match=r"record 2 \(train_0001\), field 'img_id': .*record 1 \(train_0001\)"
    ):
        load("path_vqa", pvqa)

    (tmp_path / "reasoning_fake.csv").write_text(MED_HALT_CSV.replace("u3,", "u1,"))
    with pytest.raises(
        DataFormatError, match=r"line 4, field 'id': .*'med_halt:u1': first seen at .*, line 2"
    ):
        load("med_halt", tmp_path)


def test_duplicate_ids_in_a_hugging_face_copy_name_both_lines(tmp_path: Path) -> None:
    folder = tmp_path / "train"
    write_images(folder, ["a.jpg"])
    rows = [
        {"file_name": "a.jpg", "question": "q1?", "answer": "yes", "qid": 5, "answer_type": "CLOSED"},
        {"file_name": "a.jpg", "question": "q2?", "answer": "no", "qid": 5, "answer_type": "CLOSED"},
    ]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(
        DataFormatError, match=r"metadata.jsonl, line 2, field 'qid': .*first seen at .*, line 1"
    ):
        load("slake", tmp_path, split="train")
