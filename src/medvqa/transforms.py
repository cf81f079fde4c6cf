"""Ablation transforms (kept for compatibility): every name now lives in :mod:`medvqa.ablations`.

``from medvqa.transforms import SwapImages`` keeps working and gives the same objects as
``from medvqa.ablations import SwapImages``; new code imports from :mod:`medvqa.ablations`.
"""

from __future__ import annotations

from medvqa.ablations.images import BlankImage, BlankKind, NoImage, SwapFallback, SwapImages, SwapRule
from medvqa.ablations.nonsense import (
    DEFAULT_FILLERS,
    DEFAULT_NONSENSE_TEMPLATES,
    NonsenseQuestions,
    format_options,
    made_up_questions,
)
from medvqa.ablations.prompts import PAPER_INSTRUCTION as PAPER_INSTRUCTION  # not in __all__, kept importable
from medvqa.ablations.prompts import MedEvalKitPrompt, PromptMode, PromptVariant
from medvqa.ablations.registry import TRANSFORM_NAMES, parse_transforms, transform_from_dict
from medvqa.ablations.transforms import TRANSFORMS_KEY, Compose, Transform, TransformError

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
