"""``medvqa train``: run one training stage (one ``transformers.Trainer`` run) from a config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from medvqa._commands._options import add_options
from medvqa._commands._stage_options import add_stage_options, resolve_stage

__all__ = ["register"]

_EPILOG = """\
examples:
  medvqa train --preset paper_stage2 --data data/vqa_rad --print-config > stage2.yaml
  medvqa train --config stage2.yaml
      write a preset as a config file, edit it, train from it
  medvqa train --config examples/single_stage.yaml
      the stage section of a recipe of examples/ (here: the fair single-stage baseline)
  medvqa train --preset paper_stage2 --set model=tiny --set quantization=none \\
      --set max_steps=4 --output runs/smoke
      the paper's stage-2 preset on the tiny offline model and the bundled VQA-RAD sample
  medvqa train --preset paper_stage2 --model /models/idefics2-8b --data ../shared/data/vqa_rad \\
      --output runs/single_stage
  torchrun --nproc_per_node 4 -m medvqa train --config stage1.yaml
      data-parallel on 4 GPUs (only rank 0 writes files; see the distributed guide)
  medvqa train --config stage2.yaml --init-adapter runs/stage1/adapter
      continue a saved adapter (what 'medvqa two-stage' does for stage 2)

Running the same command again resumes: a finished stage is reused, an interrupted one
restarts from its last complete checkpoint. The folder gets stage_config.json, checkpoints/,
adapter/, trainer_state.json, loss_history.json/.csv and result.json (written last). The
mean train loss covers every step of the stage, resumed or not. While a run trains,
OUTPUT/medvqa.lock names it and a second run on the same folder is refused.
"""


def register(subparsers: Any) -> None:
    """Add the ``train`` command."""
    p = subparsers.add_parser(
        "train",
        help="train one stage (LoRA/QLoRA on Idefics2) from a config or preset",
        description="Train one stage: one transformers.Trainer run over one dataset, resumable.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_stage_options(p)
    add_options(
        p,
        ("model", "family", "data", "report_to", "no_resume", "on_bad_image", "output", "no_progress"),
        helps={"output": "output folder (overrides output_dir)"},
    )
    p.add_argument(
        "--init-adapter", type=Path, default=None, help="start from this saved adapter (trainable)"
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = resolve_stage(
        args,
        default_preset=None,
        model=args.model,
        family=args.family,
        data_dir=args.data,
        output_dir=None if args.output is None else str(args.output),
        report_to=args.report_to,
    )
    if args.print_config:
        print(cfg.to_yaml(), end="")
        return 0
    from medvqa.training import run_stage

    result = run_stage(
        cfg,
        init_adapter=args.init_adapter,
        resume=not args.no_resume,
        progress=not args.no_progress,
        on_bad_image=args.on_bad_image,
    )
    state = "reused (already finished)" if result.reused else f"{result.global_step} steps"
    loss = "n/a" if result.train_loss is None else f"{result.train_loss:.4f}"
    print(f"stage {result.name}: {state}, mean train loss {loss}", file=sys.stderr)
    if result.bad_images:
        print(
            f"left out {len(result.bad_images)} samples whose image cannot be decoded; they are listed "
            f"under 'bad_images' in {Path(result.output_dir) / 'result.json'}",
            file=sys.stderr,
        )
    print(result.adapter_dir)
    return 0
