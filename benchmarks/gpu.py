"""GPU measurement kit: training steps, generation and data preparation at real size, offline.

One command, on one CUDA GPU, within ``--budget-seconds`` (default 480)::

    python benchmarks/gpu.py

For each model family in :data:`FAMILIES` (Idefics2 today) it builds a **real-size, randomly
initialised** model from the flagship checkpoint's configuration (nothing is downloaded),
with the real image-processor settings, and measures on VQA-RAD questions and images, most
important first:

1. QLoRA (NF4 base, bf16 compute, the paper's LoRA) training step at the paper's micro-batch;
2. generation at batch size 8, then 1 and 32 (greedy, 20 new tokens), without and with
   data-loader workers, and the time to the first token;
3. the training collator's samples/s with 0, 2 and 4 workers against the training step rate;
4. the QLoRA step at the largest micro-batch that fits (doubling until out of memory);
5. the same for LoRA on a bf16 base.

Every result is appended to ``OUT/gpu.json`` and ``OUT/gpu.md`` as soon as it is measured
(both rewritten atomically), so a run stopped at any moment keeps what it measured. When the
budget is spent, the remaining measurements are recorded as skipped and the script exits 0.
``--tiny`` runs the same code on the CPU with medvqa's tiny random model in well under a
minute (a test does), so that the script works the day a GPU is available.
See ``docs/guide/benchmarks.md`` for the columns and ``benchmarks/_flops.py`` for the FLOP count.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import math
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))
for _name, _value in (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
):
    os.environ.setdefault(_name, _value)  # nothing is downloaded; data-loader workers fork safely

from _common import REPO_ROOT, SHARED_DATA  # noqa: E402
from _flops import FlopCount, count_linear_flops, idefics2_flops  # noqa: E402

GIB = 1024**3
MAX_WARMUP = 5
"""Most warm-up steps before a training-step measurement (see :func:`time_steps`)."""
EVAL_VARIANT = "NF4 + adapter, eval"
"""Variant name of the measurements made on the evaluation copy (generation, FLOP check)."""
IMAGE_LONGEST_EDGE = 872
"""Median longest edge (pixels) of the 315 images of the official VQA-RAD release; the
bundled sample's images (256 px) are enlarged to it unless ``--images`` gives the release."""

PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}
"""Dense bf16 tensor-core peak (TFLOP/s) by GPU name (SXM parts; H100 PCIe is 756)."""


# -- model families -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """One model family: how to build it at real size and count its FLOPs.

    Attributes:
        name: Short name (a table column).
        checkpoint: The flagship checkpoint whose configuration is reproduced.
        paper_micro_batch: Micro-batch of the paper's recipe for this family.
        build: ``build(tiny, device, dtype, splitting, seed) -> (model, processor)``: a
            randomly initialised model (in ``eval`` mode) and its processor.
        flops: ``flops(config, batch, lora_r) -> FlopCount`` for a collated batch.
        notes: What differs from the real checkpoint.
    """

    name: str
    checkpoint: str
    paper_micro_batch: int
    build: Callable[..., tuple[Any, Any]]
    flops: Callable[[Any, dict[str, Any], int], FlopCount]
    notes: str = ""


def idefics2_8b_config(tokenizer: Any) -> Any:
    """``Idefics2Config`` with the sizes of HuggingFaceM4/idefics2-8b (Mistral-7B text model,
    SigLIP-so400m vision encoder at 980 px, perceiver resampler with 64 latents).

    Token ids come from ``tokenizer`` (medvqa's offline tokenizer); the embedding and
    ``lm_head`` keep the checkpoint's 32,003 rows.
    """
    from transformers import Idefics2Config

    ids = {
        t: tokenizer.convert_tokens_to_ids(t)
        for t in ("<pad>", "<s>", "</s>", "<image>", "<end_of_utterance>")
    }
    text = {
        "model_type": "mistral",
        "vocab_size": 32003,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-5,
        "sliding_window": 4096,
        "pad_token_id": ids["<pad>"],
        "bos_token_id": ids["<s>"],
        "eos_token_id": ids["</s>"],
    }
    vision = {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "image_size": 980,
        "patch_size": 14,
    }
    perceiver = {
        "hidden_size": 4096,
        "resampler_n_latents": 64,
        "resampler_depth": 3,
        "resampler_n_heads": 16,
        "resampler_head_dim": 96,
        "num_key_value_heads": 4,
    }
    config = Idefics2Config(
        text_config=text,
        vision_config=vision,
        perceiver_config=perceiver,
        image_token_id=ids["<image>"],
        tie_word_embeddings=False,
        use_cache=True,
    )
    config.pad_token_id, config.bos_token_id = ids["<pad>"], ids["<s>"]
    config.eos_token_id = [ids["</s>"], ids["<end_of_utterance>"]]
    return config


@contextlib.contextmanager
def _default_dtype(dtype: Any) -> Iterator[None]:
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_idefics2(tiny: bool, device: str, dtype: Any, splitting: bool, seed: int) -> tuple[Any, Any]:
    """Idefics2-8B at real size built directly on ``device`` in ``dtype`` (no fp32 CPU copy),
    or medvqa's tiny model with ``tiny``."""
    import torch
    from transformers import Idefics2ForConditionalGeneration, Idefics2Processor
    from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil

    from medvqa.chat import IDEFICS2_CHAT_TEMPLATE
    from medvqa.models import tiny_idefics2
    from medvqa.models._tiny import _build_tokenizer

    if tiny:
        small: Any = tiny_idefics2(seed=seed)
        return small[0].to(device=device, dtype=dtype), small[1]
    tokenizer = _build_tokenizer()
    image_processor = Idefics2ImageProcessorPil(
        size={"shortest_edge": 378, "longest_edge": 980}, do_image_splitting=splitting
    )
    processor: Any = Idefics2Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=64,
        chat_template=IDEFICS2_CHAT_TEMPLATE,
    )
    config = idefics2_8b_config(tokenizer)
    torch.manual_seed(seed)
    with _default_dtype(dtype), torch.device(device):
        model: Any = Idefics2ForConditionalGeneration(config)
    _set_generation_ids(model)
    model.eval()
    return model, processor


def _set_generation_ids(model: Any) -> None:
    cfg = model.config
    model.generation_config.pad_token_id = cfg.pad_token_id
    model.generation_config.bos_token_id = cfg.bos_token_id
    model.generation_config.eos_token_id = list(cfg.eos_token_id)


def idefics2_batch_flops(config: Any, batch: dict[str, Any], lora_r: int) -> FlopCount:
    """:func:`_flops.idefics2_flops` for a collated batch (padded text and patch grid)."""
    b, s = batch["input_ids"].shape
    n_images, patches = 0, 0
    if "pixel_values" in batch:
        pv = batch["pixel_values"]
        n_images = int((pv.flatten(2).abs().sum(-1) > 0).sum())
        p = config.vision_config.patch_size
        patches = (pv.shape[-2] // p) * (pv.shape[-1] // p)
    return idefics2_flops(
        config, batch=b, seq_len=s, n_images=n_images, patches_per_image=patches, lora_r=lora_r
    )


FAMILIES: list[Family] = [
    Family(
        name="idefics2",
        checkpoint="HuggingFaceM4/idefics2-8b",
        paper_micro_batch=2,
        build=build_idefics2,
        flops=idefics2_batch_flops,
        notes=(
            "text tokens from medvqa's offline byte-level tokenizer (the checkpoint's Llama "
            "tokenizer is not downloaded): same chat template and 64 image tokens per image, "
            "somewhat more text tokens per question"
        ),
    ),
]
"""The families measured, in order; a new family is one more entry."""


# -- results ------------------------------------------------------------------------------------

COLUMNS = [
    ("family", "family"),
    ("measurement", "measurement"),
    ("variant", "variant"),
    ("batch", "batch"),
    ("workers", "workers"),
    ("status", "status"),
    ("step_s", "step s"),
    ("samples_per_s", "samples/s"),
    ("tokens_per_s", "tokens/s"),
    ("questions_per_s", "questions/s"),
    ("ttft_s", "TTFT s"),
    ("ratio", "ratio"),
    ("peak_gib", "peak GiB"),
    ("tflop_per_step", "TFLOP/step"),
    ("mfu", "MFU"),
    ("mfu_3x", "MFU (3x fwd)"),
    ("note", "note"),
]


class Recorder:
    """Holds the results and rewrites ``gpu.json`` and ``gpu.md`` atomically after each one."""

    def __init__(self, out: Path, meta: dict[str, Any]) -> None:
        self.out, self.meta, self.start = out, meta, time.monotonic()
        self.rows: list[dict[str, Any]] = []
        self.out.mkdir(parents=True, exist_ok=True)
        self.flush()

    def add(self, **row: Any) -> dict[str, Any]:
        row.setdefault("status", "ok")
        row["at_s"] = round(time.monotonic() - self.start, 1)
        self.rows.append(row)
        self.flush()
        shown = {k: v for k, v in row.items() if v is not None}
        print("RESULT " + json.dumps(shown, default=str), flush=True)
        return row

    def flush(self) -> None:
        from medvqa._io import atomic_write_json, atomic_write_text

        atomic_write_json(self.out / "gpu.json", {"meta": self.meta, "results": self.rows})
        atomic_write_text(self.out / "gpu.md", self.markdown())

    def markdown(self) -> str:
        m = self.meta
        lines = [
            "# GPU measurements",
            "",
            f"Device: {m.get('device')}; torch {m.get('torch')}, transformers {m.get('transformers')}, "
            f"peft {m.get('peft')}, bitsandbytes {m.get('bitsandbytes')}; peak {_fmt(m.get('peak_tflops')) or 'unknown'} TFLOP/s; "
            f"images: {m.get('images')}; started {m.get('started')}; status: {m.get('status')}.",
            "",
            "| " + " | ".join(title for _, title in COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS),
        ]
        for row in self.rows:
            lines.append("| " + " | ".join(_fmt(row.get(key)) for key, _ in COLUMNS) + " |")
        return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value).replace("|", "/")


class Budget:
    """Wall-clock budget of the run: ``left()`` seconds remain; ``spent(reserve)`` says stop."""

    def __init__(self, seconds: float) -> None:
        self.start, self.seconds = time.monotonic(), seconds

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def spent(self, reserve: float) -> bool:
        return self.left() < reserve


# -- inputs -------------------------------------------------------------------------------------


def load_samples(images: Path | None, tiny: bool) -> tuple[list[Any], list[Any], str]:
    """VQA-RAD train and test questions with their images, and a description of the images.

    ``images``: a VQA-RAD release folder; default: the shared release when present, else the
    sample bundled with medvqa with its images enlarged to :data:`IMAGE_LONGEST_EDGE`.
    """
    from dataclasses import replace

    from PIL import Image

    from medvqa.data import load, sample_root
    from medvqa.records import ImageRef

    source = images
    if source is None:
        shared = SHARED_DATA / "vqa_rad"
        source = shared if (shared / "VQA_RAD Dataset Public.json").is_file() else None
    if source is not None:
        train, test = (list(load("vqa_rad", source, split=s)) for s in ("train", "test"))
        return train, test, f"VQA-RAD release at {source} (original sizes)"
    bundled = sample_root() / "vqa_rad"
    train, test = (list(load("vqa_rad", bundled, split=s)) for s in ("train", "test"))
    if tiny:
        return train, test, "bundled VQA-RAD sample (256 px)"

    def enlarge(sample: Any) -> Any:
        img = sample.image.open().convert("RGB")
        scale = IMAGE_LONGEST_EDGE / max(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=95)
        return replace(sample, image=ImageRef(data=buf.getvalue(), name=sample.image.name))

    note = (
        f"bundled VQA-RAD sample enlarged to a longest edge of {IMAGE_LONGEST_EDGE} px (the release's median)"
    )
    return [enlarge(s) for s in train], [enlarge(s) for s in test], note


def cycle(samples: Sequence[Any], n: int, offset: int = 0) -> list[Any]:
    """``n`` samples taken round-robin from ``samples`` from ``offset``, with unique ids."""
    from dataclasses import replace

    return [replace(samples[(offset + i) % len(samples)], id=f"bench:{offset + i}") for i in range(n)]


def to_device(batch: dict[str, Any], device: str) -> dict[str, Any]:
    """Move a training batch to ``device`` as transformers' Trainer does (pixels stay float32)."""
    return {key: value.to(device) for key, value in batch.items()}


def to_model(batch: dict[str, Any], model: Any) -> dict[str, Any]:
    """Move a generation batch to the model as :func:`medvqa.generation.generate_answers` does."""
    from medvqa.generation import _to_device

    return _to_device(batch, model)


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Run:
    """Settings and state shared by the measurements of one invocation."""

    args: argparse.Namespace
    rec: Recorder
    budget: Budget
    device: str
    dtype: Any
    peak_flops: float | None
    train: list[Any]
    test: list[Any]
    step_rate: dict[str, float] = field(default_factory=dict)
    idle_bytes: int = 0

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()

    def allocated(self) -> int:
        if not self.cuda:
            return 0
        import torch

        return int(torch.cuda.memory_allocated())

    def peak_gib(self) -> float | None:
        """Peak allocated memory since the last reset, without the idle evaluation copy."""
        if not self.cuda:
            return None
        import torch

        return (torch.cuda.max_memory_allocated() - self.idle_bytes) / GIB

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.empty_cache()

    def skip(self, family: Family, measurement: str, variant: str = "", **extra: Any) -> None:
        self.rec.add(
            family=family.name,
            measurement=measurement,
            variant=variant,
            status="skipped (budget)",
            note=f"{self.budget.left():.0f} s of budget left",
            **extra,
        )

    def over(self) -> bool:
        return self.budget.spent(self.args.reserve)


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError)


def _simulated_oom(run: Run, batch_size: int) -> None:
    """``--oom-above N``: a training batch above N raises out-of-memory (tests the path without a GPU)."""
    import torch

    if run.args.oom_above is not None and batch_size > run.args.oom_above:
        raise torch.cuda.OutOfMemoryError(f"simulated: batch {batch_size} > --oom-above {run.args.oom_above}")


def time_steps(
    run: Run, model: Any, optimizer: Any, batches: list[dict[str, Any]]
) -> tuple[float, list[float], int]:
    """Mean seconds per training step (forward, backward, optimizer step), each step's seconds and
    the number of warm-up steps.

    Warm-up steps repeat the first batch until one takes at most 1.25 times the one before
    (at least one, at most :data:`MAX_WARMUP` on a GPU; one on the CPU): the first steps of a
    fresh model pay one-time costs (optimizer state, kernel selection, allocator growth) that are
    not the step time. Each timed step is synchronised and timed on its own.
    """
    import torch

    def autocast() -> Any:  # as transformers' Trainer with bf16=True
        return torch.autocast("cuda", dtype=torch.bfloat16) if run.cuda else contextlib.nullcontext()

    def step(batch: dict[str, Any]) -> float:
        start = time.perf_counter()
        with autocast():
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        run.sync()
        return time.perf_counter() - start

    warmups = [step(batches[0])]
    while run.cuda and len(warmups) < MAX_WARMUP:
        warmups.append(step(batches[0]))
        if warmups[-1] <= 1.25 * warmups[-2]:
            break
    times = [step(batch) for batch in batches[1:]]
    return sum(times) / len(times), times, len(warmups)


def measure_step(
    run: Run,
    family: Family,
    model: Any,
    processor: Any,
    optimizer: Any,
    variant: str,
    batch_size: int,
    what: str,
) -> dict[str, Any]:
    """One training-step measurement at ``batch_size``; an out-of-memory error becomes a row."""
    from medvqa.collate import TrainingCollator

    collator = TrainingCollator(processor, mode="paper")
    n_steps = run.args.steps + 1
    cpu_batches = [collator(cycle(run.train, batch_size, i * batch_size)) for i in range(n_steps)]
    tokens = sum(int(b["attention_mask"].sum()) for b in cpu_batches[1:]) / (n_steps - 1)
    config = model.config if not hasattr(model, "get_base_model") else model.get_base_model().config
    counts = [family.flops(config, b, run.args.lora_r) for b in cpu_batches[1:]]
    train_flops = sum(c.training for c in counts) / len(counts)
    train_flops_3x = sum(c.training_3x for c in counts) / len(counts)
    row: dict[str, Any] = {
        "family": family.name,
        "measurement": what,
        "variant": variant,
        "batch": batch_size,
    }
    run.reset_peak()
    failed = None
    try:
        _simulated_oom(run, batch_size)
        batches = [to_device(b, run.device) for b in cpu_batches]
        seconds, step_times, warmups = time_steps(run, model, optimizer, batches)
    except Exception as exc:
        if not _is_oom(exc):
            raise
        failed = " ".join(str(exc).split())[:160]
    if failed is not None:
        batches = []
        optimizer.zero_grad(set_to_none=True)
        run.free()
        return run.rec.add(**row, status="oom", peak_gib=run.peak_gib(), note=failed)
    del batches
    tflop = train_flops / 1e12
    row.update(
        step_s=seconds,
        samples_per_s=batch_size / seconds,
        tokens_per_s=tokens / seconds,
        peak_gib=run.peak_gib(),
        tflop_per_step=tflop,
        mfu=None if run.peak_flops is None else train_flops / seconds / run.peak_flops,
        mfu_3x=None if run.peak_flops is None else train_flops_3x / seconds / run.peak_flops,
        step_median_s=statistics.median(step_times),
        step_times_s=[round(t, 4) for t in step_times],
        note=f"{tokens / batch_size:.0f} tokens/sample; {run.args.steps} timed steps "
        f"({min(step_times):.3g}-{max(step_times):.3g} s) after {warmups} warm-up",
    )
    return run.rec.add(**row)


def measure_training(
    run: Run,
    family: Family,
    model: Any,
    processor: Any,
    variant: str,
    after_first: Callable[[], None] | None = None,
) -> None:
    """Step at the paper's micro-batch, ``after_first()``, then double the batch until it no longer fits."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    first = family.paper_micro_batch
    if run.over():
        run.skip(family, "train step, paper micro-batch", variant, batch=first)
    else:
        row = measure_step(
            run, family, model, processor, optimizer, variant, first, "train step, paper micro-batch"
        )
        if row["status"] == "ok":
            run.step_rate[variant] = row["samples_per_s"]
    if after_first is not None:
        after_first()
    largest = None
    size = first * 2
    while size <= run.args.max_batch:
        if run.over():
            run.skip(family, "train step, largest batch that fits", variant, batch=size)
            break
        row = measure_step(
            run, family, model, processor, optimizer, variant, size, "train step, batch search"
        )
        if row["status"] != "ok":
            break
        largest = row
        size *= 2
    if largest is not None:
        note = "cap reached (--max-batch)" if size > run.args.max_batch else f"batch {size} did not fit"
        run.rec.add(
            **{
                **largest,
                "measurement": "train step, largest batch that fits",
                "note": f"{note}; {largest['note']}",
            }
        )
    del optimizer
    run.free()


def flop_check(run: Run, family: Family, model: Any, processor: Any, variant: str) -> None:
    """Compare the FLOP formula's matrix products with those counted by hooks on a real forward."""
    from medvqa.collate import TrainingCollator

    batch = TrainingCollator(processor, mode="paper")(cycle(run.train, family.paper_micro_batch))
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    formula = family.flops(config, batch, run.args.lora_r).linear
    counted = count_linear_flops(model, to_device(batch, run.device))
    ratio = formula / counted if counted else float("nan")
    run.rec.add(
        family=family.name,
        measurement="FLOP formula check",
        variant=variant,
        batch=family.paper_micro_batch,
        status="ok" if abs(ratio - 1) < 1e-6 else "MISMATCH",
        ratio=ratio,
        note=f"matrix-product FLOPs of one forward: formula {formula:.6g}, counted by hooks {counted:.6g}",
    )


def measure_generation(run: Run, family: Family, model: Any, processor: Any, variant: str) -> None:
    """Questions/s at batch 8, 1 and 32, without and with workers, and the time to first token."""
    plan = [(8, 0), (1, 0), (32, 0), (8, run.args.workers), (1, run.args.workers), (32, run.args.workers)]
    ttft_done: set[int] = set()
    for batch_size, workers in plan:
        if run.over():
            run.skip(family, "generation", variant, batch=batch_size, workers=workers)
            continue
        row: dict[str, Any] = {
            "family": family.name,
            "measurement": f"generation, greedy, {run.args.new_tokens} new tokens",
            "variant": variant,
            "batch": batch_size,
            "workers": workers,
        }
        n = batch_size * (run.args.gen_batches if batch_size > 1 else run.args.gen_single)
        run.reset_peak()
        try:
            ttft = None
            if batch_size not in ttft_done:
                ttft = time_to_first_token(run, model, processor, batch_size)
                ttft_done.add(batch_size)
            seconds = generate_timed(run, model, processor, cycle(run.test, n), batch_size, workers)
        except Exception as exc:
            if not _is_oom(exc):
                raise
            run.free()
            run.rec.add(**row, status="oom", note=" ".join(str(exc).split())[:160])
            continue
        run.rec.add(
            **row,
            questions_per_s=n / seconds,
            tokens_per_s=n * run.args.new_tokens / seconds,
            ttft_s=ttft,
            peak_gib=run.peak_gib(),
            note=f"{n} questions",
        )


def _generation_kwargs(processor: Any, new_tokens: int) -> dict[str, Any]:
    from medvqa.generation import stop_token_ids

    tok = processor.tokenizer
    return {
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,  # random weights: every question generates the full budget
        "do_sample": False,
        "num_beams": 1,
        "eos_token_id": stop_token_ids(processor),
        "pad_token_id": tok.pad_token_id,
    }


def generate_timed(
    run: Run, model: Any, processor: Any, samples: list[Any], batch_size: int, workers: int
) -> float:
    """Seconds to answer ``samples`` (medvqa's generation collator, left padding) after a warm-up."""
    import torch
    from torch.utils.data import DataLoader

    from medvqa.collate import GenerationCollator

    kwargs = _generation_kwargs(processor, run.args.new_tokens)
    collator = GenerationCollator(processor)
    with torch.inference_mode():
        model.generate(**to_model(collator(samples[:batch_size]), model), **kwargs)
    loader: Any = DataLoader(
        cast(Any, samples), batch_size=batch_size, collate_fn=collator, num_workers=workers
    )
    run.sync()
    start = time.perf_counter()
    for batch in loader:
        with torch.inference_mode():
            model.generate(**to_model(batch, model), **kwargs)
    run.sync()
    return time.perf_counter() - start


def time_to_first_token(run: Run, model: Any, processor: Any, batch_size: int) -> float:
    """Mean seconds of ``generate(max_new_tokens=1)`` on a collated batch (prefill + one token)."""
    import torch

    from medvqa.collate import GenerationCollator

    kwargs = {**_generation_kwargs(processor, 1)}
    batch = to_model(GenerationCollator(processor)(cycle(run.test, batch_size)), model)
    times = []
    with torch.inference_mode():
        for _ in range(2 if run.args.tiny else 4):  # the first call is a warm-up
            run.sync()
            start = time.perf_counter()
            model.generate(**batch, **kwargs)
            run.sync()
            times.append(time.perf_counter() - start)
    return sum(times[1:]) / len(times[1:])


def measure_collator(run: Run, family: Family, processor: Any, variant: str) -> None:
    """Training-collator samples/s with 0, 2 and 4 workers against the measured step rate."""
    from torch.utils.data import DataLoader

    from medvqa.collate import TrainingCollator

    batch_size = family.paper_micro_batch
    rate = run.step_rate.get(variant)
    for workers in (0, 2, 4):
        if run.over():
            run.skip(family, "training collator", variant, batch=batch_size, workers=workers)
            continue
        samples = cycle(run.train, run.args.collate_samples)
        loader: Any = DataLoader(
            cast(Any, samples),
            batch_size=batch_size,
            collate_fn=TrainingCollator(processor, mode="paper"),
            num_workers=workers,
        )
        it = iter(loader)
        next(it)  # workers started, first batch out: time the steady state
        start = time.perf_counter()
        n = sum(int(b["input_ids"].shape[0]) for b in it)
        seconds = time.perf_counter() - start
        per_s = n / seconds if seconds > 0 else float("inf")
        run.rec.add(
            family=family.name,
            measurement="training collator",
            variant=variant,
            batch=batch_size,
            workers=workers,
            samples_per_s=per_s,
            ratio=None if rate is None else per_s / rate,
            note=(
                f"{n} samples; ratio = collator samples/s / {variant} training samples/s "
                f"({'not measured' if rate is None else f'{rate:.3g}'}); > 1: the GPU does not wait for data"
            ),
        )


def quantize_nf4(run: Run, model: Any) -> Any:
    """NF4 copy of ``model`` through transformers' bitsandbytes loader, as ``medvqa.models.load_idefics2`` does.

    The settings are medvqa's :class:`~medvqa.models.QuantizationSettings` (the paper's: NF4,
    no double quantization, ``lm_head`` kept) with bf16 compute (float32 on the CPU).
    """
    import torch

    from medvqa.models import QuantizationSettings, bnb_config, quantized_module_names

    compute: Any = "bfloat16" if run.cuda else "float32"
    settings = QuantizationSettings(mode="nf4", compute_dtype=compute)
    device_map: Any = {"": 0} if run.cuda else "cpu"
    quantized = type(model).from_pretrained(
        None,
        config=model.config,
        state_dict=model.state_dict(),
        quantization_config=bnb_config(settings),
        dtype=getattr(torch, compute),
        device_map=device_map,
    )
    names = quantized_module_names(quantized)
    if not names or any(n.startswith("lm_head") for n in names):
        raise RuntimeError(f"unexpected quantization: {len(names)} 4-bit layers, lm_head among them?")
    _set_generation_ids(quantized)
    quantized.eval()
    return quantized


def run_family(run: Run, family: Family) -> None:
    """Every measurement of one family, most important first.

    Two NF4 copies are made from one random bf16 model: one prepared for training as medvqa's
    runner prepares it (peft's k-bit preparation, trainable adapter) and one loaded as
    ``medvqa predict-and-score`` loads a fine-tuned model (adapter in ``eval`` mode, no preparation), for
    generation. The evaluation copy is freed before the batch search, and its bytes are
    subtracted from the peak memory of the measurements made while it exists.
    """
    from medvqa.models import add_lora

    if run.over():
        for what in ("QLoRA nf4", "LoRA"):
            run.skip(family, "all", what)
        return
    start = time.perf_counter()
    base, processor = family.build(
        run.args.tiny, run.device, run.dtype, run.args.image_splitting, run.args.seed
    )
    n_params = sum(p.numel() for p in base.parameters())
    lora = {"preset": "paper", "r": run.args.lora_r, "alpha": run.args.lora_r, "dropout": 0.1}
    train_model = add_lora(quantize_nf4(run, base), **lora)
    before = run.allocated()
    holder = {"eval": add_lora(quantize_nf4(run, base), prepare_kbit=False, **lora).eval()}
    run.idle_bytes = run.allocated() - before
    del base
    run.free()
    run.rec.meta.setdefault("families", {})[family.name] = {
        "checkpoint": family.checkpoint,
        "parameters": n_params,
        "build_and_quantize_s": round(time.perf_counter() - start, 1),
        "evaluation_copy_gib": run.idle_bytes / GIB,
        "notes": family.notes,
    }
    run.rec.flush()

    variant = "QLoRA nf4"
    train_model.train()

    def after_first() -> None:
        evaluation = holder.pop("eval")
        _after_first_qlora_step(run, family, evaluation, processor, variant)
        del evaluation
        run.idle_bytes = 0
        run.free()

    measure_training(run, family, train_model, processor, variant, after_first)
    holder.clear()
    del train_model
    run.idle_bytes = 0
    run.free()
    run_lora_bf16(run, family)


def _after_first_qlora_step(run: Run, family: Family, model: Any, processor: Any, variant: str) -> None:
    """What follows the first QLoRA step: generation, the FLOP check, the collator."""
    measure_generation(run, family, model, processor, EVAL_VARIANT)
    if not run.over():
        flop_check(run, family, model, processor, EVAL_VARIANT)
    measure_collator(run, family, processor, variant)


def run_lora_bf16(run: Run, family: Family) -> None:
    """LoRA on a full-precision base (bf16 on the GPU): steps and the largest batch."""
    from medvqa.models import add_lora

    variant = "LoRA bf16" if run.cuda else "LoRA fp32"
    if run.over():
        run.skip(family, "train step, paper micro-batch", variant, batch=family.paper_micro_batch)
        return
    base, processor = family.build(
        run.args.tiny, run.device, run.dtype, run.args.image_splitting, run.args.seed
    )
    model = add_lora(base, preset="paper", r=run.args.lora_r, alpha=run.args.lora_r, dropout=0.1)
    model.train()
    measure_training(run, family, model, processor, variant)
    del model, base
    run.free()


# -- command line -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--tiny", action="store_true", help="tiny random model on the CPU (checks the script, in seconds)"
    )
    p.add_argument(
        "--budget-seconds", type=float, default=None, help="stop cleanly after this (default: 480; tiny: 120)"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default: medvqa-output/benchmarks/gpu-<time>)"
    )
    p.add_argument(
        "--families", default=",".join(f.name for f in FAMILIES), help="families to measure, comma-separated"
    )
    p.add_argument(
        "--images",
        type=Path,
        default=None,
        help="a VQA-RAD release folder (default: shared data or the sample)",
    )
    p.add_argument(
        "--image-splitting", action="store_true", help="split each image in 4 crops + itself (paper: off)"
    )
    p.add_argument(
        "--steps", type=int, default=None, help="timed training steps per measurement (default 4; tiny 2)"
    )
    p.add_argument(
        "--max-batch", type=int, default=None, help="largest micro-batch tried (default 64; tiny 8)"
    )
    p.add_argument(
        "--workers", type=int, default=4, help="data-loader workers of the 'with workers' generation runs"
    )
    p.add_argument(
        "--new-tokens", type=int, default=None, help="new tokens per answer (default 20, the paper's; tiny 3)"
    )
    p.add_argument(
        "--gen-batches", type=int, default=None, help="batches per batched generation run (default 8; tiny 2)"
    )
    p.add_argument(
        "--gen-single", type=int, default=None, help="questions of the batch-1 runs (default 16; tiny 3)"
    )
    p.add_argument(
        "--collate-samples", type=int, default=None, help="samples per collator run (default 64; tiny 12)"
    )
    p.add_argument("--lora-r", type=int, default=8, help="LoRA rank = alpha (paper: 8)")
    p.add_argument(
        "--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak (default: from its name)"
    )
    p.add_argument(
        "--reserve",
        type=float,
        default=None,
        help="seconds a measurement needs to start (default 20; tiny 0)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument("--oom-above", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be at least 1")
    defaults = {
        "budget_seconds": (480, 120),
        "steps": (4, 1),
        "max_batch": (64, 4),
        "gen_batches": (8, 1),
        "gen_single": (16, 2),
        "collate_samples": (64, 6),
        "reserve": (20.0, 0.0),
        "new_tokens": (20, 3),
    }
    for name, (gpu, tiny) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else gpu)
    if args.tiny:
        args.workers = min(args.workers, 2)
    return args


def _device_meta(args: argparse.Namespace) -> tuple[str, Any, float | None, str]:
    import torch

    if args.tiny:
        return (
            "cpu",
            torch.float32,
            None,
            f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        )
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU found; run with --tiny to check the script on the CPU")
    name = torch.cuda.get_device_name(0)
    peak = args.peak_tflops
    if peak is None:
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
        if peak is not None and "H100" in name and "PCIe" in name:
            peak = 756.0
    return "cuda", torch.bfloat16, None if peak is None else peak * 1e12, name


def main(argv: Sequence[str] | None = None) -> int:
    import torch
    import transformers

    args = parse_args(argv)
    families = [f for f in FAMILIES if f.name in args.families.split(",")]
    if not families:
        raise SystemExit(f"no such family: {args.families}; known: {', '.join(f.name for f in FAMILIES)}")
    budget = Budget(args.budget_seconds)
    out = args.out or REPO_ROOT / "medvqa-output" / "benchmarks" / time.strftime("gpu-%Y%m%d-%H%M%S")
    if (out / "gpu.json").exists():
        raise SystemExit(f"{out / 'gpu.json'} exists; choose another --out (two runs never share a file)")
    device, dtype, peak, device_name = _device_meta(args)
    if args.tiny:
        torch.set_num_threads(1)
    train, test, images = load_samples(args.images, args.tiny)
    meta: dict[str, Any] = {
        "device": device_name,
        "peak_tflops": None if peak is None else peak / 1e12,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": _version("peft"),
        "bitsandbytes": _version("bitsandbytes"),
        "python": platform.python_version(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "budget_seconds": args.budget_seconds,
        "tiny": args.tiny,
        "images": images,
        "image_splitting": args.image_splitting,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "flops": "see benchmarks/_flops.py: training = vision + 2 x (connector + text) matrix products "
        "+ 3 x attention + 3 x LoRA; MFU = training FLOPs / step time / peak",
        "status": "running",
    }
    rec = Recorder(out, meta)
    run = Run(args, rec, budget, device, dtype, peak, train, test)
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        for family in families:
            run_family(run, family)
        meta["status"] = "finished"
    except KeyboardInterrupt:
        meta["status"] = "interrupted"
    finally:
        meta["elapsed_s"] = round(time.monotonic() - budget.start, 1)
        if meta["status"] == "running":
            meta["status"] = "failed"
        rec.flush()
        signal.signal(signal.SIGTERM, previous_handler)
        print(f"wrote {out / 'gpu.json'} and {out / 'gpu.md'} ({meta['status']}, {meta['elapsed_s']} s)")
    return 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
