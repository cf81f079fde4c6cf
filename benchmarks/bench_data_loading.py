"""Data loading: indexing without decoding vs iterating with decoding, in rows per second.

Measured on the real releases in ../shared/data (skipped when absent):

- indexing VQA-RAD official (2,248 rows: train + test) and PathVQA official (32,795 rows:
  train + validation + test), which reads annotation files and checks image files exist but
  never decodes an image;
- iterating with decoding: every VQA-RAD row with its image opened as RGB, and every row of
  the PathVQA imagefolder sample (3,998 rows, 400 images, RGB/CMYK/L).

The ratio is index rows/s over decode rows/s for the same dataset: how much cheaper building
an index is than touching pixels.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SHARED_DATA, best_of, emit, skip


def main() -> int:
    if not SHARED_DATA.is_dir():
        skip(f"real data not found at {SHARED_DATA} (set MEDVQA_SHARED_DATA)")
        return 0
    from medvqa.data import load

    rad = SHARED_DATA / "vqa_rad"
    pvqa = SHARED_DATA / "pathvqa"
    sample = pvqa / "imagefolder_sample"

    def index_rad() -> int:
        return sum(len(load("vqa_rad", rad, split=s)) for s in ("train", "test"))

    def index_pvqa() -> int:
        return sum(len(load("path_vqa", pvqa, split=s)) for s in ("train", "validation", "test"))

    def index_sample() -> int:
        return len(load("path_vqa", sample, split="train"))

    def decode(ds_rows: list) -> int:  # type: ignore[type-arg]
        n = 0
        for s in ds_rows:
            img = s.image.open()
            n += img.size[0] > 0
        return n

    t_rad, n_rad = best_of(index_rad)
    t_pvqa, n_pvqa = best_of(index_pvqa)
    t_sample, n_sample = best_of(index_sample)
    rad_rows = [*load("vqa_rad", rad, split="train"), *load("vqa_rad", rad, split="test")]
    sample_rows = list(load("path_vqa", sample, split="train"))
    t_rad_dec, _ = best_of(lambda: decode(rad_rows), repeat=2)
    t_sample_dec, _ = best_of(lambda: decode(sample_rows), repeat=2)

    emit("index vqa_rad official (no decoding)", n_rad / t_rad, "rows/s", n=n_rad)
    emit("index path_vqa official (no decoding)", n_pvqa / t_pvqa, "rows/s", n=n_pvqa)
    emit(
        "decode vqa_rad images (iterate, RGB)",
        len(rad_rows) / t_rad_dec,
        "rows/s",
        n=len(rad_rows),
        baseline=n_rad / t_rad,
        ratio=(n_rad / t_rad) / (len(rad_rows) / t_rad_dec),
        ratio_meaning="index rows/s / decode rows/s",
    )
    emit(
        "index path_vqa imagefolder sample (hashes image bytes for ids)",
        n_sample / t_sample,
        "rows/s",
        n=n_sample,
    )
    emit(
        "decode path_vqa imagefolder sample (iterate, RGB)",
        len(sample_rows) / t_sample_dec,
        "rows/s",
        n=len(sample_rows),
        baseline=n_sample / t_sample,
        ratio=(n_sample / t_sample) / (len(sample_rows) / t_sample_dec),
        ratio_meaning="index rows/s / decode rows/s",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
