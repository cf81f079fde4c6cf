"""medvqa: medical visual question answering with multimodal language models.

The top-level package exports the records and the most used entry points. Names are
loaded lazily, so ``import medvqa`` stays light: it never imports torch or transformers.
The training side (``medvqa.models``, ``medvqa.collate``, ``medvqa.generation``,
``medvqa.training``) needs the ``medvqa[train]`` extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "DataFormatError": "medvqa._errors",
    "ImageLoadError": "medvqa._errors",
    "ImageRef": "medvqa.records",
    "MedVQAError": "medvqa._errors",
    "Prediction": "medvqa.records",
    "VQASample": "medvqa.records",
    "infer_answer_type": "medvqa.records",
}

__all__ = [
    "DataFormatError",
    "ImageLoadError",
    "ImageRef",
    "MedVQAError",
    "Prediction",
    "VQASample",
    "__version__",
    "infer_answer_type",
]

if TYPE_CHECKING:  # pragma: no cover
    from medvqa._errors import DataFormatError, ImageLoadError, MedVQAError
    from medvqa.records import ImageRef, Prediction, VQASample, infer_answer_type


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'medvqa' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
