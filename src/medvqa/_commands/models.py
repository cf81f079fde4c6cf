"""``medvqa models``: the supported model families, their LoRA presets and defaults."""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["known_family", "register"]

_EPILOG = """\
examples:
  medvqa models
      one line per family: model class, example checkpoints, image tokens, end-of-turn token
  medvqa models --family qwen2_5_vl
      everything about one family, LoRA preset regexes included
  medvqa models --json
      every family as JSON
"""


def known_family(model: str, family: str | None) -> str | None:
    """The family of ``--model``/``--family`` as far as it is known before loading (``None``: not known).

    ``--family`` wins; ``tiny`` is Idefics2; otherwise the checkpoint's ``config.json`` tells
    (a local folder, or a hub id in the Hugging Face cache).
    """
    from medvqa._errors import MedVQAError
    from medvqa.models import detect_family

    if family is not None:
        return family
    if model == "tiny":
        return "idefics2"
    try:
        return detect_family(model).name
    except MedVQAError:
        return None


def register(subparsers: Any) -> None:
    """Add the ``models`` command."""
    p = subparsers.add_parser(
        "models",
        help="list the supported model families, their LoRA presets and defaults",
        description=(
            "The vision-language families medvqa trains and evaluates: classes, example checkpoints, "
            "image tokens per image, end-of-turn tokens, LoRA presets, quantization skip list, default "
            "image settings."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from medvqa._commands._options import add_options

    add_options(p, ("family",))
    p.add_argument("--json", action="store_true", help="print the families as JSON instead of text")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from medvqa.models import FAMILIES

    families = [FAMILIES[args.family]] if args.family else list(FAMILIES.values())
    if args.json:
        print(json.dumps([f.summary() for f in families], indent=2))
        return 0
    for fam in families:
        if args.family:
            for key, value in fam.summary().items():
                print(f"{key}: {json.dumps(value)}")
            continue
        print(
            f"{fam.name:<11} {fam.model_class:<36} image tokens: {fam.image_tokens_per_image}; "
            f"end of turn {fam.end_of_turn}; text-only questions: {'yes' if fam.text_only else 'no'}; "
            f"e.g. {fam.examples[0]}"
        )
    if not args.family:
        print(
            "LoRA presets of every family: paper (language model + connector), llm_only, connector_only, all_linear"
        )
    return 0
