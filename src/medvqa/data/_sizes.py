"""Split sizes of the known releases, and the check that a load matches one of them.

A folder of another dataset in a shared layout (a Hugging Face ``imagefolder`` of PathVQA
read as VQA-RAD) loads without any format error; its size gives it away. Every dataset lists
the split sizes of the releases and copies it supports (:class:`KnownRelease`); a load whose
split size matches none of them gets a note, and :func:`~medvqa.data.load` with
``strict_size=True`` refuses it.

A folder that is a subset on purpose (the sample bundled with medvqa, a slice you made)
declares itself with a ``medvqa-subset.json`` file (:data:`SUBSET_FILE`), and is then noted as
a declared subset instead of being checked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvqa._errors import DataFormatError
from medvqa._io import read_json

__all__ = ["SUBSET_FILE", "KnownRelease", "declared_subset", "size_note"]

SUBSET_FILE = "medvqa-subset.json"
"""The file that declares a folder a subset of a release: ``{"subset_of": "<which release>"}``."""


@dataclass(frozen=True)
class KnownRelease:
    """The split sizes (rows) of one release or copy of a dataset.

    Attributes:
        label: How messages name it (``official``, ``Hugging Face``, ``MEVF split``).
        sizes: Split name -> number of rows; splits whose size is not known are absent.
        when: Loader options this release's sizes hold for (``{"language": "en"}``);
            options not given count at their default (see :func:`size_note`).
        source: Where the numbers come from (counted in the release, or a cited card).
    """

    label: str
    sizes: Mapping[str, int]
    when: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    def applies(self, options: Mapping[str, Any], defaults: Mapping[str, str]) -> bool:
        """Whether these sizes hold for a load with ``options``."""
        return all(str(options.get(k, defaults.get(k, ""))) == v for k, v in self.when.items())

    def describe(self, splits: Iterable[str]) -> str:
        """``official 1,797/451``: the sizes in split order, ``?`` where unknown."""
        return f"{self.label} " + "/".join(f"{self.sizes[s]:,}" if s in self.sizes else "?" for s in splits)


def declared_subset(source: Any) -> tuple[Path, str] | None:
    """The subset declaration next to ``source`` (its folder, or the folder of a file), if any.

    Returns:
        The declaration file and what it says the folder is a subset of.

    Raises:
        DataFormatError: The declaration is not a JSON object with a text ``subset_of``.
    """
    if not isinstance(source, str | os.PathLike):
        return None
    path = Path(source)
    folder = path if path.is_dir() else path.parent
    decl = folder / SUBSET_FILE
    if not decl.is_file():
        return None
    data = read_json(decl)
    of = data.get("subset_of") if isinstance(data, dict) else None
    if not isinstance(of, str) or not of.strip():
        raise DataFormatError(
            'expected a JSON object like {"subset_of": "VQA-RAD official release"}',
            file=str(decl),
            field="subset_of",
        )
    return decl, of.strip()


_ALIASES: Mapping[str, tuple[str, ...]] = {
    "vqa_rad": ("vqa_rad", "vqa-rad", "vqarad"),
    "slake": ("slake",),
    "path_vqa": ("path_vqa", "path-vqa", "pathvqa"),
    "roco": ("roco", "rocov2"),
    "med_halt": ("med_halt", "med-halt", "medhalt"),
}


def _named_in(source: Any) -> set[str]:
    """The datasets whose names appear as words in the path ``source``."""
    if not isinstance(source, str | os.PathLike):
        return set()
    text = os.fspath(source).lower()
    return {
        name
        for name, aliases in _ALIASES.items()
        if any(re.search(rf"(?<![a-z0-9]){re.escape(a)}(?![a-z0-9])", text) for a in aliases)
    }


@dataclass(frozen=True)
class SizeTable:
    """What :func:`size_note` needs to know about one dataset."""

    name: str
    title: str
    splits: tuple[str, ...]
    releases: tuple[KnownRelease, ...]
    defaults: Mapping[str, str] = field(default_factory=dict)


def size_note(
    table: SizeTable,
    *,
    split: str,
    rows: int,
    source: Any,
    options: Mapping[str, Any],
    others: Iterable[SizeTable] = (),
) -> tuple[str | None, bool]:
    """The note for a load of ``rows`` rows, and whether it is a mismatch.

    Returns ``(None, False)`` when the size is a known one or no release lists a size for
    this split; ``(note, False)`` for a declared subset; ``(note, True)`` for an unknown size.
    """
    subset = declared_subset(source)
    if subset is not None:
        return (
            f"{rows:,} rows: a declared subset ({subset[0].name}: {subset[1]}); split size not checked",
            False,
        )
    releases = [r for r in table.releases if r.applies(options, table.defaults)]
    known = [r.sizes[split] for r in releases if split in r.sizes]
    if not known or rows in known:
        return None, False
    described = ", ".join(r.describe(table.splits) for r in releases)
    note = f"{rows:,} rows: not a known {table.title} {split} split size ({described})"
    hints = []
    for other in others:
        if other.name == table.name:
            continue
        for r in other.releases:
            if r.sizes.get(split) == rows:
                hints.append(f"it is the size of the {other.title} {r.label} {split} split")
    named = _named_in(source) - {table.name}
    if named and table.name not in _named_in(source):
        titles = {o.name: o.title for o in others}
        hints.append("the path names " + " and ".join(titles.get(n, n) for n in sorted(named)))
    if hints:
        note += "; " + "; ".join(hints)
    return note, True
