"""Training: stage configs and presets, the stage and two-stage runners, the size sweep.

The configs (:class:`StageConfig`, the presets) are light and import without torch. The
runners (:func:`run_stage`, :func:`run_two_stage`, :func:`run_sweep`, :func:`predict_and_score`)
need the ``medvqa[train]`` extra and load it when first used.

>>> from medvqa.training import paper_stage1, paper_stage2
>>> paper_stage1().learning_rate, paper_stage2().learning_rate
(1e-05, 0.0001)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medvqa._lazy import lazy_exports
from medvqa.training._config import (
    DatasetName,
    LoraInitName,
    LoraPresetName,
    MaskMode,
    OptimizerName,
    Precision,
    PromptName,
    Quantization,
    Schedule,
    StageConfig,
)
from medvqa.training._presets import (
    PRESETS,
    paper_single_stage,
    paper_single_stage_as_run,
    paper_stage1,
    paper_stage2,
    preset,
    recommended,
)

_LAZY: dict[str, str] = {
    "AS_RUN_NOTE": "medvqa.training._evaluate",
    "EvalResult": "medvqa.training._evaluate",
    "StageResult": "medvqa.training._results",
    "SweepResult": "medvqa.training._sweep",
    "TwoStageResult": "medvqa.training._results",
    "as_run_loading": "medvqa.training._evaluate",
    "find_resumable_checkpoint": "medvqa.training._runner",
    "load_base_model": "medvqa.training._model",
    "load_stage_samples": "medvqa.training._samples",
    "load_trained_model": "medvqa.training._evaluate",
    "predict_and_score": "medvqa.training._evaluate",
    "run_stage": "medvqa.training._runner",
    "run_sweep": "medvqa.training._sweep",
    "run_two_stage": "medvqa.training._runner",
}

__all__ = [
    "AS_RUN_NOTE",
    "PRESETS",
    "DatasetName",
    "EvalResult",
    "LoraInitName",
    "LoraPresetName",
    "MaskMode",
    "OptimizerName",
    "Precision",
    "PromptName",
    "Quantization",
    "Schedule",
    "StageConfig",
    "StageResult",
    "SweepResult",
    "TwoStageResult",
    "as_run_loading",
    "find_resumable_checkpoint",
    "load_base_model",
    "load_stage_samples",
    "load_trained_model",
    "paper_single_stage",
    "paper_single_stage_as_run",
    "paper_stage1",
    "paper_stage2",
    "predict_and_score",
    "preset",
    "recommended",
    "run_stage",
    "run_sweep",
    "run_two_stage",
]

if TYPE_CHECKING:  # pragma: no cover
    from medvqa.training._evaluate import (
        AS_RUN_NOTE,
        EvalResult,
        as_run_loading,
        load_trained_model,
        predict_and_score,
    )
    from medvqa.training._model import load_base_model
    from medvqa.training._results import StageResult, TwoStageResult
    from medvqa.training._runner import find_resumable_checkpoint, run_stage, run_two_stage
    from medvqa.training._samples import load_stage_samples
    from medvqa.training._sweep import SweepResult, run_sweep


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
