"""The transform framework: seeded, pure, composable functions over lists of samples.

Each transform is a frozen, validated dataclass that is called on a sequence of
:class:`~medvqa.records.VQASample` and returns a new list. Transforms never mutate their
input (samples are frozen; new samples are built with :meth:`VQASample.replace`), keep the
input order, and record themselves in ``metadata["transforms"]`` of every sample they return,
as a tag such as ``swap_images(seed=0)``; a sample that went through several transforms
carries their tags joined with ``+`` in the order they were applied. Generation copies
sample metadata into prediction files, so every row of a prediction file says which
ablation produced it.

Randomness is keyed on the seed and on the stable sample ids, never on call order or on the
input order: shuffling the input list gives every sample the same result.

This module holds the base class :class:`Transform`, :class:`Compose` and the helpers every
transform shares; the transforms themselves live in :mod:`medvqa.ablations.images`,
:mod:`medvqa.ablations.prompts` and :mod:`medvqa.ablations.nonsense`. It needs only the
standard library.

>>> from medvqa.ablations import PromptVariant, SwapImages
>>> from medvqa.records import ImageRef, VQASample
>>> samples = [
...     VQASample(id=f"q{i}", question="Is there a fracture?", answer="no", answer_type="closed",
...               answer_type_source="annotation", dataset="demo", split="test",
...               image=ImageRef(data=bytes([i]), name=f"img{i}"))
...     for i in range(4)
... ]
>>> ablation = Compose((SwapImages(seed=0), PromptVariant.expert()))
>>> out = ablation(samples)
>>> any(a.image.name == b.image.name for a, b in zip(samples, out))
False
>>> out[0].metadata["transforms"]
"swap_images(seed=0)+prompt_variant(label='expert')"
>>> samples[0].metadata.get("transforms") is None    # the input is untouched
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, get_args

from medvqa._errors import MedVQAError
from medvqa.records import MetadataValue, VQASample

__all__ = ["TRANSFORMS_KEY", "Compose", "Transform", "TransformError"]

TRANSFORMS_KEY = "transforms"
"""The metadata key where every transform records its tag (tags joined with ``+``)."""


class TransformError(MedVQAError, ValueError):
    """A transform cannot be applied to the given samples (the message says why and what would work)."""


# --- helpers -------------------------------------------------------------------------------------


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()


def _rng(*parts: object) -> random.Random:
    """A generator seeded from ``parts`` only (stable across processes and Python versions)."""
    return random.Random(int.from_bytes(_digest(*parts)[:8], "big"))


def _record(sample: VQASample, tag: str, **extra: MetadataValue) -> VQASample:
    previous = sample.metadata.get(TRANSFORMS_KEY)
    value = tag if not previous else f"{previous}+{tag}"
    return sample.replace(metadata={**sample.metadata, **extra, TRANSFORMS_KEY: value})


def _check_ids(samples: Sequence[VQASample], who: str) -> None:
    seen: set[str] = set()
    for index, sample in enumerate(samples):
        if not isinstance(sample, VQASample):
            raise TypeError(f"{who}: item {index} is a {type(sample).__name__}, expected a VQASample")
        if sample.id in seen:
            raise TransformError(
                f"{who}: sample id {sample.id!r} occurs more than once (item {index}); transforms "
                "key their random choices on sample ids, which must be unique"
            )
        seen.add(sample.id)


def _show_ids(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _check_seed(value: object, who: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{who}: seed must be an int, got {value!r}")


def _check_choice(value: object, allowed: Any, who: str, name: str) -> None:
    options = get_args(allowed)
    if value not in options:
        raise ValueError(f"{who}: {name} must be one of {', '.join(map(repr, options))}, got {value!r}")


# --- base classes --------------------------------------------------------------------------------


class Transform(ABC):
    """Base class of every ablation transform.

    Subclasses are frozen dataclasses. Calling a transform on a sequence of samples returns
    a new list in the same order, each sample carrying the transform's :attr:`tag` in
    ``metadata["transforms"]``. Transforms can be chained with ``+`` (a :class:`Compose`).

    Sample ids must be unique within one call: random choices are keyed on them.
    """

    name: ClassVar[str] = ""
    """The snake-case name used in tags and in :meth:`to_dict` (``"swap_images"``, ...)."""

    def __call__(self, samples: Sequence[VQASample]) -> list[VQASample]:
        """Apply the transform to ``samples`` (never mutated) and return the new list."""
        items = list(samples)
        _check_ids(items, type(self).__name__)
        return self._apply(items)

    @abstractmethod
    def _apply(self, samples: list[VQASample]) -> list[VQASample]:
        """Transform ``samples`` (already validated) and record the tag on each."""

    @property
    def tag(self) -> str:
        """How the transform is recorded in sample metadata: its name and non-default options.

        The seed, where there is one, is always shown.
        """
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if not f.metadata.get("tag", True):
                continue
            value = getattr(self, f.name)
            default = f.default if f.default is not dataclasses.MISSING else None
            if f.name == "seed" or value != default:
                parts.append(f"{f.name}={value!r}")
        return f"{self.name}({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description: ``{"type": name, option: value, ...}``."""
        out: dict[str, Any] = {"type": self.name}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transform:
        """Rebuild a transform from :meth:`to_dict` output (see :func:`~medvqa.ablations.transform_from_dict`)."""
        from medvqa.ablations.registry import transform_from_dict

        return transform_from_dict(data)

    def __add__(self, other: Transform) -> Compose:
        """``a + b`` is ``Compose((a, b))``: ``a`` first, then ``b``."""
        if not isinstance(other, Transform):
            return NotImplemented
        left = self.transforms if isinstance(self, Compose) else (self,)
        right = other.transforms if isinstance(other, Compose) else (other,)
        return Compose((*left, *right))


@dataclass(frozen=True)
class Compose(Transform):
    """Apply several transforms one after the other, in the given order.

    Each inner transform records its own tag, so a composed sample carries, for example,
    ``swap_images(seed=0)+prompt_variant(label='expert')``. An empty ``Compose`` returns
    the samples unchanged (and records nothing).

    Attributes:
        transforms: The transforms, applied first to last.

    >>> from medvqa.ablations import NoImage, PromptVariant
    >>> c = Compose((NoImage(), PromptVariant.expert()))
    >>> c
    Compose(NoImage(), PromptVariant.expert())
    >>> c.tag
    "no_image()+prompt_variant(label='expert')"
    """

    name: ClassVar[str] = "compose"
    transforms: tuple[Transform, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "transforms", tuple(self.transforms))
        for index, t in enumerate(self.transforms):
            if not isinstance(t, Transform):
                raise TypeError(f"Compose: item {index} is a {type(t).__name__}, expected a Transform")

    def _apply(self, samples: list[VQASample]) -> list[VQASample]:
        for t in self.transforms:
            samples = t(samples)
        return samples

    @property
    def tag(self) -> str:
        """The inner tags joined with ``+``."""
        return "+".join(t.tag for t in self.transforms)

    def to_dict(self) -> dict[str, Any]:
        """``{"type": "compose", "transforms": [inner to_dict, ...]}``."""
        return {"type": self.name, "transforms": [t.to_dict() for t in self.transforms]}

    def __repr__(self) -> str:
        return f"Compose({', '.join(repr(t) for t in self.transforms)})"
