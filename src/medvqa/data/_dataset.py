"""``VQADataset``: the indexed rows of one split of one dataset."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, overload

from medvqa.data._common import SkippedRow
from medvqa.records import VQASample

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["VQADataset"]


class VQADataset(Sequence[VQASample]):
    """The samples of one split of one dataset, in release order.

    Building a dataset reads annotation files and checks that image files exist; it never
    decodes an image. Rows left out because the caller asked for it
    (``on_missing_image="skip"``) are counted in :attr:`skipped` and listed in
    :attr:`skipped_rows`.

    Args:
        samples: The samples.
        name: The dataset name (``vqa_rad``, ``slake``, ...).
        split: The split name.
        layout: Which release layout the rows came from (``official``, ``mevf``,
            ``parquet``, ``imagefolder``, ...).
        source: Where they came from (a path, or a description of an in-memory object).
        skipped_rows: Rows left out on request.
        notes: Anything a reader of a summary should know about this load.

    >>> from medvqa.records import VQASample
    >>> s = VQASample(id="x:1", question="Is it normal?", answer="yes", answer_type="closed",
    ...               answer_type_source="inferred", dataset="x", split="test")
    >>> ds = VQADataset([s], name="x", split="test")
    >>> len(ds), ds[0].id, ds.skipped
    (1, 'x:1', 0)
    """

    def __init__(
        self,
        samples: Iterable[VQASample],
        *,
        name: str,
        split: str,
        layout: str = "",
        source: str = "",
        skipped_rows: Iterable[SkippedRow] = (),
        notes: Iterable[str] = (),
    ) -> None:
        self._samples: tuple[VQASample, ...] = tuple(samples)
        self.name = name
        self.split = split
        self.layout = layout
        self.source = source
        self.skipped_rows: tuple[SkippedRow, ...] = tuple(skipped_rows)
        self.notes: tuple[str, ...] = tuple(notes)
        seen: dict[str, int] = {}
        for i, s in enumerate(self._samples):
            if s.id in seen:
                raise ValueError(
                    f"{name}/{split}: duplicate sample id {s.id!r} at positions {seen[s.id]} and {i}"
                )
            seen[s.id] = i
        self._index = seen

    @property
    def skipped(self) -> int:
        """How many release rows were left out on request (see :attr:`skipped_rows`)."""
        return len(self.skipped_rows)

    def __len__(self) -> int:
        return len(self._samples)

    @overload
    def __getitem__(self, index: int) -> VQASample: ...

    @overload
    def __getitem__(self, index: slice) -> VQADataset: ...

    def __getitem__(self, index: int | slice) -> VQASample | VQADataset:
        """One sample, or a slice as a dataset of the same name, split, layout and source.

        A slice keeps the load's skipped rows and notes and adds a note saying which rows it
        holds, so that a summary of ``test[:40]`` cannot pass for the whole split.

        >>> from medvqa.data import load, sample_root
        >>> test = load("vqa_rad", sample_root() / "vqa_rad", split="test")
        >>> head = test[:3]
        >>> type(head).__name__, head.name, head.split, len(head), head.notes[-1]
        ('VQADataset', 'vqa_rad', 'test', 3, 'rows [0:3] of 29 (a slice of the split)')
        """
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self._samples))
            where = f"[{start}:{stop}]" if step == 1 else f"[{start}:{stop}:{step}]"
            return VQADataset(
                self._samples[index],
                name=self.name,
                split=self.split,
                layout=self.layout,
                source=self.source,
                skipped_rows=self.skipped_rows,
                notes=(*self.notes, f"rows {where} of {len(self._samples)} (a slice of the split)"),
            )
        return self._samples[index]

    def __iter__(self) -> Iterator[VQASample]:
        return iter(self._samples)

    def __repr__(self) -> str:
        return (
            f"VQADataset(name={self.name!r}, split={self.split!r}, layout={self.layout!r}, "
            f"rows={len(self)}, skipped={self.skipped})"
        )

    def by_id(self, sample_id: str) -> VQASample:
        """The sample with this id.

        Raises:
            KeyError: No sample has this id.
        """
        try:
            return self._samples[self._index[sample_id]]
        except KeyError:
            raise KeyError(f"{self.name}/{self.split}: no sample with id {sample_id!r}") from None

    def ids(self) -> list[str]:
        """The sample ids, in order."""
        return [s.id for s in self._samples]

    def to_list(self) -> list[VQASample]:
        """The samples as a plain list."""
        return list(self._samples)

    def iter_images(self) -> Iterator[tuple[VQASample, Image.Image | None]]:
        """Yield each sample with its decoded RGB image (``None`` for text-only samples).

        Raises:
            ImageLoadError: An image is missing, corrupt, too large or outside its root.
        """
        for s in self._samples:
            yield s, (None if s.image is None else s.image.open())
