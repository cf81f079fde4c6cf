"""The dataset registry: ``load(name, source, split=..., **options)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from medvqa._errors import DataFormatError
from medvqa.data import _med_halt, _path_vqa, _roco, _slake, _vqa_rad
from medvqa.data._common import SPLITS
from medvqa.data._dataset import VQADataset
from medvqa.data._med_halt import load_med_halt
from medvqa.data._path_vqa import load_path_vqa
from medvqa.data._roco import load_roco
from medvqa.data._sizes import SUBSET_FILE, KnownRelease, SizeTable, size_note
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
        known_sizes: The split sizes of the releases and copies the loader reads; a load
            whose split size matches none of them is noted (see :func:`load`).
        option_defaults: The defaults of options that select among ``known_sizes``
            (``language`` for SLAKE, ``subset`` for ROCO).
    """

    name: str
    title: str
    splits: tuple[str, ...]
    layouts: tuple[str, ...]
    options: Mapping[str, str]
    loader: Callable[..., VQADataset]
    known_sizes: tuple[KnownRelease, ...] = ()
    option_defaults: Mapping[str, str] = field(default_factory=dict)

    @property
    def short_title(self) -> str:
        """The title without its reference: ``VQA-RAD``."""
        return self.title.split(" (")[0]

    def option_names(self) -> tuple[str, ...]:
        """The option names, in the loader's order."""
        return tuple(self.options)

    def size_table(self) -> SizeTable:
        """The known sizes in the form the size check reads."""
        return SizeTable(self.name, self.short_title, self.splits, self.known_sizes, self.option_defaults)


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
            _vqa_rad.KNOWN_SIZES,
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
            _slake.KNOWN_SIZES,
            {"language": "en"},
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
            _path_vqa.KNOWN_SIZES,
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
            _roco.KNOWN_SIZES,
            {"subset": "radiology"},
        ),
        "med_halt": DatasetSpec(
            "med_halt",
            "Med-HALT reasoning_fake (Pal et al. 2023)",
            SPLITS,
            ("official",),
            {"on_empty_answer": _COMMON["on_empty_answer"]},
            load_med_halt,
            _med_halt.KNOWN_SIZES,
        ),
    }
)


# Over 60 lines: half of it is the public docstring with its doctest.
def load(name: str, source: Any, *, split: str = "train", **options: Any) -> VQADataset:
    """Load one split of a dataset from its official release or a Hugging Face layout.

    Every dataset knows the split sizes of the releases and copies it reads
    (:attr:`DatasetSpec.known_sizes`). When the rows of the split (kept plus skipped on
    request) match none of them, the dataset's :attr:`~VQADataset.notes` say so, for example
    ``3,998 rows: not a known VQA-RAD train split size (official 1,797/451, ...)``: another
    dataset in a shared layout, a partial download or a subset. A folder holding a
    ``medvqa-subset.json`` file (``{"subset_of": "..."}``, as the bundled sample does) is a
    declared subset: it is noted as one and not checked.

    Args:
        name: ``vqa_rad``, ``slake``, ``path_vqa``, ``roco`` or ``med_halt``.
        source: A path (release folder or file) or a ``datasets.Dataset``/``DatasetDict``.
        split: ``train``, ``validation`` or ``test`` (those the dataset has).
        **options: Dataset options (see :data:`DATASETS` or ``medvqa data summary --help``),
            and, for every dataset, ``strict_size=True``: refuse a split whose size matches no
            known release (a declared subset is still accepted).

    Returns:
        The :class:`VQADataset` of that split. Images are not decoded.

    Raises:
        ValueError: Unknown name, split or option (the message lists the valid ones).
        DataFormatError: A file, row or field is malformed (names file, row and field), or
            ``strict_size`` is set and the split size is not a known one.

    >>> from medvqa.data import load, sample_root
    >>> ds = load("vqa_rad", sample_root() / "vqa_rad", split="test")
    >>> ds.name, ds.split, len(ds) > 0, ds.skipped
    ('vqa_rad', 'test', True, 0)
    >>> ds.notes
    ('29 rows: a declared subset (medvqa-subset.json: the VQA-RAD official release); split size not checked',)
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
    strict_size = bool(options.pop("strict_size", False))
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(repr(u) for u in unknown)} for dataset {name!r}; valid options: "
            + "; ".join(f"{k}: {v}" for k, v in spec.options.items())
            + "; strict_size: True refuses a split size that matches no known release"
        )
    dataset = spec.loader(source, split=split, **options)
    note, mismatch = size_note(
        spec.size_table(),
        split=split,
        rows=len(dataset) + dataset.skipped,
        source=source,
        options=options,
        others=[s.size_table() for s in DATASETS.values()],
    )
    if note is not None:
        if mismatch and strict_size:
            raise DataFormatError(
                f"{note} (strict_size: refusing it; if it is a subset on purpose, declare it with a "
                f"{SUBSET_FILE} file in its folder)",
                file=dataset.source or str(source),
            )
        dataset.notes = (*dataset.notes, note)
    return dataset
