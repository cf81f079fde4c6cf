"""Training-collator throughput vs the tiny model's training step, on real VQA-RAD images.

Collating a batch means opening and decoding each image, resizing and normalising it,
rendering the chat, tokenizing and building the labels. Measured on batches of 8 VQA-RAD
train questions (real JPEG images: ../shared/data when present, else the bundled sample),
against one forward + backward pass of the tiny and small offline Idefics2 on the same
batch. A ratio above 1 means the collator prepares batches faster than the model consumes
them (data preparation is not the bottleneck, even without worker processes).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_of, emit, limit_torch_threads, run_timed, skip, vqa_rad_source, vqa_rad_train_batches

BATCH = 8
N_BATCHES = 8


def main() -> int:
    try:
        import torch

        from medvqa.collate import TrainingCollator
        from medvqa.models import tiny_idefics2
    except ImportError as exc:
        skip(f"needs medvqa[train]: {exc}")
        return 0
    limit_torch_threads(torch)
    source = vqa_rad_source()
    batches = vqa_rad_train_batches(BATCH, N_BATCHES)
    n = sum(len(b) for b in batches)

    for size in ("tiny", "small"):
        model, processor = tiny_idefics2(seed=0, size=size)
        collator = TrainingCollator(processor, mode="answer")
        collated = [collator(b) for b in batches]  # warm-up (and the batches the model steps on)
        t_collate, _ = best_of(lambda c=collator: [c(b) for b in batches], repeat=2)
        model.train()

        def steps(m=model, cs=collated) -> None:
            for batch in cs:
                m(**batch).loss.backward()
                m.zero_grad(set_to_none=True)

        steps()
        t_step, _ = best_of(steps, repeat=2)
        emit(f"model step ({size} model, forward+backward)", n / t_step, "samples/s", n=n)
        emit(
            f"training collator vs {size} model step",
            n / t_collate,
            "samples/s",
            baseline=n / t_step,
            ratio=t_step / t_collate,
            ratio_meaning="collator throughput / model-step throughput (>1: data is not the bottleneck)",
            n=n,
            note=f"batch {BATCH}; data: {source}",
        )
    return 0


if __name__ == "__main__":
    run_timed(main)
