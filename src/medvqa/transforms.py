"""Ablation transforms: seeded, pure, composable functions over lists of samples.

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

This module is part of the light core: it needs only the standard library, Pillow and NumPy.

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
import functools
import hashlib
import io
import json
import random
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

from medvqa._errors import MedVQAError
from medvqa.chat import EXPERT_INSTRUCTION, PAPER_VQA_PROMPT
from medvqa.chat import PROMPT_INSTRUCTION_KEY as PROMPT_KEY
from medvqa.records import ImageRef, MetadataValue, VQASample

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

TRANSFORMS_KEY = "transforms"
"""The metadata key where every transform records its tag (tags joined with ``+``)."""

PAPER_INSTRUCTION = PAPER_VQA_PROMPT.instruction
"""The instruction of :data:`medvqa.chat.PAPER_VQA_PROMPT` (``Answer briefly.``)."""

SwapRule = Literal["content", "index"]
"""``content``: no sample keeps an image with the same content (ours). ``index``: the paper's rule."""

SwapFallback = Literal["error", "pool"]
"""What :class:`SwapImages` does with a ``within`` group that cannot be deranged on its own."""

BlankKind = Literal["constant", "noise"]
"""A constant grey image, or seeded uniform noise."""

PromptMode = Literal["replace", "prepend", "append"]
"""How :class:`PromptVariant` combines its instruction with the current one."""


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
        """Rebuild a transform from :meth:`to_dict` output (see :func:`transform_from_dict`)."""
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


# --- image swaps ---------------------------------------------------------------------------------


class _HashCache:
    """Content hashes of image references, computed once per file within one call."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[object, ...], str] = {}

    def __call__(self, ref: ImageRef) -> str:
        key: tuple[object, ...] = (
            ("path", ref.path, ref.root) if ref.path is not None else ("data", id(ref.data))
        )
        found = self._by_key.get(key)
        if found is None:
            found = ref.content_hash()
            self._by_key[key] = found
        return found


def _derange(classes: Sequence[str], keys: Sequence[str], seed: int, salt: str) -> list[int]:
    """A seeded permutation ``src`` with ``classes[src[i]] != classes[i]`` for every ``i``.

    Requires that no class holds more than half of the items. Built by sorting the items
    into class blocks (largest first) and shifting by the largest block's size, which is
    always valid; then mixed by random transpositions that keep it valid. Only the
    (key, class) pairs and the seed matter, never the order of the input.
    """
    n = len(classes)
    counts = Counter(classes)
    biggest = max(counts.values())
    order = sorted(
        range(n),
        key=lambda i: (
            -counts[classes[i]],
            _digest(seed, salt, "class", classes[i]),
            _digest(seed, salt, "item", keys[i]),
        ),
    )
    src = [0] * n
    for k, i in enumerate(order):
        src[i] = order[(k + biggest) % n]
    rng = _rng(seed, salt, "mix")
    # Work in the seed-keyed order so that the mixing does not depend on the input order.
    canon = sorted(range(n), key=lambda i: _digest(seed, salt, "item", keys[i]))
    for _ in range(8 * n):
        a = canon[rng.randrange(n)]
        b = canon[rng.randrange(n)]
        if a != b and classes[src[b]] != classes[a] and classes[src[a]] != classes[b]:
            src[a], src[b] = src[b], src[a]
    return src


@dataclass(frozen=True)
class SwapImages(Transform):
    """Give every sample the image of another sample (the "swapped images" ablation).

    With ``rule="content"`` (the default) the new images are a permutation of the old ones
    (the multiset of images is kept) in which **no sample keeps an image with the same
    content**: images are compared by :meth:`ImageRef.content_hash`, never by index or file
    name, because datasets ask several questions about one image (VQA-RAD about two) and
    hold byte-identical copies under different names. Such a derangement exists exactly
    when no single content is used by more than half of the samples; otherwise the
    transform raises :class:`TransformError` saying which content is too common.

    With ``rule="index"`` (paper parity) every sample independently draws the image of a
    different sample, uniformly at random: this is what the paper did (unseeded there,
    seeded here). The drawn image can have the same content (another question about the
    same image), and the multiset of images is not kept.

    Every returned sample records ``swap_source_id`` (the id of the sample whose image it
    got) and the tag ``swap_images(seed=..., ...)``.

    Attributes:
        seed: Seed of the random draw.
        rule: ``"content"`` or ``"index"`` (see above).
        within: Metadata fields (for example ``("modality",)`` or ``("modality", "organ")``):
            swap only between samples that agree on all of them. Every sample must have
            these fields. Only with ``rule="content"``.
        fallback: What to do with a ``within`` group that cannot be deranged on its own (a
            single sample, or one image used by more than half of the group): ``"error"``
            raises; ``"pool"`` swaps the samples of all such groups together, across
            groups, and marks them with ``swap_pooled=True`` in their metadata.

    >>> SwapImages(seed=3, within=("modality",)).tag
    "swap_images(seed=3, within=('modality',))"
    """

    name: ClassVar[str] = "swap_images"
    seed: int = 0
    rule: SwapRule = "content"
    within: tuple[str, ...] = ()
    fallback: SwapFallback = "error"

    def __post_init__(self) -> None:
        _check_seed(self.seed, "SwapImages")
        _check_choice(self.rule, SwapRule, "SwapImages", "rule")
        _check_choice(self.fallback, SwapFallback, "SwapImages", "fallback")
        if isinstance(self.within, str):
            object.__setattr__(self, "within", (self.within,))
        object.__setattr__(self, "within", tuple(self.within))
        if not all(isinstance(k, str) and k for k in self.within):
            raise TypeError(f"SwapImages: within must be metadata field names, got {self.within!r}")
        if self.within and self.rule == "index":
            raise ValueError("SwapImages: within= applies to rule='content' only")

    def _apply(self, samples: list[VQASample]) -> list[VQASample]:
        if not samples:
            return []
        missing = [s.id for s in samples if s.image is None]
        if missing:
            raise TransformError(
                f"SwapImages: {len(missing)} of {len(samples)} samples have no image "
                f"({_show_ids(missing)}); remove them first, or use NoImage or BlankImage"
            )
        if self.rule == "index":
            return self._apply_index(samples)
        hashes = _HashCache()
        classes = [hashes(s.image) for s in samples if s.image is not None]
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, s in enumerate(samples):
            key = []
            for fld in self.within:
                value = s.metadata.get(fld)
                if value is None or value == "":
                    raise TransformError(
                        f"SwapImages: sample {s.id!r} has no metadata field {fld!r}, which within= "
                        f"needs (its fields: {sorted(s.metadata)}); drop within= or choose fields "
                        "every sample has"
                    )
                key.append(str(value))
            groups.setdefault(tuple(key), []).append(i)
        src_of: dict[int, int] = {}
        pooled: list[int] = []
        for group_key, members in sorted(groups.items()):
            problem = self._infeasible([classes[i] for i in members])
            if problem is None:
                self._derange_into(src_of, members, samples, classes, "|".join(group_key))
            elif self.fallback == "pool" and self.within:
                pooled.extend(members)
            else:
                where = f" in the group {dict(zip(self.within, group_key))}" if self.within else ""
                hint = " (or pass fallback='pool')" if self.within else ""
                raise TransformError(
                    f"SwapImages: cannot swap images{where}: {problem}; a swap in which no sample "
                    f"keeps an image with the same content exists only when no content is used by "
                    f"more than half of the samples{hint}"
                )
        if pooled:
            problem = self._infeasible([classes[i] for i in pooled])
            if problem is not None:
                raise TransformError(
                    f"SwapImages: {len(pooled)} samples are in within= groups that cannot be swapped "
                    f"on their own, and pooling them does not help: {problem}"
                )
            self._derange_into(src_of, sorted(pooled), samples, classes, "\x00pooled")
        pooled_set = set(pooled)
        out = []
        for i, s in enumerate(samples):
            donor = samples[src_of[i]]
            extra: dict[str, MetadataValue] = {"swap_source_id": donor.id}
            if i in pooled_set:
                extra["swap_pooled"] = True
            out.append(_record(s.replace(image=donor.image), self.tag, **extra))
        return out

    @staticmethod
    def _infeasible(classes: Sequence[str]) -> str | None:
        n = len(classes)
        if n < 2:
            return f"only {n} sample"
        content, count = Counter(classes).most_common(1)[0]
        if 2 * count > n:
            return (
                f"one image content (sha256 {content[:12]}...) is used by {count} of {n} samples, "
                f"more than half (at most {n // 2} allowed)"
            )
        return None

    def _derange_into(
        self,
        src_of: dict[int, int],
        members: list[int],
        samples: list[VQASample],
        classes: list[str],
        salt: str,
    ) -> None:
        perm = _derange([classes[i] for i in members], [samples[i].id for i in members], self.seed, salt)
        for local, i in enumerate(members):
            src_of[i] = members[perm[local]]

    def _apply_index(self, samples: list[VQASample]) -> list[VQASample]:
        if len(samples) < 2:
            raise TransformError("SwapImages(rule='index'): needs at least 2 samples")
        ids = sorted(s.id for s in samples)
        position = {sample_id: k for k, sample_id in enumerate(ids)}
        by_id = {s.id: s for s in samples}
        out = []
        for s in samples:
            rng = _rng(self.seed, "index", s.id)
            k = rng.randrange(len(ids) - 1)
            own = position[s.id]
            donor = by_id[ids[k + 1 if k >= own else k]]
            out.append(_record(s.replace(image=donor.image), self.tag, swap_source_id=donor.id))
        return out


# --- blank and missing images --------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _png(kind: str, value: int, width: int, height: int, seed_material: bytes) -> bytes:
    import numpy as np
    from PIL import Image

    if kind == "constant":
        img = Image.new("L", (width, height), value)
    else:
        gen = np.random.default_rng(int.from_bytes(seed_material[:8], "big"))
        img = Image.fromarray(gen.integers(0, 256, size=(height, width), dtype=np.uint8), mode="L")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _image_size(ref: ImageRef) -> tuple[int, int]:
    from PIL import Image

    from medvqa._errors import ImageLoadError

    try:
        if ref.data is not None:
            with Image.open(io.BytesIO(ref.data)) as img:
                return img.size
        with Image.open(ref.resolved_path()) as img:
            return img.size
    except ImageLoadError:
        raise
    except (OSError, ValueError) as exc:
        raise ImageLoadError(f"cannot read the size of image {ref.label}: {exc}") from exc


@dataclass(frozen=True)
class BlankImage(Transform):
    """Replace every image by a blank one: a constant grey level, or seeded noise.

    The blank image is an in-memory PNG (an :class:`ImageRef` with ``data=``), so nothing is
    written to disk. Samples without an image get one too: the ablation asks what the model
    answers when it is shown nothing informative.

    Attributes:
        kind: ``"constant"`` (every pixel ``value``) or ``"noise"`` (uniform grey noise).
        value: Grey level of the constant image, 0 (black) to 255 (white).
        size: ``(width, height)`` of the blank image, or ``"original"`` for the size of the
            image it replaces (read from the file header, without decoding pixels).
        seed: Seed of the noise.
        per_sample: With noise, draw a different noise image for every sample (keyed on its
            id; memory grows with the number of samples) instead of one for the whole run.

    >>> s = VQASample(id="a", question="q", answer="yes", answer_type="closed",
    ...               answer_type_source="annotation", dataset="demo", split="test")
    >>> out = BlankImage(size=(8, 8))([s])
    >>> out[0].image.open().size, out[0].image.open().getpixel((0, 0))
    ((8, 8), (0, 0, 0))
    >>> out[0].metadata["transforms"]
    'blank_image(size=(8, 8))'
    """

    name: ClassVar[str] = "blank_image"
    kind: BlankKind = "constant"
    value: int = 0
    size: tuple[int, int] | Literal["original"] = (378, 378)
    seed: int = 0
    per_sample: bool = False

    def __post_init__(self) -> None:
        _check_choice(self.kind, BlankKind, "BlankImage", "kind")
        _check_seed(self.seed, "BlankImage")
        if isinstance(self.value, bool) or not isinstance(self.value, int) or not 0 <= self.value <= 255:
            raise ValueError(f"BlankImage: value must be an int from 0 to 255, got {self.value!r}")
        if self.size != "original":
            size = tuple(self.size) if isinstance(self.size, list | tuple) else None
            if (
                size is None
                or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8192 for v in size)
            ):
                raise ValueError(
                    f"BlankImage: size must be (width, height) with each from 1 to 8192, or 'original'; "
                    f"got {self.size!r}"
                )
            object.__setattr__(self, "size", size)

    @property
    def tag(self) -> str:
        """``blank_image(...)``; the seed is shown only for noise."""
        parts = []
        if self.kind != "constant":
            parts += [f"kind={self.kind!r}", f"seed={self.seed!r}"]
        elif self.value != 0:
            parts.append(f"value={self.value!r}")
        if self.size != (378, 378):
            parts.append(f"size={self.size!r}")
        if self.per_sample and self.kind == "noise":
            parts.append("per_sample=True")
        return f"{self.name}({', '.join(parts)})"

    def _apply(self, samples: list[VQASample]) -> list[VQASample]:
        tag = self.tag
        out = []
        for s in samples:
            if self.size == "original":
                if s.image is None:
                    raise TransformError(
                        f"BlankImage(size='original'): sample {s.id!r} has no image to take the size "
                        "from; give an explicit size=(width, height)"
                    )
                width, height = _image_size(s.image)
            else:
                width, height = self.size
            material = b""
            if self.kind == "noise":
                material = _digest(self.seed, "noise", s.id if self.per_sample else "")
            data = _png(self.kind, self.value, width, height, material)
            label = (
                f"blank:{self.value}:{width}x{height}"
                if self.kind == "constant"
                else f"noise:seed={self.seed}:{width}x{height}"
            )
            out.append(_record(s.replace(image=ImageRef(data=data, name=label)), tag))
        return out


@dataclass(frozen=True)
class NoImage(Transform):
    """Remove the image: the question is asked text-only (``image=None``).

    >>> s = VQASample(id="a", question="q", answer="yes", answer_type="closed",
    ...               answer_type_source="annotation", dataset="demo", split="test",
    ...               image=ImageRef(data=b"x"))
    >>> out = NoImage()([s])
    >>> out[0].image is None, out[0].metadata["transforms"], s.image is not None
    (True, 'no_image()', True)
    """

    name: ClassVar[str] = "no_image"

    def _apply(self, samples: list[VQASample]) -> list[VQASample]:
        return [_record(s.replace(image=None), self.tag) for s in samples]


# --- prompts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptVariant(Transform):
    """Change the instruction the model is given, through ``metadata["prompt_instruction"]``.

    The chat layer uses that field in place of the prompt template's instruction. With
    ``mode="replace"`` the instruction becomes ``instruction`` (the paper's expert-prompt
    ablation replaced "Answer briefly." this way); ``"prepend"`` and ``"append"`` add it
    before or after the current instruction: the sample's ``prompt_instruction`` if an
    earlier transform set one, else ``base``.

    Attributes:
        instruction: The instruction text (default: :data:`medvqa.chat.EXPERT_INSTRUCTION`).
        mode: ``"replace"``, ``"prepend"`` or ``"append"``.
        base: The instruction that ``prepend``/``append`` extend when the sample has none
            yet (default: the paper's ``Answer briefly.``; match your prompt template).
        label: A short name for tags and reports; by default ``"expert"`` or ``"paper"`` for
            those texts, else ``custom-`` and the first 8 hex digits of the text's SHA-256.

    >>> PromptVariant.expert(mode="prepend")([VQASample(
    ...     id="a", question="q", answer="yes", answer_type="closed",
    ...     answer_type_source="annotation", dataset="d", split="test")])[0].metadata["prompt_instruction"]
    'You are an expert radiologist evaluating the case, answer the question succinctly based on the medical image. Answer briefly.'
    """

    name: ClassVar[str] = "prompt_variant"
    instruction: str = EXPERT_INSTRUCTION
    mode: PromptMode = "replace"
    base: str = PAPER_INSTRUCTION
    label: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise ValueError("PromptVariant: instruction must be a non-empty string")
        if not isinstance(self.base, str):
            raise TypeError("PromptVariant: base must be a string")
        _check_choice(self.mode, PromptMode, "PromptVariant", "mode")
        if not self.label:
            if self.instruction == EXPERT_INSTRUCTION:
                label = "expert"
            elif self.instruction == PAPER_INSTRUCTION:
                label = "paper"
            else:
                label = "custom-" + hashlib.sha256(self.instruction.encode("utf-8")).hexdigest()[:8]
            object.__setattr__(self, "label", label)
        if "+" in self.label or "(" in self.label or ")" in self.label:
            raise ValueError(f"PromptVariant: label may not contain '+', '(' or ')', got {self.label!r}")

    @classmethod
    def expert(cls, *, mode: PromptMode = "replace") -> PromptVariant:
        """The paper's expert-radiologist instruction (replacing the paper's one by default)."""
        return cls(instruction=EXPERT_INSTRUCTION, mode=mode)

    @property
    def tag(self) -> str:
        """``prompt_variant(label=..., mode=...)``: the text itself is in ``prompt_instruction``."""
        mode = "" if self.mode == "replace" else f", mode={self.mode!r}"
        return f"{self.name}(label={self.label!r}{mode})"

    def __repr__(self) -> str:
        if (
            self.instruction == EXPERT_INSTRUCTION
            and self.base == PAPER_INSTRUCTION
            and self.label == "expert"
        ):
            return (
                "PromptVariant.expert()"
                if self.mode == "replace"
                else f"PromptVariant.expert(mode={self.mode!r})"
            )
        return (
            f"PromptVariant(instruction={self.instruction!r}, mode={self.mode!r}, "
            f"base={self.base!r}, label={self.label!r})"
        )

    def _apply(self, samples: list[VQASample]) -> list[VQASample]:
        out = []
        for s in samples:
            current = s.metadata.get(PROMPT_KEY)
            current_text = current if isinstance(current, str) and current else self.base
            if self.mode == "replace":
                text = self.instruction
            elif self.mode == "prepend":
                text = f"{self.instruction} {current_text}".strip()
            else:
                text = f"{current_text} {self.instruction}".strip()
            out.append(_record(s, self.tag, **{PROMPT_KEY: text}))
        return out


@dataclass(frozen=True)
class MedEvalKitPrompt(Transform):
    """MedEvalKit's prompts: the instruction is chosen from the **reference answer**.

    A sample whose answer is ``yes``/``no`` (lowercased, stripped) gets
    :data:`medvqa.chat.MEDEVALKIT_YES_NO_INSTRUCTION`, every other one
    :data:`medvqa.chat.MEDEVALKIT_OPEN_INSTRUCTION`, through ``metadata["prompt_instruction"]``.
    Use it with the ``medevalkit`` prompt template (question, then newline and instruction).
    Choosing the prompt from the truth **leaks the answer type** to the model: it exists only
    to reproduce numbers made with MedEvalKit, never for a fair evaluation.

    >>> s = VQASample(id="a", question="Is it normal?", answer="No", answer_type="closed",
    ...               answer_type_source="annotation", dataset="d", split="test")
    >>> MedEvalKitPrompt()([s])[0].metadata["prompt_instruction"]
    "\\nPlease output 'yes' or 'no'(no extra output)."
    """

    name: ClassVar[str] = "medevalkit_prompt"

    def _apply(self, samples: list[VQASample]) -> list[VQASample]:
        from medvqa.chat import MEDEVALKIT_OPEN_INSTRUCTION, MEDEVALKIT_YES_NO_INSTRUCTION

        out = []
        for s in samples:
            yes_no = s.answer.lower().strip() in ("yes", "no")
            text = MEDEVALKIT_YES_NO_INSTRUCTION if yes_no else MEDEVALKIT_OPEN_INSTRUCTION
            out.append(_record(s, self.tag, **{PROMPT_KEY: text}))
        return out


# --- nonsense questions --------------------------------------------------------------------------


def _options_of(sample: VQASample) -> list[tuple[str, str]]:
    """The ``(key, text)`` options of a Med-HALT sample: ``options`` (a JSON list, with keys in
    ``option_keys`` when present, else 0, 1, ...; or a JSON object ``{key: text}``)."""
    raw = sample.metadata.get("options")
    if not isinstance(raw, str) or not raw:
        raise TransformError(
            f"sample {sample.id!r}: metadata field 'options' is missing or empty; Med-HALT samples "
            "carry their options there as a JSON string (use with_options=False for questions without)"
        )
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TransformError(f"sample {sample.id!r}: metadata field 'options' is not JSON: {exc}") from exc
    if isinstance(parsed, dict):
        return [(str(k), str(v)) for k, v in parsed.items()]
    if isinstance(parsed, list):
        keys: list[str] = [str(i) for i in range(len(parsed))]
        raw_keys = sample.metadata.get("option_keys")
        if isinstance(raw_keys, str) and raw_keys:
            try:
                loaded = json.loads(raw_keys)
            except json.JSONDecodeError as exc:
                raise TransformError(
                    f"sample {sample.id!r}: metadata field 'option_keys' is not JSON: {exc}"
                ) from exc
            if not isinstance(loaded, list) or len(loaded) != len(parsed):
                raise TransformError(
                    f"sample {sample.id!r}: metadata field 'option_keys' must be a JSON list as long as "
                    f"'options' ({len(parsed)} items)"
                )
            keys = [str(k) for k in loaded]
        return [(k, str(v)) for k, v in zip(keys, parsed)]
    raise TransformError(
        f"sample {sample.id!r}: metadata field 'options' must be a JSON list or object, got "
        f"{type(parsed).__name__}"
    )


def format_options(question: str, options: Sequence[tuple[str, str]]) -> str:
    """Append numbered options to a question, one per line (the layout of Med-HALT's prompts).

    >>> print(format_options("Which is it?", [("0", "a cat"), ("1", "I do not know")]))
    Which is it?
    Options:
    0. a cat
    1. I do not know
    """
    lines = [question.rstrip(), "Options:"] + [f"{key}. {text}" for key, text in options]
    return "\n".join(lines)


def _pool_refs(pool: Iterable[ImageRef | VQASample], who: str) -> tuple[ImageRef, ...]:
    refs: list[ImageRef] = []
    for i, item in enumerate(pool):
        ref = item.image if isinstance(item, VQASample) else item
        if isinstance(ref, ImageRef):
            refs.append(ref)
        elif not isinstance(item, VQASample):
            raise TypeError(
                f"{who}: pool item {i} is a {type(item).__name__}, expected an ImageRef or VQASample"
            )
    # Several questions often share one image: keep each file once.
    unique = {(r.path, r.root, r.name, id(r.data) if r.data is not None else None): r for r in refs}
    return tuple(unique.values())


@dataclass(frozen=True, repr=False)
class NonsenseQuestions(Transform):
    """Turn Med-HALT ``reasoning_fake`` samples into image questions for the abstention probe.

    Med-HALT's nonsense questions have no image; each sample gets one image from ``pool``
    through :func:`medvqa.data.pair_with_images` (drawn with the seed, keyed on the sample
    id; the order of the pool does not matter). With ``with_options=True`` the question
    shows the options, including the abstaining one ("I do not know"); without, only the
    question is asked. The reference answer stays the abstaining option's text, and the
    sample is marked ``nonsense=True`` and ``with_options`` in its metadata; the options
    and the abstaining key stay in the metadata for scoring with
    :func:`medvqa.probes.abstention`.

    Attributes:
        pool: The images to draw from (for example the images of the test split of the
            dataset under study). An image shared by several questions counts once.
        seed: Seed of the draw.
        with_options: Show the options in the question.

    >>> meta = {"options": '{"0": "Zeus", "1": "I do not know"}', "abstain_option": "1"}
    >>> s = VQASample(id="mh:1", question="Which god rules the spleen?", answer="I do not know",
    ...               answer_type="open", answer_type_source="annotation", dataset="med_halt",
    ...               split="test", metadata=meta)
    >>> t = NonsenseQuestions(pool=(ImageRef(data=b"x", name="x.png"),), seed=0)
    >>> t
    NonsenseQuestions(pool=<1 image>, seed=0, with_options=True)
    >>> out = t([s])
    >>> print(out[0].question)
    Which god rules the spleen?
    Options:
    0. Zeus
    1. I do not know
    >>> out[0].image.name, out[0].metadata["transforms"]
    ('x.png', 'nonsense_questions(seed=0)')
    """

    name: ClassVar[str] = "nonsense_questions"
    pool: tuple[ImageRef, ...] = field(default=(), metadata={"tag": False})
    seed: int = 0
    with_options: bool = True

    def __post_init__(self) -> None:
        _check_seed(self.seed, "NonsenseQuestions")
        object.__setattr__(self, "pool", _pool_refs(self.pool, "NonsenseQuestions"))
        if not self.pool:
            raise ValueError("NonsenseQuestions: pool must hold at least one image")
        if not isinstance(self.with_options, bool):
            raise TypeError(f"NonsenseQuestions: with_options must be a bool, got {self.with_options!r}")

    @property
    def tag(self) -> str:
        """``nonsense_questions(seed=..., with_options=False)`` (the pool is not shown)."""
        extra = "" if self.with_options else ", with_options=False"
        return f"{self.name}(seed={self.seed!r}{extra})"

    def __repr__(self) -> str:
        n = len(self.pool)
        return (
            f"NonsenseQuestions(pool=<{n} image{'s' if n != 1 else ''}>, seed={self.seed!r}, "
            f"with_options={self.with_options!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The options and the pool as image descriptions (in-memory images cannot round-trip)."""
        return {
            "type": self.name,
            "seed": self.seed,
            "with_options": self.with_options,
            "pool": [r.to_dict() for r in self.pool],
        }

    def _apply(self, samples: list[VQASample]) -> list[VQASample]:
        from medvqa.data import pair_with_images

        out = []
        for s in pair_with_images(samples, self.pool, seed=self.seed):
            question = format_options(s.question, _options_of(s)) if self.with_options else s.question
            changed = s.replace(question=question, answer_type="open")
            out.append(_record(changed, self.tag, nonsense=True, with_options=self.with_options))
        return out


DEFAULT_NONSENSE_TEMPLATES: tuple[str, ...] = (
    "What is the name of the {creature} visible in the {organ}?",
    "How many {creature}s are nesting in the {organ} in this image?",
    "Which {element} crystal is growing in the {organ}?",
    "Is the {organ} in this image singing in {language}?",
    "What {colour} spell was used to take this {modality} image?",
    "In which century was the {creature} in the {organ} born?",
)
"""Made-up questions with no sensible answer, written for this library (the paper's five are not published)."""

DEFAULT_FILLERS: Mapping[str, tuple[str, ...]] = {
    "creature": ("dragon", "unicorn", "mermaid", "griffin", "phoenix"),
    "organ": ("left lung", "liver", "frontal lobe", "right kidney", "spleen"),
    "element": ("kryptonite", "mithril", "unobtainium"),
    "language": ("Latin", "Klingon", "Elvish"),
    "colour": ("purple", "invisible", "golden"),
    "modality": ("CT", "MRI", "X-ray"),
}
"""Words for the ``{placeholders}`` of :data:`DEFAULT_NONSENSE_TEMPLATES`."""


def made_up_questions(
    pool: Sequence[ImageRef] | Sequence[VQASample],
    *,
    templates: Sequence[str] = DEFAULT_NONSENSE_TEMPLATES,
    fillers: Mapping[str, Sequence[str]] = DEFAULT_FILLERS,
    n: int | None = None,
    seed: int = 0,
    answer: str = "I do not know",
    dataset: str = "made_up",
    split: str = "test",
) -> list[VQASample]:
    """Build nonsense questions from templates, each paired with an image from ``pool``.

    Template ``k`` of sample ``i`` is ``templates[i % len(templates)]``; its ``{placeholders}``
    are filled with words drawn from ``fillers`` (seeded, keyed on the sample id). Samples
    get ids ``f"{dataset}:{split}:{i}"``, the reference ``answer``, and the metadata
    ``nonsense=True``, ``template`` (the index) and ``transforms="made_up_questions(seed=...)"``.

    Args:
        pool: Images (or samples whose images are used) to pair the questions with.
        templates: Question templates with ``{name}`` placeholders.
        fillers: Words for each placeholder name.
        n: How many questions (default: one per template).
        seed: Seed of the word and image draws.
        answer: The reference answer (an abstention).
        dataset: Dataset name of the new samples.
        split: Split name of the new samples.

    Returns:
        ``n`` new samples.

    Raises:
        TransformError: A template uses a placeholder that ``fillers`` lacks, or the pool
            has no image.

    >>> qs = made_up_questions([ImageRef(data=b"x", name="x.png")], n=2, seed=1)
    >>> len(qs), qs[0].id, qs[0].metadata["nonsense"]
    (2, 'made_up:test:0', True)
    """
    import string

    refs = _pool_refs(pool, "made_up_questions")
    if not refs:
        raise TransformError("made_up_questions: the pool has no image")
    if not templates:
        raise TransformError("made_up_questions: give at least one template")
    count = len(templates) if n is None else n
    if count < 0:
        raise ValueError(f"made_up_questions: n must be >= 0, got {n}")
    from medvqa.data import pair_with_images

    formatter = string.Formatter()
    tag = f"made_up_questions(seed={seed!r})"
    out = []
    for i in range(count):
        template = templates[i % len(templates)]
        sample_id = f"{dataset}:{split}:{i}"
        rng = _rng(seed, "template", sample_id)
        values: dict[str, str] = {}
        for _, fname, _, _ in formatter.parse(template):
            if fname is None or fname in values:
                continue
            words = fillers.get(fname)
            if not words:
                raise TransformError(
                    f"made_up_questions: template {i % len(templates)} uses {{{fname}}}, which fillers "
                    f"lacks (fillers has: {sorted(fillers)})"
                )
            values[fname] = words[rng.randrange(len(words))]
        out.append(
            VQASample(
                id=sample_id,
                question=template.format(**values),
                answer=answer,
                answer_type="open",
                answer_type_source="annotation",
                dataset=dataset,
                split=split,
                metadata={"nonsense": True, "template": i % len(templates), TRANSFORMS_KEY: tag},
            )
        )
    return pair_with_images(out, refs, seed=seed)


# --- registry ------------------------------------------------------------------------------------

_TYPES: dict[str, type[Transform]] = {
    cls.name: cls
    for cls in (Compose, SwapImages, BlankImage, NoImage, PromptVariant, MedEvalKitPrompt, NonsenseQuestions)
}


def transform_from_dict(data: Mapping[str, Any]) -> Transform:
    """Rebuild a transform from :meth:`Transform.to_dict` output.

    >>> t = SwapImages(seed=2, within=("organ",))
    >>> transform_from_dict(t.to_dict()) == t
    True
    """
    kind = data.get("type")
    cls = _TYPES.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown transform type {kind!r}; valid: {', '.join(sorted(_TYPES))}")
    options = {k: v for k, v in data.items() if k != "type"}
    if cls is Compose:
        return Compose(tuple(transform_from_dict(t) for t in options.get("transforms", ())))
    if cls is NonsenseQuestions:
        options["pool"] = tuple(
            ImageRef(path=p["path"], root=p.get("root"), name=p.get("name"))
            for p in options.get("pool", ())
            if p.get("path")
        )
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown options {unknown}; valid: {sorted(names)}")
    for key, value in options.items():
        if isinstance(value, list):
            options[key] = tuple(value)
    return cls(**options)


_NAMED: dict[str, Callable[[int], Transform]] = {
    "swap": lambda seed: SwapImages(seed=seed),
    "swap_index": lambda seed: SwapImages(seed=seed, rule="index"),
    "blank": lambda seed: BlankImage(),
    "noise": lambda seed: BlankImage(kind="noise", seed=seed),
    "noimage": lambda seed: NoImage(),
    "expert": lambda seed: PromptVariant.expert(),
    "expert_prepend": lambda seed: PromptVariant.expert(mode="prepend"),
    "medevalkit": lambda seed: MedEvalKitPrompt(),
}

TRANSFORM_NAMES: tuple[str, ...] = tuple(_NAMED)
"""Names that :func:`parse_transforms` understands (join them with ``+`` to compose)."""


def parse_transforms(spec: str, *, seed: int = 0) -> dict[str, Transform]:
    """Parse a comma-separated list of named transforms, as ``medvqa ablate --transforms`` takes.

    Names are those of :data:`TRANSFORM_NAMES`: ``swap`` (content derangement), ``swap_index``
    (the paper's rule), ``blank`` (black 378x378), ``noise`` (seeded noise), ``noimage``
    (text only), ``expert`` (the expert instruction replacing the paper's),
    ``expert_prepend`` and ``medevalkit`` (MedEvalKit's prompts, chosen from the truth: they
    leak the answer type; use the ``medevalkit`` prompt template with it). Join names with ``+`` to compose them, in order.

    Returns:
        ``{name as written: transform}``, in the order given.

    >>> parse_transforms("swap, noimage+expert", seed=1)
    {'swap': SwapImages(seed=1, rule='content', within=(), fallback='error'), 'noimage+expert': Compose(NoImage(), PromptVariant.expert())}
    """
    out: dict[str, Transform] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        parts = [p.strip() for p in item.split("+")]
        bad = [p for p in parts if p not in _NAMED]
        if bad:
            raise ValueError(
                f"unknown transform {bad[0]!r} in {spec!r}; valid names: {', '.join(TRANSFORM_NAMES)} "
                "(join names with '+' to compose them)"
            )
        built = [_NAMED[p](seed) for p in parts]
        out[item] = built[0] if len(built) == 1 else Compose(tuple(built))
    if not out:
        raise ValueError(f"no transform named in {spec!r}; valid names: {', '.join(TRANSFORM_NAMES)}")
    return out
