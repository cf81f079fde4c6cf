"""Ablation transforms vs image decoding, per sample, on SLAKE English test (1,061 questions).

Applying the swap (content derangement: reads and hashes every image file) and the blank
transform (one in-memory PNG shared by all samples) must cost little next to decoding the
images, which every generation run does anyway. Prints, per sample: decoding time (the
baseline), swap time, blank time, and each ratio transform / decoding.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SHARED_DATA, best_of, emit, skip


def _load_slake(root: Path) -> list[Any]:
    try:
        from medvqa.data import load

        return list(load("slake", root, split="test"))
    except ImportError:  # the data layer is not installed: parse the official JSON directly
        from medvqa.records import ImageRef, VQASample, infer_answer_type

        rows = json.loads((root / "test.json").read_text(encoding="utf-8"))
        out = []
        for row in rows:
            if row.get("q_lang") != "en":
                continue
            answer = str(row["answer"])
            out.append(
                VQASample(
                    id=f"slake:test:{row['qid']}",
                    question=row["question"],
                    answer=answer,
                    answer_type="closed" if row.get("answer_type") == "CLOSED" else infer_answer_type(answer),
                    answer_type_source="annotation",
                    dataset="slake",
                    split="test",
                    image=ImageRef(
                        path=str(root / "imgs" / row["img_name"]), root=str(root), name=row["img_name"]
                    ),
                    metadata={"modality": row.get("modality"), "location": row.get("location")},
                )
            )
        return out


def main() -> int:
    root = SHARED_DATA / "slake"
    if not (root / "test.json").is_file():
        skip(f"SLAKE not found at {root}")
        return 0
    from medvqa.transforms import BlankImage, SwapImages

    samples = _load_slake(root)
    n = len(samples)

    def decode() -> int:
        total = 0
        for s in samples:
            img = s.image.open()
            total += img.size[0]
        return total

    decode_s, _ = best_of(decode, repeat=2)
    swap_s, swapped = best_of(lambda: SwapImages(seed=0)(samples), repeat=3)
    within_s, _ = best_of(
        lambda: SwapImages(seed=0, within=("modality",), fallback="pool")(samples), repeat=3
    )
    blank_s, blanked = best_of(lambda: BlankImage()(samples), repeat=3)
    assert len(swapped) == len(blanked) == n

    per = 1e6 / n
    decode_us = decode_s * per
    emit("decode image (ImageRef.open)", decode_us, "us/sample", n=n)
    for name, seconds in (
        ("SwapImages (content hash + derangement)", swap_s),
        ("SwapImages within modality", within_s),
        ("BlankImage (constant)", blank_s),
    ):
        emit(
            name,
            seconds * per,
            "us/sample",
            n=n,
            baseline=decode_us,
            ratio=seconds * per / decode_us,
            ratio_meaning="transform time / decoding time (lower is better)",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
