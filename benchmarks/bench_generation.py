"""Batched generation (batch size 8) vs the paper's one-question-at-a-time loop, on CPU.

Both runs answer the same VQA-RAD test questions (real images: ../shared/data when present,
else the sample bundled with the package) with the same model, greedily, with
``max_new_tokens=20``, through :func:`medvqa.generation.generate_answers`. Model: the
``small`` offline Idefics2 (about 12 M parameters, random weights, so it rarely stops
early and both runs generate the full 20 tokens). Prints both throughputs (questions/s), the
speed-up, and how many answers are identical (they must all be). The two variants run
alternately three times and each keeps its fastest run, which steadies the ratio on a busy
machine.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, limit_torch_threads, skip, vqa_rad_source

N_QUESTIONS = int(os.environ.get("MEDVQA_BENCH_N", "16"))
REPEAT = 3


def main() -> int:
    try:
        import torch

        from medvqa.data import load
        from medvqa.generation import generate_answers
        from medvqa.models import tiny_idefics2
    except ImportError as exc:
        skip(f"needs medvqa[train]: {exc}")
        return 0
    limit_torch_threads(torch)
    source = vqa_rad_source()
    samples = list(load("vqa_rad", source, split="test"))[:N_QUESTIONS]
    model, processor = tiny_idefics2(seed=0, size="small")
    generate_answers(model, processor, samples[:2], batch_size=2, max_new_tokens=4, progress=False)  # warm-up

    # interleave the two variants and keep each one's fastest run: robust to a busy machine
    t_one = t_eight = float("inf")
    for _ in range(REPEAT):
        start = time.perf_counter()
        one = generate_answers(model, processor, samples, batch_size=1, max_new_tokens=20, progress=False)
        t_one = min(t_one, time.perf_counter() - start)
        start = time.perf_counter()
        eight = generate_answers(model, processor, samples, batch_size=8, max_new_tokens=20, progress=False)
        t_eight = min(t_eight, time.perf_counter() - start)

    n = len(samples)
    same = sum(a.prediction == b.prediction for a, b in zip(one, eight))
    emit("one-at-a-time loop (paper)", n / t_one, "questions/s", n=n)
    emit(
        "batched generation, batch size 8",
        n / t_eight,
        "questions/s",
        baseline=n / t_one,
        ratio=t_one / t_eight,
        ratio_meaning="speed-up over the one-at-a-time loop",
        n=n,
        note=f"{same}/{n} identical answers; best of {REPEAT}; data: {source}; threads: {torch.get_num_threads()}",
    )
    return 0 if same == n else 1


if __name__ == "__main__":
    sys.exit(main())
