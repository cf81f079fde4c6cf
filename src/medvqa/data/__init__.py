"""Dataset adapters: VQA-RAD, SLAKE, PathVQA, ROCO and Med-HALT as :class:`~medvqa.records.VQASample`.

Every dataset loads from its official release layout and from the Hugging Face layouts
(a ``datasets.Dataset``/``DatasetDict``, a ``save_to_disk`` folder, parquet files, an
``imagefolder``) through one entry point, :func:`load`. Building an index never decodes an
image; images open lazily, always as RGB. A split whose size matches no known release of its
dataset is noted in :attr:`VQADataset.notes` (``strict_size=True`` refuses it), so that another
dataset in a shared layout is not silently relabelled.

>>> from medvqa.data import load, sample_root
>>> ds = load("vqa_rad", sample_root() / "vqa_rad", split="train")
>>> ds[0].dataset, ds[0].answer_type_source
('vqa_rad', 'annotation')
"""

from __future__ import annotations

from medvqa.data._audit import BREAKDOWN_FIELDS, AuditReport, SplitSummary, audit, format_report, summarize
from medvqa.data._common import (
    SPLITS,
    OnEmptyAnswer,
    OnMissingImage,
    SkippedRow,
    Split,
    SplitNotFoundError,
    content_id,
)
from medvqa.data._dataset import VQADataset
from medvqa.data._med_halt import abstain_option, options_from_metadata, parse_options
from medvqa.data._registry import DATASETS, DatasetName, DatasetSpec, load
from medvqa.data._roco import STAGE1_INSTRUCTION
from medvqa.data._sample import SAMPLE_FOLDERS, image_pool, nested_subset, pair_with_images, sample_root
from medvqa.data._sizes import SUBSET_FILE, KnownRelease

__all__ = [
    "BREAKDOWN_FIELDS",
    "DATASETS",
    "SAMPLE_FOLDERS",
    "SPLITS",
    "STAGE1_INSTRUCTION",
    "SUBSET_FILE",
    "AuditReport",
    "DatasetName",
    "DatasetSpec",
    "KnownRelease",
    "OnEmptyAnswer",
    "OnMissingImage",
    "SkippedRow",
    "Split",
    "SplitNotFoundError",
    "SplitSummary",
    "VQADataset",
    "abstain_option",
    "audit",
    "content_id",
    "format_report",
    "image_pool",
    "load",
    "nested_subset",
    "options_from_metadata",
    "pair_with_images",
    "parse_options",
    "sample_root",
    "summarize",
]
