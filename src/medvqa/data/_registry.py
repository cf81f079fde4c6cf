"""The dataset registry: ``load(name, source, split=..., **options)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from medvqa.data._common import SPLITS
from medvqa.data._dataset import VQADataset
from medvqa.data._med_halt import load_med_halt
from medvqa.data._path_vqa import load_path_vqa
from medvqa.data._roco import load_roco
from medvqa.data._slake import load_slake
from medvqa.data._vqa_rad import load_vqa_rad

__all__ = ["DATASETS", "DatasetName", "DatasetSpec", "load"]

DatasetName = Literal["vqa_rad", "slake", "path_vqa", "roco", "med_halt"]
"""The names :func:`load` accepts."""


@dataclass(frozen=True)
class DatasetSpec:
    """What the registry knows about one dataset.

    Attributes:
        name: The registry name.
        title: A human-readable title with its reference.
        splits: The splits its releases have.
        layouts: The layouts its loader reads.
        options: Option name -> what it does (the loader's keyword arguments).
        loader: The function :func:`load` calls.
    """

    name: str
    title: str
    splits: tuple[str, ...]
    layouts: tuple[str, ...]
    options: Mapping[str, str]
    loader: Callable[..., VQADataset]

    def option_names(self) -> tuple[str, ...]:
        """The option names, in the loader's order."""
        return tuple(self.options)


_COMMON = {
    "on_missing_image": "'error' (default) or 'skip': rows whose image file is missing are skipped and counted",
    "on_empty_answer": "'error' (default) or 'skip': rows with an empty answer are skipped and counted",
}
_HF = "hf (a datasets.Dataset/DatasetDict, a save_to_disk folder, parquet, or an imagefolder)"

DATASETS: Mapping[str, DatasetSpec] = MappingProxyType(
    {
        "vqa_rad": DatasetSpec(
            "vqa_rad",
            "VQA-RAD (Lau et al. 2018)",
            ("train", "test"),
            ("official", "mevf", _HF),
            {
                "layout": "'auto' (default), 'official', 'mevf' (the MEVF community split) or 'hf'",
                **_COMMON,
                "image_dir": "folder of the images (default: 'VQA_RAD Image Folder' next to the official JSON)",
                "official": "the official JSON the MEVF split is joined to (default: found next to it)",
            },
            load_vqa_rad,
        ),
        "slake": DatasetSpec(
            "slake",
            "SLAKE 1.0 (Liu et al. 2021)",
            SPLITS,
            ("official", _HF),
            {
                "language": "'en' (default), 'zh' or 'both'",
                "layout": "'auto' (default), 'official' or 'hf'",
                **_COMMON,
                "image_dir": "folder of the images (default: imgs/ next to the JSON files)",
            },
            load_slake,
        ),
        "path_vqa": DatasetSpec(
            "path_vqa",
            "PathVQA (He et al. 2020)",
            SPLITS,
            ("official", _HF),
            {
                "layout": "'auto' (default), 'official' or 'hf'",
                **_COMMON,
                "image_dir": "folder holding train/ val/ test/ image folders (default: images/ beside the QA files)",
            },
            load_path_vqa,
        ),
        "roco": DatasetSpec(
            "roco",
            "ROCO (Pelka et al. 2018)",
            SPLITS,
            ("official", "instruct", _HF),
            {
                "layout": "'auto' (default), 'official', 'instruct' (roco-instruct JSON/JSONL) or 'hf'",
                "subset": "'radiology' (default) or 'non-radiology'",
                **_COMMON,
                "image_dir": "folder of the images of a roco-instruct file (default: images/ beside it)",
            },
            load_roco,
        ),
        "med_halt": DatasetSpec(
            "med_halt",
            "Med-HALT reasoning_fake (Pal et al. 2023)",
            SPLITS,
            ("official",),
            {"on_empty_answer": _COMMON["on_empty_answer"]},
            load_med_halt,
        ),
    }
)


def load(name: str, source: Any, *, split: str = "train", **options: Any) -> VQADataset:
    """Load one split of a dataset from its official release or a Hugging Face layout.

    Args:
        name: ``vqa_rad``, ``slake``, ``path_vqa``, ``roco`` or ``med_halt``.
        source: A path (release folder or file) or a ``datasets.Dataset``/``DatasetDict``.
        split: ``train``, ``validation`` or ``test`` (those the dataset has).
        **options: Dataset options (see :data:`DATASETS` or ``medvqa data summary --help``).

    Returns:
        The :class:`VQADataset` of that split. Images are not decoded.

    Raises:
        ValueError: Unknown name, split or option (the message lists the valid ones).
        DataFormatError: A file, row or field is malformed (names file, row and field).

    >>> from medvqa.data import load, sample_root
    >>> ds = load("vqa_rad", sample_root() / "vqa_rad", split="test")
    >>> ds.name, ds.split, len(ds) > 0, ds.skipped
    ('vqa_rad', 'test', True, 0)
    >>> load("vqa_rad", sample_root() / "vqa_rad", split="validation")
    Traceback (most recent call last):
    ...
    ValueError: unknown split 'validation' for dataset 'vqa_rad'; valid splits: train, test
    """
    spec = DATASETS.get(name)
    if spec is None:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if split not in spec.splits:
        raise ValueError(
            f"unknown split {split!r} for dataset {name!r}; valid splits: {', '.join(spec.splits)}"
        )
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(repr(u) for u in unknown)} for dataset {name!r}; valid options: "
            + "; ".join(f"{k}: {v}" for k, v in spec.options.items())
        )
    return spec.loader(source, split=split, **options)
