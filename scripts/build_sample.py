"""Rebuild src/medvqa/_sample/ from the real releases (run from the repository root).

Usage: python scripts/build_sample.py [SHARED_DATA_DIR]   (default: ../shared/data)
Images are shrunk to at most 256 px per side (JPEG quality 80) to keep the package small.
"""
import collections
import csv
import json
import re
import shutil
import sys
from pathlib import Path

from PIL import Image

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
DST = Path(__file__).resolve().parents[1] / "src" / "medvqa" / "_sample"
if DST.exists():
    shutil.rmtree(DST)
MAXSIDE = 256

def shrink(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    im = Image.open(src); im.load()
    im = im.convert("RGB") if im.mode not in ("RGB", "L") else im
    im.thumbnail((MAXSIDE, MAXSIDE))
    im.save(dst, "JPEG", quality=80, optimize=True)

# ---------- VQA-RAD ----------
rows = json.load(open(SRC / "vqa_rad/VQA_RAD Dataset Public.json"))
by_img = collections.defaultdict(list)
for i, r in enumerate(rows):
    by_img[r["image_name"]].append(i)
TEST = ("test_freeform", "test_para")
chosen_rows = set()
chosen_imgs = []
must = [0] + [i for i, r in enumerate(rows) if not isinstance(r["answer"], str)][:1]
for i in must:
    chosen_imgs.append(rows[i]["image_name"])
for name in sorted(by_img):
    idx = by_img[name]
    if any(rows[i]["phrase_type"] in TEST for i in idx) and name not in chosen_imgs:
        chosen_imgs.append(name)
    if len(chosen_imgs) >= 30:
        break
for name in chosen_imgs:
    idx = by_img[name]
    tr = [i for i in idx if rows[i]["phrase_type"] not in TEST]
    te = [i for i in idx if rows[i]["phrase_type"] in TEST]
    closed = [i for i in tr if rows[i]["answer_type"].strip() == "CLOSED"]
    opn = [i for i in tr if rows[i]["answer_type"].strip() == "OPEN"]
    pick = (closed[:1] + opn[:1]) or tr[:2]
    if len(pick) < 2:
        pick = tr[:2]
    chosen_rows.update(pick)
    chosen_rows.update(te[:1])
chosen_rows.update(must)
out = [rows[i] for i in sorted(chosen_rows)]
d = DST / "vqa_rad"
d.mkdir(parents=True)
(d / "VQA_RAD Dataset Public.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
for name in sorted({r["image_name"] for r in out}):
    shrink(SRC / "vqa_rad/VQA_RAD Image Folder" / name, d / "VQA_RAD Image Folder" / name)
vqa_imgs = {r["image_name"] for r in out}
print("vqa_rad", collections.Counter("test" if r["phrase_type"] in TEST else "train" for r in out), len(vqa_imgs))

# ---------- SLAKE ----------
d = DST / "slake"
plan = {"train.json": 4, "validate.json": 2, "test.json": 2}
for fname, nimg in plan.items():
    data = [r for r in json.load(open(SRC / "slake" / fname)) if r["q_lang"] == "en" and str(r["answer"]).strip()]
    byi = collections.defaultdict(list)
    for r in data:
        byi[r["img_name"]].append(r)
    names = sorted(byi, key=lambda n: int(n.split("/")[0][5:]))[::37][:nimg]
    keep = []
    for n in names:
        rs = byi[n]
        c = [r for r in rs if r["answer_type"] == "CLOSED"][:2]
        o = [r for r in rs if r["answer_type"] == "OPEN"][:2]
        keep += c + o
    keep.sort(key=lambda r: r["qid"])
    d.mkdir(parents=True, exist_ok=True)
    (d / fname).write_text(json.dumps(keep, indent=1, ensure_ascii=False) + "\n")
    for n in names:
        shrink(SRC / "slake/imgs" / n, d / "imgs" / n)
    print("slake", fname, len(keep), names)

# ---------- Med-HALT ----------
d = DST / "med_halt"; d.mkdir(parents=True)
with open(SRC / "medhalt/reasoning_fake.csv", newline="", encoding="utf-8") as fh:
    reader = csv.DictReader(fh); header = reader.fieldnames; allrows = list(reader)
import ast
import sys

sys.path.insert(0, "/work/main/src")
from medvqa.data._med_halt import abstain_option

pick = allrows[:10]
for r in allrows:
    o = ast.literal_eval(r["options"])
    rule = abstain_option({str(k): str(v) for k, v in o.items()})[1]
    if rule == "contains" and not any(p is r for p in pick):
        pick.append(r); break
for r in allrows:
    o = ast.literal_eval(r["options"])
    rule = abstain_option({str(k): str(v) for k, v in o.items()})[1]
    if rule == "last_option":
        pick.append(r); break
with open(d / "reasoning_fake.csv", "w", newline="", encoding="utf-8") as fh:
    w = csv.DictWriter(fh, fieldnames=header); w.writeheader(); w.writerows(pick)
print("med_halt", len(pick))

# ---------- captions (ROCO layout from VQA-RAD) ----------
ORGAN = {"HEAD": "head", "CHEST": "chest", "ABD": "abdomen"}
def statement(q):
    q = q.strip()
    m = re.match(r"^(Is|Are) there (.+?)\??$", q, re.I)
    if m:
        return f"There {m.group(1).lower()} {m.group(2)}."
    m = re.match(r"^Is this (an? .+?)\??$", q, re.I)
    if m:
        return f"This is {m.group(1)}."
    m = re.match(r"^(Is|Are) the (.+?) (enlarged|normal|dilated|abnormal|visible|present|calcified|shifted|involved)\??$", q, re.I)
    if m:
        return f"The {m.group(2)} {m.group(1).lower()} {m.group(3)}."
    return None
cands = []
for name in sorted(by_img):
    if name in vqa_imgs:
        continue
    idx = by_img[name]
    organ = rows[idx[0]]["image_organ"]
    facts = []
    for i in idx:
        r = rows[i]
        if r["answer_type"].strip() == "CLOSED" and str(r["answer"]).strip().lower() == "yes":
            s = statement(r["question"])
            if s and s.lower() not in {f.lower() for f in facts}:
                facts.append(s)
    if facts and organ in ORGAN:
        cands.append((name, organ, facts[:3]))
cands = cands[::max(1, len(cands) // 24)][:24]
lic = []
for k, (name, organ, facts) in enumerate(cands):
    split = "train" if k < 16 else "validation"
    rid = f"ROCO_{90001 + k}"
    folder = DST / "captions" / split / "radiology"
    folder.mkdir(parents=True, exist_ok=True)
    cap = f"Radiology image of the {ORGAN[organ]}. " + " ".join(f[0].upper() + f[1:] for f in facts)
    with open(folder / "captions.txt", "a", encoding="utf-8") as fh:
        fh.write(f"{rid}\t {cap}\n")
    with open(folder / "licences.txt", "a", encoding="utf-8") as fh:
        if fh.tell() == 0:
            fh.write("ROCO_ID,PMC_ID,CC\n")
        fh.write(f"{rid},{name},CC0 (VQA-RAD image {name})\n")
    shrink(SRC / "vqa_rad/VQA_RAD Image Folder" / name, folder / "images" / f"{rid}.jpg")
    print(split, rid, name, cap)

# Each folder declares itself a subset, so medvqa.data.load notes it as one instead of an unknown size.
SUBSETS = {
    "vqa_rad": ("the VQA-RAD official release",
                "90 rows of the official JSON (61 train, 29 test) on 30 downscaled images; see ../LICENSES.md"),
    "slake": ("the SLAKE 1.0 official release (English rows)",
              "16 train, 8 validation and 8 test English rows of 8 images, images downscaled; see ../LICENSES.md"),
    "captions": ("image-caption pairs in the ROCO layout made from CC0 VQA-RAD images (not ROCO data)",
                 "16 train and 8 validation pairs; see ../LICENSES.md"),
    "med_halt": ("the Med-HALT reasoning_fake release",
                 "12 rows of reasoning_fake.csv, copied verbatim; see ../LICENSES.md"),
}
for folder, (of, description) in SUBSETS.items():
    (DST / folder / "medvqa-subset.json").write_text(
        json.dumps({"subset_of": of, "description": description}, indent=2) + "\n"
    )
