"""The Hugging Face layouts every adapter accepts, read into plain rows.

Four layouts: a ``datasets.Dataset`` / ``DatasetDict`` object, a folder written by
``save_to_disk``, parquet files (one file, or a folder of ``<split>-*.parquet`` /
``<split>/*.parquet``), and an ``imagefolder`` folder (``metadata.jsonl`` or ``metadata.csv``
with a ``file_name`` column, optionally under ``<split>/``). ``imagefolder`` is read natively;
``datasets`` and ``pyarrow`` are imported only for the layouts that need them. Image columns are
read without decoding (``Image(decode=False)``): rows hold lazy :class:`~medvqa.records.ImageRef`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvqa._errors import DataFormatError, RowRef
from medvqa._io import read_jsonl
from medvqa.data._common import (
    SPLIT_ALIASES,
    ImageCheck,
    ImageIdentity,
    Occurrences,
    SplitNotFoundError,
    UniqueIds,
    annotated_answer_type,
    answer_type_of,
    content_id,
    read_csv_rows,
    scalar_metadata,
    split_of,
    text_field,
)
from medvqa.records import AnswerType, ImageRef, MetadataValue, Task, VQASample

__all__ = ["HFTable", "hf_vqa_samples", "is_hf_object", "looks_like_hf_folder", "read_hf"]

_METADATA_FILES = ("metadata.jsonl", "metadata.csv")


@dataclass
class HFTable:
    """Rows of one split read from a Hugging Face layout.

    Attributes:
        layout: ``datasets``, ``saved``, ``parquet`` or ``imagefolder``.
        file: How to name the source in error messages.
        columns: The column names.
        rows: One dict per row; the image column holds an ``ImageRef`` or ``None``.
        image_column: The column that held images, if any.
        lines: For line formats (``metadata.jsonl``/``metadata.csv``), the 1-based line of
            each row; empty for tables, whose rows are 0-based records.
    """

    layout: str
    file: str
    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    image_column: str | None = None
    lines: list[int] = field(default_factory=list)

    def where(self, index: int) -> RowRef:
        """Where row ``index`` sits in the source: ``line N`` (line formats) or ``record N``."""
        return RowRef.line(self.lines[index]) if self.lines else RowRef.record(index)

    def require_column(self, choices: Iterable[str], *, what: str) -> str:
        """The first of ``choices`` present as a column, else an error listing what exists."""
        options = tuple(choices)
        for name in options:
            if name in self.columns:
                return name
        raise DataFormatError(
            f"no {what} column: expected one of {', '.join(repr(c) for c in options)}, "
            f"found columns {', '.join(repr(c) for c in self.columns) or 'none'}",
            file=self.file,
            field=options[0],
        )


def is_hf_object(source: object) -> bool:
    """Whether ``source`` is a ``datasets.Dataset`` or ``DatasetDict`` (without importing datasets)."""
    return type(source).__module__.split(".")[0] == "datasets" and hasattr(source, "column_names")


def looks_like_hf_folder(path: Path) -> bool:
    """Whether ``path`` is a parquet file or a folder in one of the Hugging Face layouts."""
    if path.is_file():
        return path.suffix == ".parquet"
    if not path.is_dir():
        return False
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return True
    if any((path / m).is_file() for m in _METADATA_FILES):
        return True
    for sub in path.iterdir():
        if sub.is_dir() and any((sub / m).is_file() for m in _METADATA_FILES):
            return True
    return next(path.rglob("*.parquet"), None) is not None


def _image_ref(value: Any, *, base: Path | None, file: str, index: RowRef, column: str) -> ImageRef | None:
    """The image of one cell: encoded bytes, or a file path.

    Paths read from files on disk (``base`` set) must stay inside ``base`` as written: the
    reference carries ``base`` as its root, so ``..``, absolute and drive paths are refused
    (symbolic links, as in a Hugging Face cache snapshot, are followed). Paths in a
    ``datasets`` object in memory (``base`` is ``None``) are the library's own cache paths.
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        data = value.get("bytes")
        path = value.get("path")
        if data:
            return ImageRef(data=bytes(data), name=os.path.basename(path) if path else f"{column}[{index}]")
        value = path
        if value is None:
            raise DataFormatError("image has neither bytes nor path", file=file, row=index, field=column)
    if isinstance(value, str):
        if not value.strip():
            raise DataFormatError("empty image file name", file=file, row=index, field=column)
        if base is not None:
            return ImageRef(path=os.path.join(str(base), value), root=str(base), name=value)
        return ImageRef(path=value, name=os.path.basename(value))
    raise DataFormatError(
        f"image must be encoded bytes or a file path (read with decode=False), got {type(value).__name__}",
        file=file,
        row=index,
        field=column,
    )


def _from_columns(
    columns: Mapping[str, list[Any]],
    *,
    layout: str,
    file: str,
    image_column: str | None,
    base: Path | None,
) -> HFTable:
    names = list(columns)
    n = len(next(iter(columns.values()))) if columns else 0
    table = HFTable(layout=layout, file=file, columns=names, image_column=image_column)
    for i in range(n):
        row = {name: columns[name][i] for name in names}
        if image_column is not None:
            row[image_column] = _image_ref(
                row[image_column], base=base, file=file, index=RowRef.record(i), column=image_column
            )
        table.rows.append(row)
    return table


def _pick_split(available: Iterable[str], split: str, *, file: str) -> str:
    names = list(available)
    for name in names:
        if split_of(name) == split:
            return name
    raise SplitNotFoundError(
        f"{file}: no {split!r} split; splits present: {', '.join(names) or 'none'} "
        f"(names accepted for {split!r}: {', '.join(SPLIT_ALIASES[split])})"
    )


def _read_dataset_object(
    ds: Any, split: str, *, file: str, layout: str, image_columns: tuple[str, ...]
) -> HFTable:
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        ds = ds[_pick_split(ds.keys(), split, file=file)]
    elif getattr(ds, "split", None) is not None and split_of(str(ds.split)) not in (None, split):
        raise SplitNotFoundError(f"{file}: this dataset is the {str(ds.split)!r} split, not {split!r}")
    image_column = None
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Image):
            ds = ds.cast_column(name, datasets.Image(decode=False))
            image_column = image_column or name
    if image_column is None:
        image_column = next((c for c in image_columns if c in ds.column_names), None)
    columns = ds[:] if len(ds) else {c: [] for c in ds.column_names}
    return _from_columns(columns, layout=layout, file=file, image_column=image_column, base=None)


def _parquet_files(path: Path, split: str) -> tuple[list[Path], str]:
    if path.is_file():
        hinted = split_of(path.stem.split("-")[0])
        if hinted is not None and hinted != split:
            raise SplitNotFoundError(f"{path}: this parquet file holds the {hinted!r} split, not {split!r}")
        return [path], str(path)
    files = sorted(path.rglob("*.parquet"))
    by_split: dict[str, list[Path]] = {}
    for f in files:
        rel = f.relative_to(path)
        guess = None
        for part in (f.stem.split("-")[0], *rel.parts[:-1]):
            guess = split_of(part)
            if guess is not None:
                break
        by_split.setdefault(guess or f"(unnamed: {rel})", []).append(f)
    if split not in by_split:
        raise SplitNotFoundError(
            f"{path}: no parquet files for split {split!r}; found: {', '.join(sorted(by_split)) or 'none'} "
            f"(file or folder names accepted for {split!r}: {', '.join(SPLIT_ALIASES[split])})"
        )
    return by_split[split], str(path)


def _read_parquet(path: Path, split: str, image_columns: tuple[str, ...]) -> HFTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files, label = _parquet_files(path, split)
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f))
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataFormatError(f"not a readable parquet file: {exc}", file=str(f)) from exc
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    label = str(files[0]) if len(files) == 1 else label
    image_column = None
    for name in table.column_names:
        typ = table.schema.field(name).type
        if pa.types.is_struct(typ) and {typ.field(i).name for i in range(typ.num_fields)} >= {
            "bytes",
            "path",
        }:
            image_column = name
            break
    if image_column is None:
        image_column = next((c for c in image_columns if c in table.column_names), None)
    return _from_columns(
        table.to_pydict(), layout="parquet", file=label, image_column=image_column, base=files[0].parent
    )


def _imagefolder_dir(path: Path, split: str) -> Path:
    if any((path / m).is_file() for m in _METADATA_FILES):
        named = split_of(path.name)
        if named is not None and named != split:
            raise SplitNotFoundError(f"{path}: this imagefolder holds the {named!r} split, not {split!r}")
        if named is None and split != "train":
            raise SplitNotFoundError(
                f"{path}: an imagefolder without split sub-folders holds only the 'train' split, not {split!r}"
            )
        return path
    subs = [
        s.name
        for s in sorted(path.iterdir())
        if s.is_dir() and any((s / m).is_file() for m in _METADATA_FILES)
    ]
    return path / _pick_split(subs, split, file=str(path))


def _read_imagefolder(path: Path, split: str) -> HFTable:
    folder = _imagefolder_dir(path, split)
    located: list[tuple[RowRef, dict[str, Any]]]
    meta = folder / "metadata.jsonl"
    if meta.is_file():
        located = [(RowRef.line(n), obj) for n, obj in read_jsonl(meta)]
    else:
        meta = folder / "metadata.csv"
        located = list(read_csv_rows(meta)[1])
    columns: list[str] = []
    for _, row in located:
        columns.extend(k for k in row if k not in columns)
    table = HFTable(layout="imagefolder", file=str(meta), columns=columns, image_column="file_name")
    if located and "file_name" not in columns:
        table.require_column(("file_name",), what="image file name")
    for where, row in located:
        if "file_name" not in row:
            raise DataFormatError("missing required field", file=str(meta), row=where, field="file_name")
        row["file_name"] = _image_ref(
            row["file_name"], base=folder, file=str(meta), index=where, column="file_name"
        )
        table.rows.append(row)
        table.lines.append(where.number)
    return table


def read_hf(
    source: Any,
    split: str,
    *,
    image_columns: tuple[str, ...] = ("image", "file_name", "img_name", "image_path"),
) -> HFTable:
    """Read one split from any Hugging Face layout, images as lazy references.

    Args:
        source: A ``datasets.Dataset``/``DatasetDict``, or a path (saved dataset folder,
            parquet file or folder, imagefolder folder).
        split: The canonical split name.
        image_columns: Column names that hold image file names when no column has an
            image type.

    Raises:
        ValueError: The split is not there (the error lists the splits present).
        DataFormatError: A file is unreadable or a row is malformed.
    """
    if is_hf_object(source):
        return _read_dataset_object(
            source, split, file=f"<{type(source).__name__}>", layout="datasets", image_columns=image_columns
        )
    path = Path(source)
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        import datasets

        ds = datasets.load_from_disk(str(path))
        return _read_dataset_object(ds, split, file=str(path), layout="saved", image_columns=image_columns)
    if path.is_dir() and (
        any((path / m).is_file() for m in _METADATA_FILES)
        or any(s.is_dir() and any((s / m).is_file() for m in _METADATA_FILES) for s in path.iterdir())
    ):
        return _read_imagefolder(path, split)
    if path.suffix == ".parquet" or (path.is_dir() and next(path.rglob("*.parquet"), None) is not None):
        return _read_parquet(path, split, image_columns)
    raise DataFormatError(
        "not a Hugging Face layout: expected a datasets.Dataset/DatasetDict, a save_to_disk folder "
        "(dataset_dict.json or state.json), parquet files, or an imagefolder (metadata.jsonl/metadata.csv)",
        file=str(path),
    )


class _SampleIds:
    """Sample ids of a table's rows: ``<dataset>:<id column>``, or content ids without that column."""

    def __init__(
        self, table: HFTable, dataset: str, id_column: str | None, fixed_question: str | None
    ) -> None:
        self.table, self.dataset, self.id_column, self.fixed_question = (
            table,
            dataset,
            id_column,
            fixed_question,
        )
        self._identity = ImageIdentity()
        self._occurrences = Occurrences()
        self._ids = UniqueIds()

    def __call__(self, row: Mapping[str, Any], where: RowRef, ref: ImageRef | None, question: str) -> str:
        """The id of ``row`` (at ``where``, with image ``ref``); a repeated id column value is an error."""
        if self.id_column is not None:
            file = self.table.file
            sid = f"{self.dataset}:{text_field(row, self.id_column, file=file, index=where)}"
            self._ids.add(sid, file=file, row=where, field=self.id_column)
            return sid
        key = self._identity(ref)
        return content_id(
            self.dataset,
            key,
            question if self.fixed_question is None else "",
            self._occurrences.next(key, question),
        )


# Over 60 lines: its signature holds the column options every dataset sets; one row loop.
def hf_vqa_samples(
    table: HFTable,
    *,
    dataset: str,
    split: str,
    check: ImageCheck,
    question_columns: tuple[str, ...] = ("question",),
    answer_columns: tuple[str, ...] = ("answer",),
    id_column: str | None = None,
    type_column: str | None = None,
    task: Task = "vqa",
    fixed_question: str | None = None,
    keep: Any = None,
) -> list[VQASample]:
    """Turn the rows of a Hugging Face table into samples.

    Ids: ``<dataset>:<value of id_column>`` when the table has that column, otherwise
    content ids (:func:`~medvqa.data._common.content_id`) keyed on the image bytes, the
    question and the occurrence index, so they agree across the four layouts.

    Args:
        keep: Optional predicate on the raw row (for example a language filter).
    """
    q_col = None if fixed_question is not None else table.require_column(question_columns, what="question")
    a_col = table.require_column(answer_columns, what="answer" if task == "vqa" else "caption")
    if table.rows and table.image_column is None and task == "caption":
        table.require_column(("image",), what="image")
    has_types = type_column is not None and type_column in table.columns
    sample_id = _SampleIds(table, dataset, id_column if id_column in table.columns else None, fixed_question)
    used = {c for c in (q_col, a_col, table.image_column, id_column) if c}
    samples: list[VQASample] = []
    for i, row in enumerate(table.rows):
        if keep is not None and not keep(row):
            continue
        where = table.where(i)
        question = (
            fixed_question
            if fixed_question is not None
            else text_field(row, q_col or "", file=table.file, index=where)
        )
        answer = check.answer(row, a_col, file=table.file, index=where)
        if answer is None:
            continue
        ref = row.get(table.image_column) if table.image_column else None
        if not check.keep(ref, file=table.file, index=where, field=table.image_column or "image"):
            continue
        annotation: AnswerType | None = None
        if has_types and type_column is not None:
            annotation = annotated_answer_type(
                row[type_column], file=table.file, index=where, field=type_column
            )
        answer_type, source = answer_type_of(answer, annotation)
        sid = sample_id(row, where, ref, question)
        samples.append(
            VQASample(
                id=sid,
                question=question,
                answer=answer,
                answer_type=answer_type,
                answer_type_source=source,
                dataset=dataset,
                split=split,
                task=task,
                image=ref,
                metadata=_row_metadata(row, used, ref, table.layout),
            )
        )
    return samples


def _row_metadata(
    row: Mapping[str, Any], used: Iterable[str], ref: ImageRef | None, layout: str
) -> dict[str, MetadataValue]:
    """The row's scalar fields other than ``used`` ones, its image name and the layout."""
    meta = scalar_metadata(row, skip=used)
    if ref is not None and ref.name:
        meta.setdefault("image_name", ref.name)
    meta["layout"] = layout
    return meta
