"""Scale-out of generation and data preparation, on CPU.

Three comparisons, each against a baseline measured in the same run:

1. **2 processes vs 1** for the same generation job: ``medvqa predict`` (tiny model, 24 VQA-RAD
   test questions, batch 4, 20 new tokens) under ``torchrun --nproc-per-node 2`` (gloo), each
   process with one thread, vs one plain process with two threads. Wall time of the whole
   command (start-up and model build included); the two output files must be identical.
2. **DataLoader workers vs none** at real image resolution: generation with the checkpoint's
   real image-processor settings (Idefics2-8B: ``shortest_edge`` 378, ``longest_edge`` 980, no
   splitting) on real-size VQA-RAD images, ``num_workers=2`` vs 0; answers must be identical.
   The model stands in for a GPU: its ``generate`` sleeps 0.4 s per batch (about 20 decoding
   steps of an 8B model for 4 questions) without using the CPU, as a GPU does, so the
   comparison measures how much data preparation the workers hide. (The tiny CPU model itself
   cannot run 980-pixel images quickly: its 8-pixel patches make 15,000 image patches.)
3. **Training collator vs a GPU step**: the collator's samples/s at real resolution, on one
   core, vs the samples/s an Idefics2-8B QLoRA step would consume on one H100, estimated as
   ``0.4 x 989e12 FLOP/s / (6 x 8e9 x 120 tokens + 2 x 0.4e9 x 4,900 patches)`` (about 40
   samples/s: 40% of the dense bf16 peak; the language model's forward and backward over 64
   image and ~56 text tokens; the vision tower's forward over a 980-pixel image). A ratio
   below 1 means one core cannot feed one GPU: use data-loader workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, best_of, emit, limit_torch_threads, run_timed, skip, vqa_rad_source

N_JOB = 24
N_WORKERS_JOB = 16
REAL_SIZE = {"shortest_edge": 378, "longest_edge": 980}
GPU_STEP_FLOPS = 6 * 8e9 * 120 + 2 * 0.4e9 * (980 // 14) ** 2
GPU_SAMPLES_PER_S = 0.4 * 989e12 / GPU_STEP_FLOPS
GPU_GENERATE_S = 0.4  # 20 decoding steps of about 20 ms for a batch of 4 on one GPU


def _predict(out: Path, nproc: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1" if nproc > 1 else "2", "PYTHONPATH": str(REPO_ROOT / "src")}
    argv = [
        "-m",
        "medvqa",
        "predict",
        "--model",
        "tiny",
        "--dataset",
        "vqa_rad",
        "--data",
        str(vqa_rad_source()),
    ]
    argv += ["--limit", str(N_JOB), "--batch-size", "4", "--no-progress", "--output", str(out)]
    cmd = [sys.executable, *argv]
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(nproc),
            *argv,
        ]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def _processes() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        one = _predict(Path(tmp) / "one.jsonl", 1)
        two = _predict(Path(tmp) / "two.jsonl", 2)
        same = (Path(tmp) / "one.jsonl").read_bytes() == (Path(tmp) / "two.jsonl").read_bytes()
    emit(
        "predict, 2 processes (torchrun, gloo) vs 1",
        N_JOB / two,
        "questions/s",
        baseline=N_JOB / one,
        ratio=one / two,
        ratio_meaning="speed-up of 2 processes x 1 thread over 1 process x 2 threads (whole command)",
        n=N_JOB,
        note=f"identical files: {same}",
    )


def _workers(torch: Any) -> None:
    from medvqa.data import load
    from medvqa.generation import generate_answers
    from medvqa.models import tiny_idefics2

    model, processor = tiny_idefics2(seed=0)
    processor.image_processor.size = dict(REAL_SIZE)
    processor.image_processor.do_image_splitting = False
    samples = list(load("vqa_rad", vqa_rad_source(), split="test"))[:N_WORKERS_JOB]
    eos = processor.tokenizer.convert_tokens_to_ids("<end_of_utterance>")

    def gpu_like_generate(**batch: Any) -> Any:
        # a GPU computes without the CPU: sleep for the step, answer the end of utterance
        time.sleep(GPU_GENERATE_S)
        ids = batch["input_ids"]
        return torch.cat([ids, torch.full((ids.shape[0], 1), eos, dtype=ids.dtype)], dim=1)

    model.generate = gpu_like_generate

    def run(workers: int) -> list[str]:
        preds = generate_answers(
            model, processor, samples, batch_size=4, max_new_tokens=20, num_workers=workers, progress=False
        )
        return [p.prediction for p in preds]

    run(0)
    t0, a0 = best_of(lambda: run(0), repeat=2)
    t2, a2 = best_of(lambda: run(2), repeat=2)
    emit(
        "generation with 2 data-loader workers vs none (real image resolution, GPU-like model)",
        N_WORKERS_JOB / t2,
        "questions/s",
        baseline=N_WORKERS_JOB / t0,
        ratio=t0 / t2,
        ratio_meaning="speed-up of num_workers=2 over num_workers=0",
        n=N_WORKERS_JOB,
        note=f"answers identical: {a0 == a2}; images resized to 980 px; generate = {GPU_GENERATE_S} s sleep per "
        f"batch of 4; {os.cpu_count()} CPU cores",
    )


def _collator() -> None:
    from medvqa.collate import TrainingCollator
    from medvqa.data import load
    from medvqa.models import tiny_idefics2

    _, processor = tiny_idefics2(seed=0)
    processor.image_processor.size = dict(REAL_SIZE)
    processor.image_processor.do_image_splitting = False
    samples = list(load("vqa_rad", vqa_rad_source(), split="train"))[:32]
    collator = TrainingCollator(processor, mode="answer")
    batches = [samples[i : i + 8] for i in range(0, len(samples), 8)]
    t, _ = best_of(lambda: [collator(b) for b in batches], repeat=2)
    emit(
        "training collator (1 core, real resolution) vs an estimated Idefics2-8B QLoRA step on one H100",
        len(samples) / t,
        "samples/s",
        baseline=GPU_SAMPLES_PER_S,
        ratio=(len(samples) / t) / GPU_SAMPLES_PER_S,
        ratio_meaning="collator samples/s over the samples/s a GPU step would consume (>1: one core keeps up)",
        n=len(samples),
        note="GPU side estimated from FLOPs (see the script), not measured",
    )


def main() -> int:
    try:
        import torch
    except ImportError as exc:
        skip(f"needs medvqa[train]: {exc}")
        return 0
    limit_torch_threads(torch)
    _processes()
    _workers(torch)
    _collator()
    return 0


if __name__ == "__main__":
    run_timed(main)
