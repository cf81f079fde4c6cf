"""The records every part of medvqa passes around: samples, image references, predictions.

This module is part of the light core: it needs only the standard library and Pillow.

>>> s = VQASample(id="demo:test:1", question="Is there a fracture?", answer="No",
...               answer_type=infer_answer_type("No"), answer_type_source="inferred",
...               dataset="demo", split="test")
>>> s.answer_type, s.task
('closed', 'vqa')
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import numbers
import os
import posixpath
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, get_args

from medvqa._errors import DataFormatError, ImageLoadError, RowRef

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "AnswerType",
    "AnswerTypeSource",
    "ImageRef",
    "MetadataValue",
    "Prediction",
    "Task",
    "VQASample",
    "infer_answer_type",
    "open_rgb",
]

AnswerType = Literal["closed", "open"]
"""Closed questions have a yes/no answer; open questions have a free-form one."""

AnswerTypeSource = Literal["annotation", "inferred"]
"""Where ``answer_type`` came from: the dataset's own annotation, or inference from the answer."""

Task = Literal["vqa", "caption"]
"""``vqa`` for question answering; ``caption`` for image-caption pairs (stage-1 pretraining)."""

MetadataValue = str | int | float | bool | None
"""Metadata values are JSON scalars so that every record round-trips through JSON."""

DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
"""Images with more pixels than this are refused as possible decompression bombs (8000 x 8000)."""

_YES_NO = frozenset({"yes", "no"})


def _answer_text(value: object, *, file: str | None, row: Any, field: str) -> str:
    """An answer read from a file, as text: a string as it is, an integer as its decimal digits.

    The one rule for reference answers, shared by the dataset loaders and the scorer.
    Floats (``2.0``, ``NaN``, ``inf``), booleans, ``null``, lists and objects are refused:
    turned into text they would be scored as ``"2.0"`` or ``"nan"``.

    Raises:
        DataFormatError: Not text or an integer (names file, row and field).
    """
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    kind = type(value).__name__
    if isinstance(value, float) and value != value:  # NaN
        kind = "NaN"
    raise DataFormatError(
        f"answers must be text (or an integer), got {kind} {value!r}", file=file, row=row, field=field
    )


def infer_answer_type(answer: str) -> AnswerType:
    """Infer the answer type of a reference answer that has no annotation.

    The rule used across the field: an answer is ``closed`` when its normalized form
    (Unicode NFKC, case-folded, surrounding whitespace and trailing punctuation removed)
    is ``yes`` or ``no``; every other answer is ``open``.

    Args:
        answer: The reference answer.

    Returns:
        ``"closed"`` or ``"open"``.

    >>> infer_answer_type(" Yes. "), infer_answer_type("no"), infer_answer_type("nodule")
    ('closed', 'closed', 'open')
    """
    norm = unicodedata.normalize("NFKC", answer).casefold().strip().rstrip(".!?,;:").strip()
    return "closed" if norm in _YES_NO else "open"


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow image mode to 8-bit RGB.

    Integer and float modes (``I;16``, ``I``, ``F``, common in medical data) are rescaled
    linearly from their own minimum and maximum to 0..255 (a constant image becomes black);
    modes with transparency are composited over black; everything else uses Pillow's
    conversion (CMYK, palette, grey, bilevel, YCbCr, ...).
    """
    from PIL import Image as PILImage

    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I") or mode == "F":
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        if arr.ndim == 3:
            arr = arr[..., 0]
        finite = np.isfinite(arr)
        if not finite.any():
            arr = np.zeros_like(arr)
        else:
            arr = np.where(finite, arr, np.nanmin(arr[finite]))
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        grey = PILImage.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")
        return grey.convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        background = PILImage.new("RGBA", rgba.size, (0, 0, 0, 255))
        return PILImage.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def open_rgb(
    source: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Decode an image file or encoded bytes into a fully loaded RGB image.

    Args:
        source: A path, or the encoded bytes of an image file.
        max_pixels: Images with more pixels are refused before their pixels are decoded.
        name: How to name the image in error messages (defaults to the path).

    Returns:
        A loaded ``PIL.Image.Image`` in mode ``RGB``.

    Raises:
        ImageLoadError: The file is missing, not an image, corrupt or too large.
    """
    import warnings

    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    label = name or (str(source) if not isinstance(source, bytes) else "<image bytes>")
    try:
        fp: Any = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except FileNotFoundError as exc:
        raise ImageLoadError(f"image file not found: {label}") from exc
    except OSError as exc:
        raise ImageLoadError(f"cannot read image {label}: {exc}") from exc
    try:
        with fp, warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            try:
                img = PILImage.open(fp)
            except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
                raise ImageLoadError(f"image {label} refused as a decompression bomb: {exc}") from exc
            width, height = img.size
            if width * height > max_pixels:
                raise ImageLoadError(
                    f"image {label} has {width}x{height} = {width * height:,} pixels, more than "
                    f"max_pixels={max_pixels:,} (possible decompression bomb); raise max_pixels "
                    "to accept it"
                )
            img.load()
            return _to_rgb(img)
    except ImageLoadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{label} is not a readable image file") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(f"image {label} is corrupt or truncated: {exc}") from exc


_DRIVE = re.compile(r"^[A-Za-z]:")


def _escape(path: str, root: str) -> str | None:
    r"""Why ``path`` (a file under ``root`` as a dataset file names it) leaves ``root``; ``None`` if it does not.

    Lexical only (no symbolic link is followed), and the same on every platform: backslashes
    count as separators, so ``..\x``, ``C:\x`` and ``\\server\share`` are refused on POSIX too.
    When ``path`` is ``root`` joined with a written name, that name is what is judged.

    >>> _escape("/data/imgs/a/b.jpg", "/data/imgs") is None
    True
    >>> _escape("/data/imgs/../secret.jpg", "/data/imgs"), _escape("/data/imgs/C:\\x.jpg", "/data/imgs")
    ('it leads out of it', 'a Windows drive or UNC path')
    """
    p, r = path.replace("\\", "/"), root.replace("\\", "/").rstrip("/")
    if not p.startswith(r + "/"):
        base = posixpath.normpath(os.path.abspath(r or "/").replace("\\", "/"))
        target = posixpath.normpath(os.path.abspath(p).replace("\\", "/"))
        if target == base:
            return "it names the dataset folder itself"
        return None if target.startswith(base.rstrip("/") + "/") else "it leads out of it"
    written = p[len(r) + 1 :]
    if _DRIVE.match(written) or written.startswith("/"):
        return "a Windows drive or UNC path"
    norm = posixpath.normpath(written) if written else "."
    if norm == ".." or norm.startswith("../"):
        return "it leads out of it"
    if norm == ".":
        return "it names the dataset folder itself"
    return None


@dataclass(frozen=True)
class ImageRef:
    """A lazy reference to one image: a file under a dataset root, or encoded bytes.

    Building an ``ImageRef`` never touches the pixels; :meth:`open` decodes them.

    Attributes:
        path: Path of the image file, or ``None`` for in-memory images.
        root: The dataset root. When set, ``path`` must lie inside it as written
            (judged lexically: ``..`` out of it, absolute and drive paths are refused),
            otherwise :meth:`open` refuses it; symbolic links inside it are followed (see
            :meth:`resolved_path`).
        data: Encoded image bytes (PNG, JPEG, ...) for images that live in memory,
            for example in a Hugging Face dataset. Exactly one of ``path`` and ``data``
            is set.
        name: A short human-readable name (the release's file name), used in reports
            and error messages.
    """

    path: str | None = None
    root: str | None = None
    data: bytes | None = field(default=None, repr=False, compare=False)
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.data is None):
            raise ValueError("ImageRef needs exactly one of path= or data=")
        if self.path is not None:
            object.__setattr__(self, "path", os.fspath(self.path))
        if self.root is not None:
            object.__setattr__(self, "root", os.fspath(self.root))

    @property
    def label(self) -> str:
        """The name used in messages: ``name``, else ``path``, else ``<in-memory image>``."""
        return self.name or self.path or "<in-memory image>"

    def resolved_path(self) -> str:
        """The path to open, after checking that it lies inside ``root``.

        The check judges the path as the dataset file wrote it, lexically, after
        normalisation: a ``..`` that climbs out of ``root``, an absolute path, and a Windows
        drive or UNC path (``C:\\x.jpg``, ``C:/x.jpg``, ``\\\\server\\share``) are refused on
        every platform. Symbolic links inside ``root`` are followed wherever they point: the
        tools that made them (``huggingface_hub.snapshot_download`` links every file of a
        snapshot into ``../../blobs/``, ``datasets``' cache, ``ln -s``) are the user's own.

        Raises:
            ImageLoadError: The reference holds bytes, or the path leaves ``root``.
        """
        if self.path is None:
            raise ImageLoadError(f"{self.label} is an in-memory image and has no path")
        path = os.path.normpath(self.path)
        if self.root is not None:
            why = _escape(self.path, self.root)
            if why is not None:
                raise ImageLoadError(
                    f"image path {self.path!r} lies outside the dataset root {self.root!r} ({why}); "
                    "image paths in dataset files must be relative and stay inside the dataset "
                    "folder; refusing to read it"
                )
        return path

    def exists(self) -> bool:
        """Whether the image can be found (always true for in-memory images)."""
        if self.data is not None:
            return True
        try:
            return os.path.isfile(self.resolved_path())
        except ImageLoadError:
            return False

    def read_bytes(self) -> bytes:
        """The encoded bytes of the image file.

        Raises:
            ImageLoadError: The file is missing, unreadable or outside ``root``.
        """
        if self.data is not None:
            return self.data
        real = self.resolved_path()
        try:
            with open(real, "rb") as fh:
                return fh.read()
        except FileNotFoundError as exc:
            raise ImageLoadError(f"image file not found: {self.path}") from exc
        except OSError as exc:
            raise ImageLoadError(f"cannot read image {self.path}: {exc}") from exc

    def content_hash(self) -> str:
        """SHA-256 of the encoded bytes: equal files give equal hashes whatever their names."""
        return hashlib.sha256(self.read_bytes()).hexdigest()

    def open(self, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
        """Decode the image as RGB (see :func:`open_rgb` for the mode conversions).

        Raises:
            ImageLoadError: Missing, corrupt, too large, or outside ``root``.
        """
        if self.data is not None:
            return open_rgb(self.data, max_pixels=max_pixels, name=self.label)
        return open_rgb(self.resolved_path(), max_pixels=max_pixels, name=self.path)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description (bytes are not included)."""
        return {"path": self.path, "root": self.root, "name": self.name, "in_memory": self.data is not None}


def _freeze_metadata(meta: Mapping[str, Any], where: str) -> Mapping[str, MetadataValue]:
    out: dict[str, MetadataValue] = {}
    for key, value in meta.items():
        if not isinstance(key, str):
            raise TypeError(f"{where}: metadata keys must be strings, got {key!r}")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise TypeError(
                f"{where}: metadata value for {key!r} must be a JSON scalar "
                f"(str, int, float, bool or None), got {type(value).__name__}"
            )
        out[key] = value
    return MappingProxyType(out)


@dataclass(frozen=True)
class VQASample:
    """One question (or caption) about one image, as every dataset adapter yields it.

    Attributes:
        id: Stable identifier, unique within a dataset: the same release row gets the
            same id on every load, whatever the row order or the layout it came from.
        question: The question text (for caption samples: the captioning instruction).
        answer: The reference answer (for caption samples: the caption). Always a
            non-empty string.
        answer_type: ``closed`` (yes/no) or ``open``.
        answer_type_source: ``annotation`` when the dataset says so, ``inferred`` when it
            came from :func:`infer_answer_type`.
        dataset: The dataset name (``vqa_rad``, ``slake``, ``path_vqa``, ``roco``, ...).
        split: The split name (``train``, ``validation``, ``test``).
        task: ``vqa`` or ``caption``.
        image: A lazy image reference, or ``None`` for a text-only sample.
        metadata: Read-only extra fields from the release (organ, modality,
            question type, content type, language, image id, ...), JSON scalars only.
    """

    id: str
    question: str
    answer: str
    answer_type: AnswerType
    answer_type_source: AnswerTypeSource
    dataset: str
    split: str
    task: Task = "vqa"
    image: ImageRef | None = None
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"sample {self.id!r}"
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"{where}: id must be a non-empty string")
        if not isinstance(self.answer, str):
            raise TypeError(f"{where}: answer must be a string, got {type(self.answer).__name__}")
        if not isinstance(self.question, str):
            raise TypeError(f"{where}: question must be a string")
        if self.answer_type not in get_args(AnswerType):
            raise ValueError(f"{where}: answer_type must be 'closed' or 'open', got {self.answer_type!r}")
        if self.answer_type_source not in get_args(AnswerTypeSource):
            raise ValueError(
                f"{where}: answer_type_source must be 'annotation' or 'inferred', "
                f"got {self.answer_type_source!r}"
            )
        if self.task not in get_args(Task):
            raise ValueError(f"{where}: task must be 'vqa' or 'caption', got {self.task!r}")
        object.__setattr__(self, "metadata", _freeze_metadata(self.metadata, where))

    def __hash__(self) -> int:
        return hash((self.id, self.dataset, self.split, self.question, self.answer))

    def replace(self, **changes: Any) -> VQASample:
        """A copy with some fields changed (the original is never mutated)."""
        return dataclasses.replace(self, **changes)

    def with_metadata(self, **extra: MetadataValue) -> VQASample:
        """A copy whose metadata has ``extra`` added (or overridden)."""
        return dataclasses.replace(self, metadata={**self.metadata, **extra})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (the image as its description, never its bytes)."""
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "answer_type": self.answer_type,
            "answer_type_source": self.answer_type_source,
            "dataset": self.dataset,
            "split": self.split,
            "task": self.task,
            "image": None if self.image is None else self.image.to_dict(),
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class Prediction:
    """One model answer, as written (one JSON object per line) to prediction files.

    ``medvqa score`` reads these files with its default field names: ``id``,
    ``reference``, ``prediction`` and ``answer_type``.

    Attributes:
        id: The :attr:`VQASample.id` of the question.
        question: The question as asked (after any prompt transform).
        reference: The reference answer.
        prediction: The raw generated text (new tokens only, special tokens removed).
        answer_type: ``closed`` or ``open`` (copied from the sample).
        extracted: The answer extracted from ``prediction`` by the default (strict)
            extractor, or ``None`` when not computed. Scoring re-extracts per profile.
        dataset: Dataset name.
        split: Split name.
        image: The image's path or name, for review sheets (``None`` without image).
        metadata: The sample's metadata plus anything the run adds (for example
            ``transforms``, the ablation that produced this row).
    """

    id: str
    question: str
    reference: str
    prediction: str
    answer_type: AnswerType
    extracted: str | None = None
    dataset: str = ""
    split: str = ""
    image: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict with the field names of prediction files."""
        return {
            "id": self.id,
            "question": self.question,
            "reference": self.reference,
            "prediction": self.prediction,
            "extracted": self.extracted,
            "answer_type": self.answer_type,
            "dataset": self.dataset,
            "split": self.split,
            "image": self.image,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(
        cls, row: Mapping[str, Any], *, file: str | None = None, line: int | None = None
    ) -> Prediction:
        """Build a prediction from a dict written by :meth:`to_dict`.

        Raises:
            DataFormatError: A required field is missing or has the wrong type.
        """
        for key in ("id", "reference", "prediction", "answer_type"):
            if key not in row:
                raise DataFormatError("missing required field", file=file, line=line, field=key)
        if row["answer_type"] not in get_args(AnswerType):
            raise DataFormatError(
                f"answer_type must be 'closed' or 'open', got {row['answer_type']!r}",
                file=file,
                line=line,
                field="answer_type",
            )
        meta = row.get("metadata") or {}
        if not isinstance(meta, Mapping):
            raise DataFormatError("metadata must be an object", file=file, line=line, field="metadata")
        return cls(
            id=str(row["id"]),
            question=str(row.get("question", "")),
            reference=_answer_text(
                row["reference"],
                file=file,
                row=None if line is None else RowRef.line(line),
                field="reference",
            ),
            prediction=str(row["prediction"]),
            answer_type=row["answer_type"],
            extracted=None if row.get("extracted") is None else str(row["extracted"]),
            dataset=str(row.get("dataset", "")),
            split=str(row.get("split", "")),
            image=None if row.get("image") is None else str(row["image"]),
            metadata=MappingProxyType(dict(meta)),
        )
