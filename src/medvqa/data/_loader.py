"""The steps every dataset loader shares: checking its options, and building its dataset."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvqa.data._common import SPLITS, ImageCheck, check_choice, check_split
from medvqa.data._dataset import VQADataset
from medvqa.data._hf import is_hf_object
from medvqa.records import VQASample


@dataclass(frozen=True)
class LoadRun:
    """One call of a dataset loader, its options checked.

    Attributes:
        dataset: The dataset name.
        split: The split asked for.
        check: The skip policies (and the rows they skipped).
        path: The source as a path; ``None`` for a Hugging Face ``datasets`` object.
    """

    dataset: str
    split: str
    check: ImageCheck
    path: Path | None

    def result(
        self, samples: Iterable[VQASample], *, layout: str, source: str, notes: Iterable[str] = ()
    ) -> VQADataset:
        """The loaded dataset, with the rows the skip policies left out."""
        return VQADataset(
            samples,
            name=self.dataset,
            split=self.split,
            layout=layout,
            source=source,
            skipped_rows=self.check.skipped,
            notes=notes,
        )


def start_load(
    source: Any,
    dataset: str,
    split: str,
    on_missing_image: str,
    on_empty_answer: str,
    choices: Mapping[str, tuple[object, Iterable[str]]],
    *,
    splits: Iterable[str] = SPLITS,
) -> LoadRun:
    """Check a loader's options, in order: the split, each of ``choices`` (option name ->
    ``(value, valid values)``) in the order given, then the skip policies."""
    check_split(split, dataset=dataset, valid=splits)
    for option, (value, valid) in choices.items():
        check_choice(value, valid, option=option, dataset=dataset)
    check = ImageCheck(on_missing_image, dataset=dataset, on_empty_answer=on_empty_answer)
    return LoadRun(dataset, split, check, None if is_hf_object(source) else Path(source))
