"""``medvqa sweep``: the pretraining-size sweep (the paper's Figure 3)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from medvqa._commands._options import add_options
from medvqa._commands._stage_options import (
    resolve_two_stages,
    two_stage_parser,
)

__all__ = ["register"]

_EPILOG = """\
examples:
  medvqa sweep --output runs/sweep
      the paper's sizes 0, 7000, 20000, 55000 with the paper presets (Idefics2-8B, QLoRA)
  medvqa sweep --sizes 0,8,16 --model tiny --set quantization=none --set max_steps=2 --output runs/toy_sweep
      a toy sweep on the tiny offline model and the bundled sample
  medvqa sweep --stage1-config examples/size_sweep.yaml \\
      --stage2-config examples/size_sweep.yaml --eval-limit 400 --output runs/sweep
      the recipe's stage1 and stage2 sections (sizes: --sizes, default the paper's)

For each size S: stage 1 on a nested seeded subset of S pairs (the 7K subset lies inside the
20K one), stage 2 on the same adapter, then the stage-2 dataset's test split is answered and
scored. Size 0 is stage 2 alone. Writes OUTPUT/size_S/ per size and OUTPUT/sweep.json, .csv,
.md and sweep.png (+ .json). Rerunning resumes finished and interrupted sizes.
"""


def register(subparsers: Any) -> None:
    """Add the ``sweep`` command."""
    p = two_stage_parser(
        subparsers,
        "sweep",
        help="pretraining-size sweep: stage-1 sizes x (stage 2 + evaluation), one table and plot",
        description="Train and evaluate one two-stage run per stage-1 size (the paper's Figure 3).",
        epilog=_EPILOG,
    )
    add_options(
        p,
        ("sizes", "report_to", "eval_limit", "profile", "n_boot", "batch_size", "output", "no_progress"),
        required=("output",),
        helps={"output": "output folder of the sweep"},
        deprecated=("--profiles",),
    )
    p.set_defaults(func=_run)


_PAPER_SIZES = "0,7000,20000,55000"


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise ValueError(f"--sizes must be comma-separated integers, got {text!r}") from exc
    if not sizes:
        raise ValueError("--sizes is empty")
    return sizes


def _run(args: argparse.Namespace) -> int:
    s1, s2 = resolve_two_stages(args)
    from medvqa.training import run_sweep

    result = run_sweep(
        s1,
        s2,
        output_dir=args.output,
        sizes=_sizes(args.sizes or _PAPER_SIZES),
        eval_limit=args.eval_limit,
        profiles=args.profile or ["paper", "strict"],
        n_boot=args.n_boot,
        batch_size=args.batch_size or 8,
        progress=not args.no_progress,
    )
    print((Path(result.output_dir) / "sweep.md").read_text(encoding="utf-8"), file=sys.stderr)
    print(Path(result.output_dir) / "sweep.json")
    return 0
