"""Scoring: per-item metrics, named profiles, bootstrap intervals and paired comparison.

One prediction file can be scored under every rule the field cites, side by side:
``paper`` (the Med-Idefics paper), ``llava_med`` (LLaVA-Med v1.0), ``lmms_eval``
(lmms-eval's SLAKE task), ``multimedeval`` (MultiMedEval's VQA family), ``medevalkit``
(MedEvalKit, behind the MedGemma and Lingshu tables) and ``strict``
(medvqa's own, the default). Every aggregate carries its numerator and denominator; the
bootstrap intervals are seeded. This package is part of the light core (NumPy and the
standard library; rapidfuzz for the strict profile's fuzzy column).

>>> from medvqa.records import Prediction
>>> preds = [Prediction("a", "Is it normal?", "no", "No.", "closed"),
...          Prediction("b", "Which organ?", "liver", "The liver", "open")]
>>> r = evaluate(preds, profile="paper", n_boot=0)
>>> r["f1"].value, r["containment"].numerator, r["containment"].n
(0.6666666666666666, 2.0, 2)
>>> sorted(PROFILES)
['llava_med', 'lmms_eval', 'medevalkit', 'multimedeval', 'paper', 'strict']
"""

from __future__ import annotations

from medvqa.metrics._aggregate import Aggregate, bootstrap_means, percentile_interval, wilson_interval
from medvqa.metrics._compare import PairedComparison, mcnemar_exact, paired_comparison
from medvqa.metrics._items import (
    containment,
    paper_f1,
    sentence_bleu,
    set_precision_recall_f1,
    squad_f1,
    token_recall,
    torchmetrics_bleu1,
    vqa_prf,
    vqa_word_exact,
)
from medvqa.metrics._loading import read_predictions
from medvqa.metrics._medevalkit import MedEvalKitProfile
from medvqa.metrics._profiles import (
    PROFILES,
    AggregateSpec,
    LlavaMedProfile,
    LmmsEvalProfile,
    MultiMedEvalProfile,
    PaperProfile,
    Profile,
    ProfileResult,
    StrictProfile,
    evaluate,
    get_profile,
)
from medvqa.metrics._scorefile import (
    SCORE_FORMAT,
    ItemSet,
    ScoreFile,
    ScoreRun,
    build_score_file,
    file_labels,
    is_score_data,
    read_scores,
    write_scores,
)
from medvqa.metrics._tokenize import treebank_tokenize, whitespace_tokenize

__all__ = [
    "PROFILES",
    "SCORE_FORMAT",
    "Aggregate",
    "AggregateSpec",
    "ItemSet",
    "LlavaMedProfile",
    "LmmsEvalProfile",
    "MedEvalKitProfile",
    "MultiMedEvalProfile",
    "PairedComparison",
    "PaperProfile",
    "Profile",
    "ProfileResult",
    "ScoreFile",
    "ScoreRun",
    "StrictProfile",
    "bootstrap_means",
    "build_score_file",
    "containment",
    "evaluate",
    "file_labels",
    "get_profile",
    "is_score_data",
    "mcnemar_exact",
    "paired_comparison",
    "paper_f1",
    "percentile_interval",
    "read_predictions",
    "read_scores",
    "sentence_bleu",
    "set_precision_recall_f1",
    "squad_f1",
    "token_recall",
    "torchmetrics_bleu1",
    "treebank_tokenize",
    "vqa_prf",
    "vqa_word_exact",
    "whitespace_tokenize",
    "wilson_interval",
    "write_scores",
]
