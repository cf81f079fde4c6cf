"""Ablation probes (kept for compatibility): every name now lives in :mod:`medvqa.ablations`.

``from medvqa.probes import visual_reliance`` keeps working and gives the same objects as
``from medvqa.ablations import visual_reliance``; new code imports from :mod:`medvqa.ablations`.
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
from medvqa.ablations.reliance import MetricDifference, ProbeError, RelianceResult, Subset, visual_reliance
from medvqa.ablations.report import AblationReport, ablation_report
from medvqa.ablations.runner import run_ablations

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
