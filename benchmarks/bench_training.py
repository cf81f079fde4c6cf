"""Training throughput through the stage runner vs a bare ``transformers.Trainer`` loop.

Same tiny model (fresh LoRA adapter each run), same collator, same samples (the bundled VQA-RAD
sample), same optimizer settings. The runner adds its callbacks (loss history, checkpoint
markers), writes its config, and saves the adapter, the trainer state and ``result.json`` at the
end; the bare loop saves nothing. ``ratio`` = runner samples/s ÷ bare samples/s (1.0 = no
overhead). Two configs: ``tiny`` (the tiny model, batch 2) and ``small`` (the ``small`` tiny
model, batch 8, gradient accumulation 2). Both loops must do the same work: the benchmark stops
with an error unless they ran the same number of optimizer steps and logged the same losses.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _common import emit, skip

try:
    import torch
    import transformers
except ImportError:  # pragma: no cover
    skip("needs the medvqa[train] extra (torch, transformers, peft)")
    sys.exit(0)

import transformers

from medvqa.collate import TrainingCollator
from medvqa.models import TinySize, add_lora, tiny_idefics2
from medvqa.training import StageConfig, load_stage_samples, run_stage
from medvqa.training._runner import _prompt_template, _SampleDataset

transformers.logging.set_verbosity_error()
STEPS = 12
REPEAT = 3


def _config(out: Path, batch: int, accum: int) -> StageConfig:
    return StageConfig(
        name="bench",
        model="tiny",
        quantization="none",
        dataset="vqa_rad",
        batch_size=batch,
        grad_accum=accum,
        max_steps=STEPS,
        warmup_steps=0,
        learning_rate=1e-3,
        precision="fp32",
        logging_steps=1,
        save_steps=10_000,
        output_dir=str(out),
    )


def _runner(cfg: StageConfig, size: TinySize, samples: list) -> tuple[float, int, list[float]]:  # type: ignore[type-arg]
    model, processor = tiny_idefics2(seed=0, size=size)
    start = time.perf_counter()
    result = run_stage(cfg, model=model, processor=processor, train_samples=samples, progress=False)
    elapsed = time.perf_counter() - start
    losses = [float(row["loss"]) for row in result.loss_history if "loss" in row]
    return elapsed, result.global_step, losses


def _bare(cfg: StageConfig, size: TinySize, samples: list) -> tuple[float, int, list[float]]:  # type: ignore[type-arg]
    model, processor = tiny_idefics2(seed=0, size=size)
    start = time.perf_counter()
    # The same adapter, seeded the same way, as the runner builds (see training._runner._prepare_adapter).
    torch.manual_seed(cfg.seed)
    torch_model = add_lora(
        model,
        preset=cfg.lora_preset,
        r=cfg.lora_r,
        alpha=cfg.lora_alpha,
        dropout=cfg.lora_dropout,
        init=cfg.lora_init,
        gradient_checkpointing=cfg.gradient_checkpointing,
    )
    args = transformers.TrainingArguments(
        output_dir=cfg.output_dir,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        max_steps=STEPS,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.schedule,
        warmup_steps=0,
        weight_decay=cfg.weight_decay,
        optim=cfg.optimizer,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        data_seed=cfg.seed,
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        disable_tqdm=True,
        use_cpu=True,
    )
    trainer = transformers.Trainer(
        model=torch_model,
        args=args,
        train_dataset=_SampleDataset(samples),
        data_collator=TrainingCollator(
            processor, mode=cfg.mask, prompt=_prompt_template(cfg), max_length=cfg.max_length
        ),
    )
    # The runner drops the log printer when progress=False; do the same, so both loops print nothing.
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.train()
    elapsed = time.perf_counter() - start
    losses = [float(row["loss"]) for row in trainer.state.log_history if "loss" in row]
    return elapsed, trainer.state.global_step, losses


def _same_work(
    label: str, bare: tuple[float, int, list[float]], runner: tuple[float, int, list[float]]
) -> None:
    """Stop unless both loops ran the same optimizer steps on the same batches (same logged losses)."""
    _, bare_steps, bare_losses = bare
    _, runner_steps, runner_losses = runner
    if bare_steps != runner_steps or len(bare_losses) != len(runner_losses):
        raise SystemExit(f"{label}: the loops did different work ({bare_steps} vs {runner_steps} steps)")
    worst = max((abs(a - b) for a, b in zip(bare_losses, runner_losses)), default=0.0)
    if worst > 1e-3 * max(1.0, max(bare_losses, default=1.0)):
        raise SystemExit(f"{label}: the loops logged different losses (largest difference {worst:.3g})")


def main() -> int:
    samples = load_stage_samples(_config(Path("."), 2, 1))
    cases: tuple[tuple[TinySize, int, int], ...] = (("tiny", 2, 1), ("small", 8, 2))
    for size, batch, accum in cases:
        n = STEPS * batch * accum
        runner_t, bare_t = float("inf"), float("inf")
        for _ in range(REPEAT):  # interleaved, best of REPEAT each
            with tempfile.TemporaryDirectory() as tmp:
                bare = _bare(_config(Path(tmp) / "bare", batch, accum), size, samples)
            with tempfile.TemporaryDirectory() as tmp:
                runner = _runner(_config(Path(tmp) / "runner", batch, accum), size, samples)
            _same_work(size, bare, runner)
            bare_t, runner_t = min(bare_t, bare[0]), min(runner_t, runner[0])
        emit(
            f"training throughput, {size} model (batch {batch} x accumulation {accum}, {STEPS} steps, "
            "Idefics2 + LoRA, CPU)",
            n / runner_t,
            "samples/s",
            baseline=n / bare_t,
            ratio=(n / runner_t) / (n / bare_t),
            ratio_meaning="runner / bare Trainer (1.0 = no overhead)",
            n=n,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
