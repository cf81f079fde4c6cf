"""Image ablations: swap images between samples, blank them, or remove them.

:class:`SwapImages` gives every sample another sample's image (a derangement by image
content, or the paper's rule by index), :class:`BlankImage` replaces every image by a grey
or noise image made in memory, and :class:`NoImage` asks the question text-only. Needs
Pillow and NumPy (for blank images), never torch.
"""

from __future__ import annotations

import functools
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from medvqa.ablations.transforms import (
    Transform,
    TransformError,
    _check_choice,
    _check_seed,
    _digest,
    _record,
    _rng,
    _show_ids,
)
from medvqa.records import ImageRef, MetadataValue, VQASample

__all__ = ["BlankImage", "BlankKind", "NoImage", "SwapFallback", "SwapImages", "SwapRule"]

SwapRule = Literal["content", "index"]
"""``content``: no sample keeps an image with the same content (ours). ``index``: the paper's rule."""

SwapFallback = Literal["error", "pool"]
"""What :class:`SwapImages` does with a ``within`` group that cannot be deranged on its own."""

BlankKind = Literal["constant", "noise"]
"""A constant grey image, or seeded uniform noise."""


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
