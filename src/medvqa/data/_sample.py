"""The small real sample bundled with the package, and deterministic subsets and pairings."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from medvqa.records import ImageRef, VQASample

__all__ = ["SAMPLE_FOLDERS", "image_pool", "nested_subset", "pair_with_images", "sample_root"]

SAMPLE_FOLDERS: Mapping[str, str] = MappingProxyType(
    {"vqa_rad": "vqa_rad", "slake": "slake", "roco": "captions", "med_halt": "med_halt"}
)
"""Dataset name -> its folder under :func:`sample_root` (PathVQA has no bundled sample: its
images may not be redistributed). Every command and stage that falls back on the bundled
sample reads this mapping."""


def sample_root() -> Path:
    """The folder of the bundled sample, with one sub-folder per dataset in its release layout.

    ``vqa_rad/`` (VQA-RAD official, CC0), ``slake/`` (SLAKE English subset, CC BY 4.0),
    ``med_halt/reasoning_fake.csv`` (Apache-2.0) and ``captions/`` (ROCO release layout built from
    CC0 VQA-RAD images; see ``LICENSES.md``).

    >>> sorted(p.name for p in sample_root().iterdir() if p.is_dir())
    ['captions', 'med_halt', 'slake', 'vqa_rad']
    """
    return Path(__file__).resolve().parent.parent / "_sample"


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\x1f{key}".encode()).hexdigest()


def nested_subset(samples: Sequence[VQASample], size: int, *, seed: int) -> list[VQASample]:
    """A deterministic subset of ``size`` samples; smaller subsets lie inside larger ones.

    Samples are ranked by a hash of ``(seed, id)`` and the first ``size`` are kept, in their
    original order. With the same seed, the 7K subset is inside the 20K one, inside the 55K one,
    whatever the input order.

    Raises:
        ValueError: ``size`` is negative or larger than the number of samples.

    >>> from medvqa.records import VQASample
    >>> pool = [VQASample(id=f"r:{i}", question="q", answer="a", answer_type="open",
    ...                   answer_type_source="inferred", dataset="r", split="train") for i in range(10)]
    >>> small, big = nested_subset(pool, 3, seed=0), nested_subset(pool, 6, seed=0)
    >>> {s.id for s in small} <= {s.id for s in big}
    True
    """
    if not isinstance(size, int) or size < 0 or size > len(samples):
        raise ValueError(
            f"size must be an integer between 0 and {len(samples)} (the number of samples), got {size!r}"
        )
    ranked = sorted(range(len(samples)), key=lambda i: (_rank(seed, samples[i].id), samples[i].id))
    keep = set(ranked[:size])
    return [s for i, s in enumerate(samples) if i in keep]


def image_pool(pool: Iterable[ImageRef | VQASample], *, who: str = "image pool") -> tuple[ImageRef, ...]:
    """The distinct images of ``pool``, in an order that does not depend on the pool's order.

    The one rule for pooling images (used by :func:`pair_with_images` and the nonsense-question
    probes): a file image is the same image as another when both point to the same file
    (``root`` joined with ``path``), whatever their names; an in-memory image is the same as
    another when their bytes are equal. Several questions usually share one image, so each
    image counts once, and the first reference met is kept. Samples without an image add
    nothing. The result is sorted by that identity (the path, or ``data:`` and the SHA-256
    of the bytes), so two pools holding the same images give the same tuple.

    Args:
        pool: Images, or samples whose images are used.
        who: Who asks, for error messages.

    Raises:
        TypeError: An item is neither an :class:`ImageRef` nor a :class:`VQASample`.

    >>> a, b = ImageRef(path="b.png", root="/d", name="B"), ImageRef(path="a.png", root="/d")
    >>> [r.path for r in image_pool([a, b, ImageRef(path="b.png", root="/d", name="other")])]
    ['a.png', 'b.png']
    """
    refs: dict[str, ImageRef] = {}
    for index, item in enumerate(pool):
        ref = item.image if isinstance(item, VQASample) else item
        if ref is None and isinstance(item, VQASample):
            continue
        if not isinstance(ref, ImageRef):
            raise TypeError(
                f"{who}: pool item {index} is a {type(item).__name__}, expected an ImageRef or VQASample"
            )
        refs.setdefault(_identity(ref), ref)
    return tuple(refs[k] for k in sorted(refs))


def _identity(ref: ImageRef) -> str:
    if ref.path is not None:
        return ref.path if ref.root is None else os.path.join(ref.root, ref.path)
    return "data:" + hashlib.sha256(ref.data or b"").hexdigest()


def pair_with_images(
    samples: Sequence[VQASample], pool: Sequence[ImageRef] | Sequence[VQASample], *, seed: int
) -> list[VQASample]:
    """Give each sample an image drawn from ``pool`` (for the visual nonsense-question probe).

    The choice for each sample depends only on ``seed``, its id and the set of pool images
    (duplicates and order do not matter; see :func:`image_pool` for when two references are
    the same image). Each returned sample records the pairing in
    ``metadata["paired_image"]`` and ``metadata["pairing"]``.

    Raises:
        ValueError: The pool has no image.

    >>> from medvqa.records import ImageRef, VQASample
    >>> q = VQASample(id="m:1", question="Which unicorn?", answer="I do not know", answer_type="open",
    ...               answer_type_source="inferred", dataset="med_halt", split="train")
    >>> [p] = pair_with_images([q], [ImageRef(path="/img/a.jpg"), ImageRef(path="/img/b.jpg")], seed=0)
    >>> p.image is not None, p.metadata["pairing"]
    (True, 'random_image(seed=0)')
    """
    refs = image_pool(pool, who="pair_with_images")
    if not refs:
        raise ValueError("pair_with_images needs a pool with at least one image")
    out = []
    for s in samples:
        ref = refs[int(_rank(seed, s.id), 16) % len(refs)]
        out.append(
            s.replace(
                image=ref,
                metadata={**s.metadata, "paired_image": ref.label, "pairing": f"random_image(seed={seed})"},
            )
        )
    return out
