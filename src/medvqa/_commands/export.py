"""``medvqa export``: write a trained adapter as a Hub-ready folder with a model card."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

_EPILOG = """\
examples:
  medvqa export runs/two_stage hub/medvqa-idefics2-vqarad
      the final adapter of a two-stage run, its processor, configs and a model card whose
      metrics come from the run's *.scores.json files (medvqa two-stage --evaluate)
  medvqa export runs/two_stage hub/out --scores runs/eval/two_stage.scores.json --push me/idefics2-vqarad
      metrics of a separate 'medvqa evaluate' run, then an upload to the Hugging Face Hub
      (needs network access and a token: huggingface-cli login or HF_TOKEN)
"""


def register(subparsers: Any) -> None:
    """Add the ``export`` command."""
    p = subparsers.add_parser(
        "export",
        help="write a trained adapter as a Hub-ready folder with a model card (optionally upload it)",
        description=(
            "Write the adapter of a training run (safetensors weights, adapter config, the base model's "
            "processor, the training config) and a model card with YAML metadata: base model, datasets, "
            "metrics with their profile, n and 95%% intervals, and the data's licence notes."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished stage or two-stage folder")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="the folder to write (absent or empty)")
    p.add_argument(
        "--scores",
        type=Path,
        action="append",
        default=None,
        metavar="FILE",
        help="a *.scores.json file of an evaluation of this adapter (repeatable; default: those in RUN_DIR)",
    )
    from medvqa._commands._options import add_options

    add_options(p, ("overwrite",))
    p.add_argument(
        "--push", default=None, metavar="REPO_ID", help="then upload OUT_DIR to this Hub repository"
    )
    p.add_argument(
        "--public", action="store_true", help="create the Hub repository public (default: private)"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from medvqa.export import export_adapter, push_to_hub

    result = export_adapter(args.run_dir, args.out_dir, score_files=args.scores, overwrite=args.overwrite)
    print(
        f"exported {len(result.files)} files and {len(result.metrics)} metrics to {result.output_dir}",
        file=sys.stderr,
    )
    if args.push is not None:
        url = push_to_hub(result.output_dir, args.push, private=not args.public)
        print(f"uploaded to {url}", file=sys.stderr)
    print(result.output_dir)
    return 0
