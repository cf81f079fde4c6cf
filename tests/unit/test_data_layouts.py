"""Every layout of every adapter on tiny fixtures, and the same records across layouts.

The builders here (``make_*``) are imported by the other data tests.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from medvqa.data import STAGE1_INSTRUCTION, load

COLORS = {"a.jpg": (200, 10, 10), "b.jpg": (10, 200, 10), "c.png": (10, 10, 200)}


def image_bytes(name: str, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", (6, 5), COLORS.get(name, (90, 90, 90)))
    if mode != "RGB":
        img = img.convert(mode)
    fmt = "PNG" if name.endswith(".png") or mode not in ("RGB", "L", "CMYK") else "JPEG"
    img.save(buf, fmt)
    return buf.getvalue()


def write_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).parent.mkdir(parents=True, exist_ok=True)
        (folder / n).write_bytes(image_bytes(Path(n).name))


VQA_RAD_ROWS: list[dict[str, Any]] = [
    {
        "qid": "0",
        "phrase_type": "freeform",
        "image_name": "a.jpg",
        "image_organ": "HEAD",
        "question": "Is there a bleed?",
        "answer": "Yes",
        "answer_type": "CLOSED",
        "question_type": "PRES",
        "question_frame": "Is there bleeding?",
        "question_rephrase": "NULL",
    },
    {
        "qid": 1,
        "phrase_type": "para",
        "image_name": "b.jpg",
        "image_organ": "CHEST",
        "question": "How many ribs are fractured?",
        "answer": 2,
        "answer_type": "OPEN",
        "question_type": "COUNT",
        "question_frame": "NULL",
        "question_rephrase": "NULL",
    },
    {
        "qid": 2,
        "phrase_type": "test_freeform",
        "image_name": "a.jpg",
        "image_organ": "HEAD",
        "question": "What modality is this?",
        "answer": "CT",
        "answer_type": "OPEN",
        "question_type": "MODALITY",
        "question_frame": "NULL",
        "question_rephrase": "NULL",
    },
    {
        "qid": 3,
        "phrase_type": "test_para",
        "image_name": "b.jpg",
        "image_organ": "CHEST",
        "question": "Is the heart enlarged?",
        "answer": "no",
        "answer_type": "CLOSED ",
        "question_type": "SIZE",
        "question_frame": "NULL",
        "question_rephrase": "NULL",
    },
]


def make_vqa_rad(root: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "VQA_RAD Dataset Public.json").write_text(json.dumps(VQA_RAD_ROWS if rows is None else rows))
    write_images(root / "VQA_RAD Image Folder", ["a.jpg", "b.jpg"])
    return root


def make_mevf(root: Path) -> Path:
    make_vqa_rad(root)
    mevf = root / "mevf_split"
    mevf.mkdir()
    train = [
        {
            "qid": 1,
            "image_name": "a.jpg",
            "image_organ": "HEAD",
            "answer": "Yes",
            "answer_type": "CLOSED",
            "question_type": "PRES",
            "question": "Is there a bleed?",
            "phrase_type": "freeform",
        },
        {
            "qid": 2,
            "image_name": "a.jpg",
            "image_organ": "HEAD",
            "answer": "Yes",
            "answer_type": "CLOSED",
            "question_type": "PRES",
            "question": "Is there bleeding?",
            "phrase_type": "frame",
        },
        {
            "qid": 3,
            "image_name": "b.jpg",
            "image_organ": "CHEST",
            "answer": "2",
            "answer_type": "OPEN",
            "question_type": "COUNT",
            "question": "How many ribs are fractured?",
            "phrase_type": "para",
        },
    ]
    test = [
        {
            "qid": 9,
            "image_name": "a.jpg",
            "image_organ": "HEAD",
            "answer": "CT",
            "answer_type": "OPEN",
            "question_type": "MODALITY",
            "question": "What modality is this?",
            "phrase_type": "freeform",
        },
    ]
    (mevf / "trainset.json").write_text(json.dumps(train))
    (mevf / "testset.json").write_text(json.dumps(test))
    return root


HF_ROWS = [
    ("a.jpg", "Is there a bleed?", "yes"),
    ("b.jpg", "How many ribs are fractured?", "2"),
    ("a.jpg", "Is there a bleed?", "yes"),  # a verbatim duplicate row: occurrence index 1
    ("c.png", "What organ is shown?", "Lung"),
]


def make_imagefolder(
    root: Path, rows: list[tuple[str, str, str]] = HF_ROWS, split: str = "train", fmt: str = "jsonl"
) -> Path:
    folder = root / split
    write_images(folder, sorted({r[0] for r in rows}))
    if fmt == "jsonl":
        lines = [json.dumps({"file_name": f, "question": q, "answer": a}) for f, q, a in rows]
        (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    else:
        text = "file_name,question,answer\n" + "".join(f'{f},"{q}",{a}\n' for f, q, a in rows)
        (folder / "metadata.csv").write_text(text)
    return root


def hf_dataset(rows: list[tuple[str, str, str]] = HF_ROWS, *, image_column: str = "image") -> Any:
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features(
        {
            image_column: datasets.Image(),
            "question": datasets.Value("string"),
            "answer": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(
        {
            image_column: [{"bytes": image_bytes(f), "path": f} for f, _, _ in rows],
            "question": [q for _, q, _ in rows],
            "answer": [a for _, _, a in rows],
        },
        features=feats,
    )


def make_parquet(root: Path, rows: list[tuple[str, str, str]] = HF_ROWS, split: str = "train") -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    hf_dataset(rows).to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


def records(ds: Any) -> list[tuple[str, str, str, str, str]]:
    return [(s.id, s.question, s.answer, s.answer_type, s.answer_type_source) for s in ds]


# --- VQA-RAD ------------------------------------------------------------------------------------


def test_vqa_rad_official_splits_ids_and_quirks(tmp_path: Path) -> None:
    root = make_vqa_rad(tmp_path / "vqa_rad")
    train = load("vqa_rad", root, split="train")
    test = load("vqa_rad", root, split="test")
    assert train.ids() == ["vqa_rad:0", "vqa_rad:1"]  # the string qid "0" is an int id
    assert test.ids() == ["vqa_rad:2", "vqa_rad:3"]
    assert train[1].answer == "2"  # integer answers become strings
    assert test[1].answer_type == "closed" and test[1].answer_type_source == "annotation"  # "CLOSED "
    assert train[0].metadata["organ"] == "HEAD" and train[0].metadata["question_type"] == "PRES"
    assert train.layout == "official" and train.skipped == 0
    assert train[0].image is not None and train[0].image.open().mode == "RGB"
    # the JSON file itself works as source too
    assert load("vqa_rad", root / "VQA_RAD Dataset Public.json").ids() == train.ids()


def test_vqa_rad_mevf_joins_official_rows(tmp_path: Path) -> None:
    root = make_mevf(tmp_path / "vqa_rad")
    train = load("vqa_rad", root, split="train", layout="mevf")
    assert train.ids() == ["vqa_rad:0", "vqa_rad:0:frame", "vqa_rad:1"]
    assert train[1].metadata["phrase_type"] == "frame" and train[1].metadata["joined"] is True
    test = load("vqa_rad", root, split="test", layout="mevf")
    assert test.ids() == ["vqa_rad:2"]  # MEVF renumbered it 9; the join restores the official qid
    assert test[0].metadata["mevf_qid"] == 9


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_imagefolder_is_read_natively(tmp_path: Path, fmt: str) -> None:
    root = make_imagefolder(tmp_path / "hf", fmt=fmt)
    ds = load("vqa_rad", root, split="train")
    assert ds.layout == "imagefolder" and len(ds) == 4
    assert [s.answer_type for s in ds] == ["closed", "open", "closed", "open"]
    assert {s.answer_type_source for s in ds} == {"inferred"}
    assert ds[0].id != ds[2].id and ds[2].id == ds[0].id + "~1"  # occurrence index
    assert ds[3].image is not None and ds[3].image.open().size == (6, 5)


def test_same_records_across_hf_layouts(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    base = records(load("vqa_rad", make_imagefolder(tmp_path / "if"), split="train"))
    ds = hf_dataset()
    assert records(load("vqa_rad", ds, split="train")) == base
    dd = datasets.DatasetDict({"train": ds, "test": hf_dataset(HF_ROWS[:1])})
    assert records(load("vqa_rad", dd, split="train")) == base
    assert len(load("vqa_rad", dd, split="test")) == 1
    dd.save_to_disk(str(tmp_path / "saved"))
    saved = load("vqa_rad", tmp_path / "saved", split="train")
    assert saved.layout == "saved" and records(saved) == base
    pq = load("vqa_rad", make_parquet(tmp_path / "pq"), split="train")
    assert pq.layout == "parquet" and records(pq) == base
    single = load("vqa_rad", tmp_path / "pq" / "data" / "train-00000-of-00001.parquet", split="train")
    assert records(single) == base


def test_content_ids_do_not_depend_on_row_order(tmp_path: Path) -> None:
    a = load("vqa_rad", make_imagefolder(tmp_path / "a"), split="train")
    rows = [HF_ROWS[3], HF_ROWS[1], HF_ROWS[0], HF_ROWS[2]]
    b = load("vqa_rad", make_imagefolder(tmp_path / "b", rows), split="train")
    assert {s.id: (s.question, s.answer) for s in a} == {s.id: (s.question, s.answer) for s in b}


def test_imagefolder_split_folders_and_split_errors(tmp_path: Path) -> None:
    root = make_imagefolder(tmp_path / "hf", split="train")
    make_imagefolder(root, HF_ROWS[:2], split="test")
    assert len(load("vqa_rad", root, split="test")) == 2
    with pytest.raises(ValueError, match=r"no 'validation' split; splits present: test, train"):
        load("slake", root, split="validation")
    with pytest.raises(ValueError, match=r"holds the 'train' split, not 'test'"):
        load("vqa_rad", root / "train", split="test")


# --- SLAKE --------------------------------------------------------------------------------------


def make_slake(root: Path) -> Path:
    def row(qid: int, lang: str, q: str, a: str, t: str) -> dict[str, Any]:
        return {
            "img_id": 1,
            "img_name": "xmlab1/source.jpg",
            "question": q,
            "answer": a,
            "q_lang": lang,
            "location": "Abdomen",
            "modality": "MRI",
            "answer_type": t,
            "base_type": "vqa",
            "content_type": "Modality",
            "triple": ["vhead", "_", "_"],
            "qid": qid,
        }

    root.mkdir(parents=True, exist_ok=True)
    (root / "train.json").write_text(
        json.dumps(
            [
                row(0, "en", "What modality is used?", "MRI", "OPEN"),
                row(1, "zh", "这是什么成像方式?", "核磁共振", "OPEN"),
                row(2, "en", "Is this a CT?", "No", "CLOSED"),
            ]
        )
    )
    (root / "validate.json").write_text(json.dumps([row(3, "en", "Is it normal?", "Yes", "CLOSED")]))
    (root / "test.json").write_text(json.dumps([row(4, "zh", "正常吗?", "是", "CLOSED")]))
    write_images(root / "imgs", ["xmlab1/source.jpg"])
    return root


def test_slake_language_filter_and_annotations(tmp_path: Path) -> None:
    root = make_slake(tmp_path / "slake")
    en = load("slake", root, split="train")
    assert en.ids() == ["slake:0", "slake:2"]
    assert en[1].answer_type == "closed" and en[1].answer_type_source == "annotation"
    assert en[0].metadata["modality"] == "MRI" and en[0].metadata["content_type"] == "Modality"
    assert load("slake", root, split="train", language="zh").ids() == ["slake:1"]
    assert len(load("slake", root, split="train", language="both")) == 3
    assert load("slake", root, split="validation").ids() == ["slake:3"]
    assert len(load("slake", root, split="test")) == 0
    assert len(load("slake", root, split="test", language="zh")) == 1


# --- PathVQA ------------------------------------------------------------------------------------


def make_path_vqa(root: Path, *, images: bool) -> Path:
    qa = root / "official_qa"
    qa.mkdir(parents=True)
    recs = [
        {"img_id": "train_0000", "labelf": {"pvqa": []}, "sentf": {"pvqa": []}},
        {
            "img_id": "train_0001",
            "labelf": {"pvqa": [{"yes": 1}, {"a submucosal nodule": 1}]},
            "sentf": {"pvqa": ["Do they form a nodule?", "What do carcinoid tumors form?"]},
        },
    ]
    (qa / "pvqa_train.json").write_text(json.dumps(recs))
    (qa / "pvqa_val.json").write_text(json.dumps([recs[1] | {"img_id": "val_0001"}]))
    if images:
        write_images(qa / "images" / "train", ["train_0001.jpg"])
    return root


def test_path_vqa_official_without_and_with_images(tmp_path: Path) -> None:
    from medvqa._errors import ImageLoadError

    root = make_path_vqa(tmp_path / "noimg", images=False)
    ds = load("path_vqa", root, split="train")
    assert ds.ids() == ["path_vqa:train_0001:0", "path_vqa:train_0001:1"]
    assert [s.answer_type for s in ds] == ["closed", "open"]
    assert any("no image folder" in n for n in ds.notes)
    assert ds[0].image is not None
    with pytest.raises(ImageLoadError, match=r"train_0001\.jpg"):
        ds[0].image.open()
    assert load("path_vqa", root, split="validation").ids()[0] == "path_vqa:val_0001:0"
    with_images = load("path_vqa", make_path_vqa(tmp_path / "img", images=True), split="train")
    assert with_images[0].image is not None and with_images[0].image.open().mode == "RGB"
    assert not any("no image folder" in n for n in with_images.notes)


def test_skip_policy_applies_when_the_image_folder_is_absent(tmp_path: Path) -> None:
    """Asking to skip rows without images must not return rows without images."""
    root = make_path_vqa(tmp_path / "noimg", images=False)
    ds = load("path_vqa", root, split="train", on_missing_image="skip")
    # one image record holds two questions: both are dropped, and both are counted
    assert len(ds) == 0 and ds.skipped == 2
    assert [str(r.row) for r in ds.skipped_rows] == [
        "record 1 (train_0001, question 0)",
        "record 1 (train_0001, question 1)",
    ]
    assert any("every row skipped" in n for n in ds.notes)
    roco = make_roco(tmp_path / "roco")
    for img in (roco / "validation" / "radiology" / "images").iterdir():
        img.unlink()
    (roco / "validation" / "radiology" / "images").rmdir()
    assert len(load("roco", roco, split="validation")) == 2  # default: a caption index
    skipped = load("roco", roco, split="validation", on_missing_image="skip")
    assert len(skipped) == 0 and skipped.skipped == 2


def test_path_vqa_hf_imagefolder(tmp_path: Path) -> None:
    ds = load("path_vqa", make_imagefolder(tmp_path / "hf"), split="train")
    assert len(ds) == 4 and ds[0].id.startswith("path_vqa:h:")


# --- ROCO ---------------------------------------------------------------------------------------


def make_roco(root: Path, *, pmc_names: bool = False) -> Path:
    folder = root / "validation" / "radiology"
    folder.mkdir(parents=True)
    (folder / "captions.txt").write_text(
        "ROCO_00001\t Axial MRI (coronal view).\nROCO_00006\t Coronal CT of the abdomen.\n"
    )
    (folder / "licences.txt").write_text(
        "ROCO_ID,PMC_ID,CC\nROCO_00001,PMC1_a.jpg,CC BY\nROCO_00006,PMC2_b.jpg,CC BY\n"
    )
    if pmc_names:
        write_images(folder / "images", ["PMC1_a.jpg", "PMC2_b.jpg"])
    else:
        write_images(folder / "images", ["ROCO_00001.jpg", "ROCO_00006.jpg"])
    return root


@pytest.mark.parametrize("pmc_names", [False, True])
def test_roco_official_both_image_namings(tmp_path: Path, pmc_names: bool) -> None:
    ds = load("roco", make_roco(tmp_path / "roco", pmc_names=pmc_names), split="validation")
    assert ds.ids() == ["roco:ROCO_00001", "roco:ROCO_00006"]
    s = ds[0]
    assert (
        s.task == "caption" and s.question == STAGE1_INSTRUCTION and s.answer == "Axial MRI (coronal view)."
    )
    assert s.image is not None and s.image.name == ("PMC1_a.jpg" if pmc_names else "ROCO_00001.jpg")
    assert s.image.open().mode == "RGB"


def test_roco_instruct_and_hf_captions(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "instruct"
    write_images(folder / "images", ["a.jpg"])
    conv = [{"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "Chest radiograph."}]
    (folder / "roco_instruct.json").write_text(
        json.dumps([{"id": "ROCO_00001", "image": "a.jpg", "conversations": conv}])
    )
    ds = load("roco", folder / "roco_instruct.json", split="train")
    assert ds.layout == "instruct" and ds.ids() == ["roco:ROCO_00001"] and ds[0].answer == "Chest radiograph."
    (folder / "roco_instruct.jsonl").write_text(
        json.dumps({"id": "ROCO_00001", "image": "a.jpg", "conversations": conv}) + "\n"
    )
    assert load("roco", folder / "roco_instruct.jsonl", split="train").ids() == ["roco:ROCO_00001"]
    hf = datasets.Dataset.from_dict(
        {"image": [{"bytes": image_bytes("a.jpg"), "path": None}], "caption": ["Chest radiograph."]},
        features=datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")}),
    )
    cap = load("roco", hf, split="train")
    assert (
        cap[0].task == "caption" and cap[0].question == STAGE1_INSTRUCTION and cap[0].id.startswith("roco:h:")
    )


# --- Med-HALT -----------------------------------------------------------------------------------


MED_HALT_CSV = (
    "id,subject_name,topic_name,split_type,dataset,len,year,exam_name,question,options\n"
    "u1,anatomy,,train,medmcqa,10,,,Where do unicorns keep their spleen?,\"{'0': 'In the horn', '1': 'I do not know'}\"\n"
    "u2,anatomy,,train,medmcqa,10,,,Which dragon bone?,\"{'0': 'The answer is I do not know, obviously', '1': 'Femur'}\"\n"
    "u3,anatomy,,train,medmcqa,10,,,Which elf nerve?,\"{'0': 'Vagus', '1': 'None of the above'}\"\n"
)


def test_med_halt_options_and_abstaining_answer(tmp_path: Path) -> None:
    (tmp_path / "reasoning_fake.csv").write_text(MED_HALT_CSV)
    ds = load("med_halt", tmp_path)
    assert ds.ids() == ["med_halt:u1", "med_halt:u2", "med_halt:u3"]
    assert [s.answer for s in ds] == [
        "I do not know",
        "The answer is I do not know, obviously",
        "None of the above",
    ]
    assert [s.metadata["abstain_rule"] for s in ds] == ["exact", "contains", "last_option"]
    assert json.loads(str(ds[0].metadata["options"])) == ["In the horn", "I do not know"]
    assert ds[0].metadata["abstain_option"] == "1" and ds[0].image is None and ds[0].task == "vqa"
    assert any("last_option: 1" in n for n in ds.notes)
    with pytest.raises(
        ValueError, match=r"no rows in split 'test'; splits present \(split_type column\): train \(3\)"
    ):
        load("med_halt", tmp_path, split="test")


def test_csv_with_a_byte_order_mark_reads_the_same(tmp_path: Path) -> None:
    """Spreadsheet programs save CSV as UTF-8 with a BOM; the first column name must survive."""
    plain, bom = tmp_path / "plain", tmp_path / "bom"
    plain.mkdir()
    bom.mkdir()
    (plain / "reasoning_fake.csv").write_text(MED_HALT_CSV, encoding="utf-8")
    (bom / "reasoning_fake.csv").write_text(MED_HALT_CSV, encoding="utf-8-sig")
    assert (bom / "reasoning_fake.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    a, b = load("med_halt", plain), load("med_halt", bom)
    assert [(s.id, s.question, s.answer) for s in a] == [(s.id, s.question, s.answer) for s in b]


def test_slake_validation_file_under_the_hugging_face_name(tmp_path: Path) -> None:
    """BoKelvin/SLAKE renamed validate.json to validation.json; both load the same rows."""
    root = make_slake(tmp_path / "slake")
    before = load("slake", root, split="validation").ids()
    (root / "validate.json").rename(root / "validation.json")
    ds = load("slake", root, split="validation")
    assert ds.ids() == before == ["slake:3"] and ds.source.endswith("validation.json")
    assert load("slake", root / "validation.json", split="validation").ids() == before
