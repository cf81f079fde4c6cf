# ruff: noqa: F403, F405
"""Former home of the ablation probes and report; they live in :mod:`medvqa.ablations` now.

Kept so that ``from medvqa.probes import visual_reliance`` still works (the same objects).
"""

from __future__ import annotations

# The same objects as medvqa.ablations; __all__ below keeps this module's former list.
from medvqa.ablations import *

__all__ = [
    "DEFAULT_ABSTENTION_PATTERNS",
    "DEFAULT_ABSTENTION_RULES",
    "DEFAULT_WHOLE_ANSWERS",
    "AblationReport",
    "AbstentionDecision",
    "AbstentionResult",
    "AbstentionRules",
    "MetricDifference",
    "ProbeError",
    "RelianceResult",
    "Subset",
    "ablation_report",
    "abstention",
    "detect_abstention",
    "run_ablations",
    "visual_reliance",
]
