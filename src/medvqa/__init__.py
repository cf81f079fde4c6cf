"""medvqa: medical visual question answering with multimodal language models.

The top-level package exports the records and the most used entry points; everything else
lives in its subpackage (:mod:`medvqa.data`, :mod:`medvqa.metrics`, :mod:`medvqa.models`, ...).
Names are loaded lazily, so ``import medvqa`` stays light: it never imports torch or
transformers. The training side (``medvqa.models``, ``medvqa.collate``,
``medvqa.generation``, the runners of ``medvqa.training``) needs the ``medvqa[train]`` extra;
without it, those functions raise :class:`MissingExtraError`, which says what to install.

>>> import medvqa
>>> medvqa.infer_answer_type("No.")
'closed'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medvqa._lazy import lazy_exports

__version__ = "0.1.0.dev0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "Compose": "medvqa.ablations",
    "DataFormatError": "medvqa._errors",
    "ImageLoadError": "medvqa._errors",
    "ImageRef": "medvqa.records",
    "MedVQAError": "medvqa._errors",
    "MissingExtraError": "medvqa._extras",
    "Prediction": "medvqa.records",
    "PromptTemplate": "medvqa.chat",
    "RowRef": "medvqa._errors",
    "StageConfig": "medvqa.training",
    "SwapImages": "medvqa.ablations",
    "VQASample": "medvqa.records",
    "add_lora": "medvqa.models",
    "evaluate": "medvqa.metrics",
    "extract_answer": "medvqa.answers",
    "generate_answers": "medvqa.generation",
    "infer_answer_type": "medvqa.records",
    "load_idefics2": "medvqa.models",
    "paired_comparison": "medvqa.metrics",
    "results_table": "medvqa.reports",
    "run_demo": "medvqa.pipeline",
    "run_stage": "medvqa.training",
    "run_two_stage": "medvqa.training",
    "tiny_idefics2": "medvqa.models",
    "visual_reliance": "medvqa.ablations",
}

__all__ = [
    "Compose",
    "DataFormatError",
    "ImageLoadError",
    "ImageRef",
    "MedVQAError",
    "MissingExtraError",
    "Prediction",
    "PromptTemplate",
    "RowRef",
    "StageConfig",
    "SwapImages",
    "VQASample",
    "__version__",
    "add_lora",
    "evaluate",
    "extract_answer",
    "generate_answers",
    "infer_answer_type",
    "load_idefics2",
    "paired_comparison",
    "results_table",
    "run_demo",
    "run_stage",
    "run_two_stage",
    "tiny_idefics2",
    "visual_reliance",
]

if TYPE_CHECKING:  # pragma: no cover
    from medvqa._errors import DataFormatError, ImageLoadError, MedVQAError, RowRef
    from medvqa._extras import MissingExtraError
    from medvqa.ablations import Compose, SwapImages, visual_reliance
    from medvqa.answers import extract_answer
    from medvqa.chat import PromptTemplate
    from medvqa.generation import generate_answers
    from medvqa.metrics import evaluate, paired_comparison
    from medvqa.models import add_lora, load_idefics2, tiny_idefics2
    from medvqa.pipeline import run_demo
    from medvqa.records import ImageRef, Prediction, VQASample, infer_answer_type
    from medvqa.reports import results_table
    from medvqa.training import StageConfig, run_stage, run_two_stage


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
