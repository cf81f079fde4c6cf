"""``medvqa demo``: the whole paper pipeline on the tiny model and the bundled sample (or the real thing)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medvqa._commands._options import add_options

__all__ = ["register"]

_DEFAULT_OUTPUT = Path("medvqa-output/demo")

_EPILOG = """\
examples:
  medvqa demo
      tiny random model + the sample bundled with medvqa; a few minutes on a laptop CPU;
      writes ./medvqa-output/demo and prints the report's path
  medvqa demo --output /tmp/demo --overwrite
  medvqa demo --family qwen2_5_vl --output /tmp/demo-qwen
      the same pipeline on the tiny Qwen2.5-VL (any family of 'medvqa models')
  medvqa demo --model HuggingFaceM4/idefics2-8b --vqa-rad ../shared/data/vqa_rad \\
      --roco /data/roco --ood-dataset path_vqa --ood-data /data/pathvqa \\
      --nonsense-data ../shared/data/medhalt --eval-limit 400 --output runs/paper
      the paper's recipe with its presets, unchanged, on one GPU (hours)

The tiny model's numbers mean nothing about medicine: the demo shows that every step runs
and what the outputs look like. Outputs: report.md and report.json, loss_curves.png (Figure 4),
sweep/sweep.png (Figure 3), predictions/ (per-item answers and scores), the human-evaluation
sheet, and runs/ (adapters, configs, loss histories). Rerunning the same command reuses what
is finished.
"""


def register(subparsers: Any) -> None:
    """Add the ``demo`` command."""
    p = subparsers.add_parser(
        "demo",
        help="run the whole pipeline end to end (tiny model + bundled sample by default)",
        description=(
            "Stage 1, stage 2, the paper's table rows under several scoring profiles, the size sweep, "
            "the loss plot, per-item predictions and a Markdown + JSON report, in one folder."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(
        p,
        (
            "model",
            "family",
            "quantization",
            "stage1_size",
            "sizes",
            "nonsense_data",
            "nonsense_split",
            "eval_limit",
            "profile",
            "n_boot",
            "seed",
            "judge",
        ),
        deprecated=("--profiles", "--sweep-sizes", "--med-halt", "--med-halt-split"),
    )
    add_options(
        p,
        ("output", "overwrite", "no_progress"),
        helps={"output": "output folder (default: ./medvqa-output/demo)"},
    )
    p.add_argument("--vqa-rad", default=None, help="VQA-RAD folder (default: the bundled sample)")
    p.add_argument("--roco", default=None, help="stage-1 caption folder in ROCO layout (default: bundled)")
    p.add_argument(
        "--ood-dataset",
        choices=("slake", "path_vqa"),
        default="slake",
        help="out-of-distribution test set (default: slake; the paper's is path_vqa, not bundled)",
    )
    p.add_argument("--ood-data", default=None, help="its folder (default: the bundled SLAKE sample)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from medvqa._commands._loading import resolve_quantization
    from medvqa.pipeline import DemoConfig, run_demo

    sizes: tuple[int, ...] | None = None
    if args.sizes is not None:
        text = args.sizes.strip().lower()
        try:
            sizes = () if text in ("none", "") else tuple(int(s) for s in text.split(","))
        except ValueError as exc:
            raise ValueError(
                f"--sizes must be comma-separated integers or 'none', got {args.sizes!r}"
            ) from exc
    cfg = DemoConfig(
        output_dir=str(args.output or _DEFAULT_OUTPUT),
        model=args.model or "tiny",
        family=args.family,
        quantization=resolve_quantization(args.quantization),  # type: ignore[arg-type]
        vqa_rad=args.vqa_rad,
        roco=args.roco,
        ood_dataset=args.ood_dataset,
        ood_data=args.ood_data,
        med_halt=None if args.nonsense_data is None else str(args.nonsense_data),
        med_halt_split=args.nonsense_split,
        stage1_size=args.stage1_size,
        sweep_sizes=sizes,
        eval_limit=args.eval_limit,
        profiles=tuple(args.profile or ("paper", "strict")),
        n_boot=args.n_boot,
        seed=args.seed,
        overwrite=args.overwrite,
        judge=args.judge,
    )
    result = run_demo(cfg, progress=not args.no_progress)
    print(f"report: {Path(result.report_md).resolve()}")
    print(f"output folder: {Path(result.output_dir).resolve()}")
    return 0
