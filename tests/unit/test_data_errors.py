"""Bad input: every error names the file, row and field, and what would be valid."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medvqa._errors import DataFormatError, ImageLoadError, RowRef
from medvqa.data import load
from tests.unit.test_data_layouts import (
    MED_HALT_CSV,
    VQA_RAD_ROWS,
    make_imagefolder,
    make_path_vqa,
    make_roco,
    make_slake,
    make_vqa_rad,
)


def test_unknown_dataset_split_and_option_list_the_valid_choices(tmp_path: Path) -> None:
    root = make_vqa_rad(tmp_path)
    with pytest.raises(
        ValueError, match=r"unknown dataset 'vqarad'; valid names: vqa_rad, slake, path_vqa, roco, med_halt"
    ):
        load("vqarad", root)
    with pytest.raises(
        ValueError, match=r"unknown split 'validation' for dataset 'vqa_rad'; valid splits: train, test"
    ):
        load("vqa_rad", root, split="validation")
    with pytest.raises(
        ValueError, match=r"unknown option\(s\) 'language' for dataset 'vqa_rad'; valid options: layout"
    ):
        load("vqa_rad", root, language="en")
    with pytest.raises(
        ValueError,
        match=r"invalid value 'fr' for option 'language' of dataset 'slake'; valid values: 'en', 'zh', 'both'",
    ):
        load("slake", make_slake(tmp_path / "s"), language="fr")
    with pytest.raises(ValueError, match=r"option 'on_missing_image'.*valid values: 'error', 'skip'"):
        load("vqa_rad", root, on_missing_image="ignore")


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    make_vqa_rad(tmp_path)
    (tmp_path / "VQA_RAD Dataset Public.json").write_text('[{"qid": 1,,}]')
    with pytest.raises(DataFormatError, match=r"VQA_RAD Dataset Public.json: malformed JSON at line 1"):
        load("vqa_rad", tmp_path)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"question": None}, "question", "expected text"),
        ({"answer": "  "}, "answer", "empty answer"),
        ({"answer_type": "MAYBE"}, "answer_type", "answer type must be 'OPEN' or 'CLOSED'"),
        ({"qid": "x1"}, "qid", "qid must be an integer"),
        ({"phrase_type": "weird"}, "phrase_type", "unknown phrase_type 'weird'; expected one of freeform"),
    ],
)
def test_bad_fields_name_row_and_field(
    tmp_path: Path, change: dict[str, object], field: str, message: str
) -> None:
    rows = [dict(r) for r in VQA_RAD_ROWS]
    rows[1].update(change)
    make_vqa_rad(tmp_path, rows)
    with pytest.raises(DataFormatError) as info:
        load("vqa_rad", tmp_path)
    assert info.value.row == RowRef.record(1) and info.value.field == field and message in str(info.value)
    assert "VQA_RAD Dataset Public.json, record 1, field" in str(info.value)


def test_missing_field_lists_fields_present(tmp_path: Path) -> None:
    rows = [dict(r) for r in VQA_RAD_ROWS]
    del rows[0]["answer"]
    make_vqa_rad(tmp_path, rows)
    with pytest.raises(
        DataFormatError,
        match=r"record 0, field 'answer': missing required field \(fields present: answer_type",
    ):
        load("vqa_rad", tmp_path)


def test_empty_answer_can_be_skipped_and_is_counted(tmp_path: Path) -> None:
    rows = [dict(r) for r in VQA_RAD_ROWS]
    rows[0]["answer"] = ""
    make_vqa_rad(tmp_path, rows)
    with pytest.raises(DataFormatError, match="on_empty_answer='skip'"):
        load("vqa_rad", tmp_path)
    ds = load("vqa_rad", tmp_path, on_empty_answer="skip")
    assert ds.ids() == ["vqa_rad:1"] and ds.skipped == 1
    assert ds.skipped_rows[0].row == RowRef.record(0) and ds.skipped_rows[0].reason == "empty answer"
    assert ds.skipped_rows[0].to_dict()["row"] == "record 0"


def test_missing_image_error_or_counted_skip(tmp_path: Path) -> None:
    make_vqa_rad(tmp_path)
    (tmp_path / "VQA_RAD Image Folder" / "b.jpg").unlink()
    with pytest.raises(DataFormatError, match=r"record 1, field 'image_name': image file not found: .*b.jpg"):
        load("vqa_rad", tmp_path)
    ds = load("vqa_rad", tmp_path, on_missing_image="skip")
    assert ds.ids() == ["vqa_rad:0"] and ds.skipped == 1 and "b.jpg" in ds.skipped_rows[0].reason


def test_image_outside_root_is_refused(tmp_path: Path) -> None:
    rows = [dict(r) for r in VQA_RAD_ROWS]
    rows[0]["image_name"] = "../secret.jpg"
    make_vqa_rad(tmp_path / "rad", rows)
    (tmp_path / "rad" / "secret.jpg").write_bytes(
        (tmp_path / "rad" / "VQA_RAD Image Folder" / "a.jpg").read_bytes()
    )
    with pytest.raises(DataFormatError, match="outside the dataset root"):
        load("vqa_rad", tmp_path / "rad")
    # the path is judged as written: a link made inside the root is followed, wherever it points
    link = tmp_path / "rad" / "VQA_RAD Image Folder" / "link.jpg"
    os.symlink(tmp_path / "rad" / "secret.jpg", link)
    from medvqa.records import ImageRef

    assert ImageRef(path=str(link), root=str(link.parent)).open().mode == "RGB"
    with pytest.raises(ImageLoadError, match="outside the dataset root"):
        ImageRef(path=str(link.parent / ".." / "secret.jpg"), root=str(link.parent)).open()


def test_corrupt_image_fails_when_opened_not_when_indexed(tmp_path: Path) -> None:
    make_vqa_rad(tmp_path)
    (tmp_path / "VQA_RAD Image Folder" / "a.jpg").write_bytes(b"not an image")
    ds = load("vqa_rad", tmp_path)
    assert ds[0].image is not None
    with pytest.raises(ImageLoadError, match=r"a\.jpg"):
        ds[0].image.open()


def test_wrong_column_names_in_hf_layout(tmp_path: Path) -> None:
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "metadata.jsonl").write_text(
        json.dumps({"file_name": "a.jpg", "query": "q?", "answer": "yes"}) + "\n"
    )
    with pytest.raises(
        DataFormatError,
        match=r"no question column: expected one of 'question', found columns 'file_name', 'query', 'answer'",
    ):
        load("vqa_rad", tmp_path, split="train")


def test_malformed_csv_rows(tmp_path: Path) -> None:
    make_imagefolder(tmp_path, fmt="csv")
    meta = tmp_path / "train" / "metadata.csv"
    meta.write_text(meta.read_text() + "a.jpg,too,many,cells\n")
    with pytest.raises(
        DataFormatError, match=r"metadata.csv, line 6: row has 4 cells, more than the header's 3"
    ):
        load("vqa_rad", tmp_path, split="train")
    (tmp_path / "reasoning_fake.csv").write_text(MED_HALT_CSV.replace(",question,options", ",question,opts"))
    with pytest.raises(DataFormatError, match=r"missing column\(s\) options; columns present: id, .*opts"):
        load("med_halt", tmp_path)


def test_med_halt_options_are_never_evaluated(tmp_path: Path) -> None:
    bad = MED_HALT_CSV.replace(
        "\"{'0': 'Vagus', '1': 'None of the above'}\"", "\"__import__('os').system('exit 3')\""
    )
    (tmp_path / "reasoning_fake.csv").write_text(bad)
    with pytest.raises(DataFormatError, match=r"csv, line 4, field 'options': not a literal dict or list"):
        load("med_halt", tmp_path)


def test_path_vqa_and_roco_malformed_records(tmp_path: Path) -> None:
    root = make_path_vqa(tmp_path / "p", images=False)
    qa = root / "official_qa" / "pvqa_train.json"
    recs = json.loads(qa.read_text())
    recs[1]["labelf"]["pvqa"].pop()
    qa.write_text(json.dumps(recs))
    with pytest.raises(
        DataFormatError,
        match=r"pvqa_train.json, record 1, field 'labelf': sentf.pvqa and labelf.pvqa must be lists of equal length",
    ):
        load("path_vqa", root)
    roco = make_roco(tmp_path / "r")
    cap = roco / "validation" / "radiology" / "captions.txt"
    cap.write_text(cap.read_text() + "ROCO_00009 no tab here\n")
    with pytest.raises(
        DataFormatError, match=r"captions.txt, line 3, field 'captions': expected 'ROCO_id<TAB>caption'"
    ):
        load("roco", roco, split="validation")
    with pytest.raises(ValueError, match=r"no 'train' split .*splits present: validation"):
        load("roco", roco, split="train")


def test_unrecognized_folder_explains_expected_layouts(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    for name in ("vqa_rad", "slake", "path_vqa", "roco"):
        with pytest.raises(DataFormatError, match="layout found: expected"):
            load(name, tmp_path)
