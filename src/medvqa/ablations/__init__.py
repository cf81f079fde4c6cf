"""Ablations: transform the inputs, run the model, and measure what changed.

The package follows the steps of an ablation study, one module per job:

* :mod:`~medvqa.ablations.transforms`: the framework, :class:`Transform` and
  :class:`Compose` (seeded, pure, composable functions over lists of samples);
* :mod:`~medvqa.ablations.images`: :class:`SwapImages`, :class:`BlankImage`, :class:`NoImage`;
* :mod:`~medvqa.ablations.prompts`: :class:`PromptVariant`, :class:`MedEvalKitPrompt`;
* :mod:`~medvqa.ablations.nonsense`: nonsense questions (:class:`NonsenseQuestions` from
  Med-HALT, :func:`made_up_questions` from templates);
* :mod:`~medvqa.ablations.registry`: transforms by name (:func:`parse_transforms`,
  :func:`transform_from_dict`);
* :mod:`~medvqa.ablations.abstention`: does the model abstain on nonsense questions?
* :mod:`~medvqa.ablations.reliance`: paired differences between a normal and an ablated run;
* :mod:`~medvqa.ablations.report`: both as one Markdown/JSON report;
* :mod:`~medvqa.ablations.runner`: :func:`run_ablations`, the driver that generates every run
  (needs the ``medvqa[train]`` extra, imported only when called).

Import every name from ``medvqa.ablations``; the modules only organise the code. Importing
the package never imports torch.

>>> from medvqa.ablations import parse_transforms
>>> sorted(parse_transforms("swap,noimage+expert"))
['noimage+expert', 'swap']
"""

from __future__ import annotations

from medvqa.ablations.abstention import (
    DEFAULT_ABSTENTION_PATTERNS,
    DEFAULT_ABSTENTION_RULES,
    DEFAULT_WHOLE_ANSWERS,
    AbstentionDecision,
    AbstentionResult,
    AbstentionRules,
    abstention,
    detect_abstention,
)
from medvqa.ablations.images import BlankImage, BlankKind, NoImage, SwapFallback, SwapImages, SwapRule
from medvqa.ablations.nonsense import (
    DEFAULT_FILLERS,
    DEFAULT_NONSENSE_TEMPLATES,
    NonsenseQuestions,
    format_options,
    made_up_questions,
)
from medvqa.ablations.prompts import PAPER_INSTRUCTION, MedEvalKitPrompt, PromptMode, PromptVariant
from medvqa.ablations.registry import TRANSFORM_NAMES, TRANSFORM_TYPES, parse_transforms, transform_from_dict
from medvqa.ablations.reliance import MetricDifference, ProbeError, RelianceResult, Subset, visual_reliance
from medvqa.ablations.report import AblationReport, ablation_report
from medvqa.ablations.runner import run_ablations
from medvqa.ablations.transforms import TRANSFORMS_KEY, Compose, Transform, TransformError

__all__ = [
    "DEFAULT_ABSTENTION_PATTERNS",
    "DEFAULT_ABSTENTION_RULES",
    "DEFAULT_FILLERS",
    "DEFAULT_NONSENSE_TEMPLATES",
    "DEFAULT_WHOLE_ANSWERS",
    "PAPER_INSTRUCTION",
    "TRANSFORMS_KEY",
    "TRANSFORM_NAMES",
    "TRANSFORM_TYPES",
    "AblationReport",
    "AbstentionDecision",
    "AbstentionResult",
    "AbstentionRules",
    "BlankImage",
    "BlankKind",
    "Compose",
    "MedEvalKitPrompt",
    "MetricDifference",
    "NoImage",
    "NonsenseQuestions",
    "ProbeError",
    "PromptMode",
    "PromptVariant",
    "RelianceResult",
    "Subset",
    "SwapFallback",
    "SwapImages",
    "SwapRule",
    "Transform",
    "TransformError",
    "ablation_report",
    "abstention",
    "detect_abstention",
    "format_options",
    "made_up_questions",
    "parse_transforms",
    "run_ablations",
    "transform_from_dict",
    "visual_reliance",
]
