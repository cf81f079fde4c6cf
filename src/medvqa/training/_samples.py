"""The samples of a stage: loading, subsetting, the held-out split and the images that fail to decode.

Light: :mod:`medvqa.data` does the reading; nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medvqa._errors import MedVQAError
from medvqa.data._sample import SAMPLE_FOLDERS
from medvqa.records import VQASample
from medvqa.training._config import StageConfig

_BUNDLED = SAMPLE_FOLDERS


def _data_source(config: StageConfig, split_dataset: str) -> Path:
    if config.data_dir is not None:
        return Path(config.data_dir)
    from medvqa.data import sample_root

    sub = _BUNDLED.get(split_dataset)
    if sub is None:
        raise MedVQAError(
            f"stage {config.name!r}: dataset {split_dataset!r} has no sample bundled with the package; "
            f"set data_dir to its folder (bundled: {', '.join(sorted(_BUNDLED))})"
        )
    return Path(sample_root()) / sub


def load_stage_samples(
    config: StageConfig, *, split: str | None = None, size: int | None = None
) -> list[VQASample]:
    """Load a stage's training samples (or, with ``split``/``size``, its validation samples).

    Uses :func:`medvqa.data.load` on ``config.data_dir`` (the bundled sample when ``None``),
    then :func:`medvqa.data.nested_subset` when a size is set. Rows skipped by the loader
    (only when ``data_options`` asks for skipping) are counted in the stage result.

    Raises:
        MedVQAError: The size is larger than the split, or the split is empty.
    """
    return _load_samples(config, split=split, size=size)[0]


def _load_samples(
    config: StageConfig, *, split: str | None = None, size: int | None = None
) -> tuple[list[VQASample], int]:
    from medvqa.data import load, nested_subset

    which = config.split if split is None else split
    want = config.subset_size if split is None else size
    data = load(
        config.dataset, _data_source(config, config.dataset), split=which, **dict(config.data_options)
    )
    samples = list(data)
    if not samples:
        raise MedVQAError(
            f"stage {config.name!r}: {config.dataset} split {which!r} in {_data_source(config, config.dataset)} "
            "has no samples"
        )
    if want is not None and split is not None:
        want = min(want, len(samples))  # eval_size is an upper bound
    if want is not None:
        if want > len(samples):
            raise MedVQAError(
                f"stage {config.name!r}: asked for {want} samples but {config.dataset} split {which!r} has "
                f"only {len(samples)}; lower subset_size/eval_size or add data"
            )
        samples = list(nested_subset(samples, want, seed=config.subset_seed))
    return samples, int(data.skipped)


def holdout_split(
    samples: Sequence[VQASample], fraction: float, *, seed: int
) -> tuple[list[VQASample], list[VQASample]]:
    """Split samples into (train, held-out) by image: every question about one image lands on one side.

    An image is held out when a hash of ``(seed, image name)`` falls in the lowest
    ``fraction`` of the hash range; samples without image are keyed on their id. Order is kept.

    >>> from medvqa.records import ImageRef, VQASample
    >>> pool = [VQASample(id=f"q{i}", question="q", answer="a", answer_type="open",
    ...                   answer_type_source="inferred", dataset="d", split="train",
    ...                   image=ImageRef(path=f"img{i // 2}.jpg")) for i in range(40)]
    >>> train, held = holdout_split(pool, 0.25, seed=0)
    >>> len(train) + len(held) == 40 and {s.image.path for s in train}.isdisjoint({s.image.path for s in held})
    True
    """
    import hashlib

    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    limit = int(fraction * 2**64)
    train: list[VQASample] = []
    held: list[VQASample] = []
    for s in samples:
        key = s.image.label if s.image is not None else f"id:{s.id}"
        h = int.from_bytes(hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()[:8], "big")
        (held if h < limit else train).append(s)
    return train, held


def drop_bad_images(
    samples: Sequence[VQASample], *, what: str = "training"
) -> tuple[list[VQASample], list[dict[str, Any]]]:
    """Decode every sample's image once; return the samples whose image decodes, and the others.

    Each left-out sample is described by ``id``, ``image`` and ``error``.

    Raises:
        MedVQAError: No sample is left.
    """
    from medvqa._errors import ImageLoadError

    keep: list[VQASample] = []
    bad: list[dict[str, Any]] = []
    for s in samples:
        if s.image is not None:
            try:
                s.image.open()
            except ImageLoadError as exc:
                bad.append({"id": s.id, "image": s.image.label, "error": str(exc)})
                continue
        keep.append(s)
    if samples and not keep:
        raise MedVQAError(f"no {what} sample has a readable image (first error: {bad[0]['error']})")
    return keep, bad


class _SampleDataset:
    """A map-style dataset over a list of samples (the collator does all the work)."""

    def __init__(self, samples: Sequence[VQASample]) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> VQASample:
        return self.samples[index]


def stage_samples(
    config: StageConfig,
    train_samples: Sequence[VQASample] | None,
    eval_samples: Sequence[VQASample] | None,
) -> tuple[Sequence[VQASample], Sequence[VQASample] | None, int]:
    """The training and validation samples of a stage, and the rows the data loader skipped.

    Given samples are subset to ``config.subset_size``; missing ones are loaded from the
    config. Validation comes from ``eval_samples``, else a held-out share of the training
    images (``holdout_fraction``), else ``eval_split``.

    Raises:
        MedVQAError: Too few samples for the subset, nothing held out, or no training sample.
    """
    from medvqa.data import nested_subset

    skipped = 0
    if train_samples is None:
        train_samples, skipped = _load_samples(config)
    elif config.subset_size is not None:
        if config.subset_size > len(train_samples):
            raise MedVQAError(
                f"stage {config.name!r}: subset_size={config.subset_size} but only {len(train_samples)} samples given"
            )
        train_samples = list(nested_subset(list(train_samples), config.subset_size, seed=config.subset_seed))
    if config.holdout_fraction > 0 and eval_samples is None:
        train_samples, eval_samples = holdout_split(
            train_samples, config.holdout_fraction, seed=config.subset_seed
        )
        if not eval_samples:
            raise MedVQAError(
                f"stage {config.name!r}: holdout_fraction={config.holdout_fraction} held out no image of "
                f"{len(train_samples)} samples; raise it or use eval_split"
            )
        if config.eval_size is not None and config.eval_size < len(eval_samples):
            eval_samples = nested_subset(eval_samples, config.eval_size, seed=config.subset_seed)
    if len(train_samples) == 0:
        raise MedVQAError(f"stage {config.name!r}: no training samples")
    if eval_samples is None and config.eval_split is not None:
        eval_samples = load_stage_samples(config, split=config.eval_split, size=config.eval_size)
    return train_samples, eval_samples, skipped


def readable_samples(
    config: StageConfig,
    train_samples: Sequence[VQASample],
    eval_samples: Sequence[VQASample] | None,
    *,
    on_bad_image: str,
    listed_in: Path,
    warn: bool,
) -> tuple[Sequence[VQASample], Sequence[VQASample] | None, list[dict[str, Any]]]:
    """Apply ``on_bad_image``: ``error`` keeps every sample; ``skip`` leaves out undecodable images.

    The left-out samples are returned (to be listed in ``listed_in``) and, with ``warn``,
    announced in one warning.

    Raises:
        ValueError: ``on_bad_image`` is neither ``error`` nor ``skip``.
    """
    if on_bad_image == "error":
        return train_samples, eval_samples, []
    if on_bad_image != "skip":
        raise ValueError(f"on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")
    train_samples, bad = drop_bad_images(train_samples)
    if eval_samples:
        eval_samples, bad_eval = drop_bad_images(eval_samples, what="validation")
        bad += bad_eval
    if bad and warn:
        import warnings

        warnings.warn(
            f"stage {config.name!r}: left out {len(bad)} samples whose image cannot be decoded "
            f"({', '.join(repr(b['id']) for b in bad[:5])}{', ...' if len(bad) > 5 else ''}); "
            f"listed in {listed_in}",
            stacklevel=4,
        )
    return train_samples, eval_samples, bad
