# ruff: noqa: F403, F405
"""Ablation transforms (kept for compatibility): every name now lives in :mod:`medvqa.ablations`.

``from medvqa.transforms import SwapImages`` keeps working and gives the same objects as
``from medvqa.ablations import SwapImages``; new code imports from :mod:`medvqa.ablations`.
"""

from __future__ import annotations

# The same objects as medvqa.ablations; __all__ below keeps this module's former list.
from medvqa.ablations import *
from medvqa.ablations import PAPER_INSTRUCTION as PAPER_INSTRUCTION  # not in __all__, kept importable

__all__ = [
    "DEFAULT_FILLERS",
    "DEFAULT_NONSENSE_TEMPLATES",
    "TRANSFORMS_KEY",
    "TRANSFORM_NAMES",
    "BlankImage",
    "BlankKind",
    "Compose",
    "MedEvalKitPrompt",
    "NoImage",
    "NonsenseQuestions",
    "PromptMode",
    "PromptVariant",
    "SwapFallback",
    "SwapImages",
    "SwapRule",
    "Transform",
    "TransformError",
    "format_options",
    "made_up_questions",
    "parse_transforms",
    "transform_from_dict",
]
