"""The transform registry: every transform by name, and the names ``medvqa ablate`` takes.

:data:`TRANSFORM_TYPES` lists the transform classes by their :attr:`Transform.name` (what
:meth:`Transform.to_dict` writes as ``type``); :data:`TRANSFORM_NAMES` the short names that
:func:`parse_transforms` understands. Both are derived from the registries below, so adding
a transform here adds it everywhere.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from medvqa.ablations.images import BlankImage, NoImage, SwapImages
from medvqa.ablations.nonsense import NonsenseQuestions
from medvqa.ablations.prompts import MedEvalKitPrompt, PromptVariant
from medvqa.ablations.transforms import Compose, Transform
from medvqa.records import ImageRef

__all__ = ["TRANSFORM_NAMES", "TRANSFORM_TYPES", "parse_transforms", "transform_from_dict"]

_TYPES: dict[str, type[Transform]] = {
    cls.name: cls
    for cls in (Compose, SwapImages, BlankImage, NoImage, PromptVariant, MedEvalKitPrompt, NonsenseQuestions)
}

TRANSFORM_TYPES: tuple[str, ...] = tuple(_TYPES)
"""The ``type`` names that :func:`transform_from_dict` rebuilds (``swap_images``, ``blank_image``, ...)."""


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
