"""Peak memory of one QLoRA training step vs one LoRA step on the same small config.

Each variant runs in its own process: load the ``small`` offline Idefics2 (about 12 M
parameters) from a folder, full precision (LoRA) or 4-bit NF4 with float32 compute (QLoRA,
lm_head kept), attach the paper's LoRA adapter (r = alpha = 8), and run one forward +
backward + AdamW step on a batch of 4 VQA questions with images. On CPU the peak is the
highest resident set size (sampled every millisecond) minus the size just before the model
was loaded, after a warm-up step of the same variant on the tiny model has loaded every code
path; with a CUDA GPU it is ``torch.cuda.max_memory_allocated``. Also prints the
model's weight memory (``get_memory_footprint``). Small models carry fixed overheads
(embeddings, lm_head, activations) that QLoRA does not shrink, so the ratio here
understates what NF4 saves on an 8 B model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, skip


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakSampler:
    """Poll the resident set size in a thread and keep its maximum."""

    def __init__(self) -> None:
        import threading

        self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            self._stop.wait(0.001)

    def __enter__(self) -> _PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def _load(folder: str, variant: str, cuda: bool) -> tuple[object, object, int]:
    from medvqa.models import QuantizationSettings, add_lora, load_idefics2

    quant = QuantizationSettings(mode="nf4", compute_dtype="float32") if variant == "qlora" else None
    device_map = {"": 0} if cuda else "cpu"
    model, processor = load_idefics2(folder, quantization=quant, dtype="float32", device_map=device_map)
    footprint = int(model.get_memory_footprint())
    return add_lora(model, preset="paper"), processor, footprint


def _train_step(model: object, processor: object, samples: list) -> None:
    import torch

    from medvqa.collate import TrainingCollator

    m: Any = model
    batch = TrainingCollator(processor)(samples)
    batch = {k: v.to(m.device) for k, v in batch.items()}
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
    m(**batch).loss.backward()
    opt.step()


def child(folder: str, warmup_folder: str, variant: str) -> None:
    import gc
    import io

    import torch
    from PIL import Image

    from medvqa.records import ImageRef, VQASample

    cuda = torch.cuda.is_available()
    samples = []
    for i in range(4):
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (60 * i, 90, 200)).save(buf, "PNG")
        samples.append(
            VQASample(
                id=f"q{i}",
                question="Is there a fracture in the left rib?",
                answer="no",
                answer_type="closed",
                answer_type_source="annotation",
                dataset="demo",
                split="train",
                image=ImageRef(data=buf.getvalue()),
            )
        )
    torch.set_num_threads(1)
    warm_model, warm_processor, _ = _load(warmup_folder, variant, cuda)
    _train_step(warm_model, warm_processor, samples)
    del warm_model, warm_processor
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        model, processor, footprint = _load(folder, variant, cuda)
        load_peak = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        after_load = torch.cuda.memory_allocated()
        _train_step(model, processor, samples)
        step_peak = torch.cuda.max_memory_allocated() - after_load
        peak = max(load_peak, after_load + step_peak)
        where = "cuda max_memory_allocated"
    else:
        before = _rss_bytes()
        with _PeakSampler() as sampler:
            model, processor, footprint = _load(folder, variant, cuda)
        after_load = _rss_bytes()
        with _PeakSampler() as step_sampler:
            _train_step(model, processor, samples)
        step_peak = step_sampler.peak - after_load
        peak = max(sampler.peak, step_sampler.peak) - before
        where = "CPU peak RSS growth"
    print(json.dumps({"peak": peak, "step_peak": step_peak, "footprint": footprint, "where": where}))


def main() -> int:
    try:
        import bitsandbytes  # noqa: F401
        import peft  # noqa: F401

        from medvqa.models import save_tiny_idefics2
    except ImportError as exc:
        skip(f"needs medvqa[train] with bitsandbytes: {exc}")
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        save_tiny_idefics2(Path(tmp) / "small", seed=0, size="small")
        save_tiny_idefics2(Path(tmp) / "tiny", seed=0, size="tiny")
        for variant in ("lora", "qlora"):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(Path(tmp) / "small"),
                    str(Path(tmp) / "tiny"),
                    variant,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            results[variant] = json.loads(lines[-1])
    mib = 1024**2
    lora, qlora = results["lora"], results["qlora"]
    emit("LoRA load + step peak memory (small model)", lora["peak"] / mib, "MiB", n=1, note=lora["where"])
    emit(
        "QLoRA (NF4) load + step peak memory (small model)",
        qlora["peak"] / mib,
        "MiB",
        baseline=lora["peak"] / mib,
        ratio=qlora["peak"] / lora["peak"],
        ratio_meaning="QLoRA peak / LoRA peak (<1: QLoRA uses less)",
        n=1,
        note=qlora["where"],
    )
    emit("LoRA training step alone (model already loaded)", lora["step_peak"] / mib, "MiB", n=1)
    emit(
        "QLoRA training step alone (model already loaded)",
        qlora["step_peak"] / mib,
        "MiB",
        baseline=lora["step_peak"] / mib,
        ratio=qlora["step_peak"] / lora["step_peak"],
        ratio_meaning="QLoRA step peak / LoRA step peak",
        n=1,
        note=qlora["where"],
    )
    emit(
        "NF4 weight memory vs full precision (small model)",
        qlora["footprint"] / mib,
        "MiB",
        baseline=lora["footprint"] / mib,
        ratio=qlora["footprint"] / lora["footprint"],
        ratio_meaning="NF4 weights / float32 weights",
        n=1,
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
        sys.exit(0)
    sys.exit(main())
