"""Dataset summaries and the train/test audit (repeated questions, shared images)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medvqa._tables import Align, plain_table
from medvqa.data._common import normalize_question
from medvqa.data._dataset import VQADataset
from medvqa.records import ImageRef, VQASample

__all__ = ["BREAKDOWN_FIELDS", "AuditReport", "SplitSummary", "audit", "format_report", "summarize"]

BREAKDOWN_FIELDS: tuple[str, ...] = (
    "question_type",
    "modality",
    "organ",
    "location",
    "content_type",
    "language",
)
"""Metadata fields counted per value in a summary, where the release provides them."""


@dataclass(frozen=True)
class SplitSummary:
    """Counts for one split of one dataset.

    Attributes:
        dataset: Dataset name.
        split: Split name.
        layout: The release layout it was read from.
        rows: Number of samples.
        skipped: Rows left out on request (``on_missing_image="skip"``, ...).
        closed: Closed (yes/no) samples.
        open: Open samples.
        answer_type_source: Counts per source of ``answer_type`` (``annotation``, ``inferred``).
        tasks: Counts per task (``vqa``, ``caption``).
        images: Distinct image references (by path or name); 0 for text-only data.
        breakdown: Field -> value -> count, for the :data:`BREAKDOWN_FIELDS` present.
        notes: The dataset's notes (layout facts a reader should know).
        skipped_reasons: Reason -> count for skipped rows.
    """

    dataset: str
    split: str
    layout: str
    rows: int
    skipped: int
    closed: int
    open: int
    answer_type_source: Mapping[str, int]
    tasks: Mapping[str, int]
    images: int
    breakdown: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    skipped_reasons: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "layout": self.layout,
            "rows": self.rows,
            "skipped": self.skipped,
            "closed": self.closed,
            "open": self.open,
            "answer_type_source": dict(self.answer_type_source),
            "tasks": dict(self.tasks),
            "images": self.images,
            "breakdown": {k: dict(v) for k, v in self.breakdown.items()},
            "notes": list(self.notes),
            "skipped_reasons": dict(self.skipped_reasons),
        }


def _image_key(ref: ImageRef) -> str:
    return ref.path if ref.path is not None else "data:" + hashlib.sha256(ref.data or b"").hexdigest()


def summarize(dataset: VQADataset | Sequence[VQASample], *, name: str = "", split: str = "") -> SplitSummary:
    """Count the samples of one split by answer type, its source, task and metadata fields.

    >>> from medvqa.data import load, sample_root
    >>> s = summarize(load("vqa_rad", sample_root() / "vqa_rad", split="test"))
    >>> s.rows == s.closed + s.open, s.answer_type_source["annotation"] == s.rows
    (True, True)
    """
    samples = list(dataset)
    ds = dataset if isinstance(dataset, VQADataset) else None
    types = Counter(s.answer_type for s in samples)
    breakdown: dict[str, dict[str, int]] = {}
    for key in BREAKDOWN_FIELDS:
        values = Counter(str(s.metadata[key]) for s in samples if s.metadata.get(key) not in (None, ""))
        if values:
            breakdown[key] = dict(sorted(values.items(), key=lambda kv: (-kv[1], kv[0])))
    reasons: Counter[str] = Counter()
    if ds is not None:
        for r in ds.skipped_rows:
            reasons[r.reason.split(":")[0]] += 1
    return SplitSummary(
        dataset=ds.name if ds is not None else (name or (samples[0].dataset if samples else "")),
        split=ds.split if ds is not None else (split or (samples[0].split if samples else "")),
        layout=ds.layout if ds is not None else "",
        rows=len(samples),
        skipped=ds.skipped if ds is not None else 0,
        closed=types.get("closed", 0),
        open=types.get("open", 0),
        answer_type_source=dict(Counter(s.answer_type_source for s in samples)),
        tasks=dict(Counter(s.task for s in samples)),
        images=len({_image_key(s.image) for s in samples if s.image is not None}),
        breakdown=breakdown,
        notes=ds.notes if ds is not None else (),
        skipped_reasons=dict(reasons),
    )


@dataclass(frozen=True)
class AuditReport:
    """Overlap between a training split and an evaluation split.

    Attributes:
        dataset: Dataset name.
        train: Name of the training split.
        test: Name of the evaluation split.
        repeated_questions: Distinct normalized questions asked in both splits.
        test_rows_repeating_a_question: Evaluation rows whose question also appears in training.
        duplicate_pairs: Evaluation rows whose (image content, question) pair appears in training.
        shared_images: Distinct images (by SHA-256 of the file bytes) used in both splits.
        test_rows_on_shared_images: Evaluation rows whose image is also a training image.
        train_images: Distinct training images (by content).
        test_images: Distinct evaluation images (by content).
        unhashed_images: Image references that could not be read (missing files); 0 when
            every image was hashed. Shared-image counts cover hashed images only.
        hashed: Whether images were hashed at all.
        examples: A few repeated questions, for the report.
        compared: What the text counts compare: ``question`` for VQA samples, ``caption``
            when every sample is a caption sample (whose question is the fixed stage-1
            instruction, so the captions are compared instead).
    """

    dataset: str
    train: str
    test: str
    repeated_questions: int
    test_rows_repeating_a_question: int
    duplicate_pairs: int
    shared_images: int
    test_rows_on_shared_images: int
    train_images: int
    test_images: int
    unhashed_images: int
    hashed: bool
    examples: tuple[str, ...] = ()
    compared: str = "question"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


class _Hasher:
    def __init__(self) -> None:
        self.cache: dict[str, str | None] = {}

    def __call__(self, ref: ImageRef | None) -> str | None:
        if ref is None:
            return None
        key = _image_key(ref)
        if key not in self.cache:
            try:
                self.cache[key] = ref.content_hash()
            except OSError:
                self.cache[key] = None
        return self.cache[key]


def audit(
    train: Iterable[VQASample],
    test: Iterable[VQASample],
    *,
    hash_images: bool = True,
    dataset: str = "",
    max_examples: int = 5,
) -> AuditReport:
    """Find what an evaluation split shares with a training split.

    Questions are compared after normalization (NFKC, case-folded, single spaces); when every
    sample is a caption sample (ROCO), whose question is the one fixed instruction, the
    captions are compared instead (``compared="caption"``). Images are
    compared by the SHA-256 of their file bytes (never decoded), so copies under different
    names count as shared. VQA-RAD asks different questions about the same images in train
    and test, so most of its test rows sit on training images: that is how the release is built.

    >>> from medvqa.data import load, sample_root
    >>> root = sample_root() / "vqa_rad"
    >>> r = audit(load("vqa_rad", root, split="train"), load("vqa_rad", root, split="test"))
    >>> r.shared_images > 0, r.unhashed_images
    (True, 0)
    """
    train_l, test_l = list(train), list(test)
    hasher = _Hasher()
    captions = bool(train_l or test_l) and all(s.task == "caption" for s in (*train_l, *test_l))

    def text(s: VQASample) -> str:
        return normalize_question(s.answer if captions else s.question)

    train_q = {text(s) for s in train_l}
    test_q_rows = [text(s) for s in test_l]
    repeated = sorted(set(test_q_rows) & train_q)
    if hash_images:
        train_h = [hasher(s.image) for s in train_l]
        test_h = [hasher(s.image) for s in test_l]
    else:
        train_h, test_h = [None] * len(train_l), [None] * len(test_l)
    train_imgs = {h for h in train_h if h}
    test_imgs = {h for h in test_h if h}
    pairs = {(h, text(s)) for h, s in zip(train_h, train_l) if h}
    unhashed = sum(1 for v in hasher.cache.values() if v is None)
    name = dataset or (train_l[0].dataset if train_l else test_l[0].dataset if test_l else "")
    return AuditReport(
        dataset=name,
        train=train_l[0].split if train_l else "train",
        test=test_l[0].split if test_l else "test",
        repeated_questions=len(repeated),
        test_rows_repeating_a_question=sum(1 for q in test_q_rows if q in train_q),
        duplicate_pairs=sum(1 for h, q in zip(test_h, test_q_rows) if h and (h, q) in pairs),
        shared_images=len(train_imgs & test_imgs),
        test_rows_on_shared_images=sum(1 for h in test_h if h and h in train_imgs),
        train_images=len(train_imgs),
        test_images=len(test_imgs),
        unhashed_images=unhashed,
        hashed=hash_images,
        examples=tuple(repeated[:max_examples]),
        compared="caption" if captions else "question",
    )


def _pct(part: int, whole: int) -> str:
    return f"{part:,} ({100.0 * part / whole:.1f}%)" if whole else f"{part:,}"


def format_report(
    summaries: Sequence[SplitSummary], audits: Sequence[AuditReport] = (), *, absent: Sequence[str] = ()
) -> str:
    """Render summaries and audits as plain-text tables (what ``medvqa data summary`` prints)."""
    lines: list[str] = []
    if summaries:
        lines += _summary_lines(summaries)
    for split in absent:
        lines.append(f"{split}: not in this source")
    for a in audits:
        lines += _audit_lines(a)
    return "\n".join(lines) + "\n"


def _summary_lines(summaries: Sequence[SplitSummary]) -> list[str]:
    s0 = summaries[0]
    lines = [f"dataset: {s0.dataset}    layout: {', '.join(sorted({s.layout for s in summaries}))}", ""]
    header = ["split", "rows", "skipped", "closed", "open", "answer_type from", "images"]
    table: list[list[object]] = []
    for s in summaries:
        src = ", ".join(f"{k} {v:,}" for k, v in sorted(s.answer_type_source.items())) or None
        table.append(
            [
                s.split,
                f"{s.rows:,}",
                f"{s.skipped:,}",
                _pct(s.closed, s.rows),
                _pct(s.open, s.rows),
                src,
                f"{s.images:,}",
            ]
        )
    align: list[Align] = ["left", "right", "right", "right", "right", "left", "right"]
    lines.append(plain_table(header, table, align=align))
    for f in [f for f in BREAKDOWN_FIELDS if any(f in s.breakdown for s in summaries)]:
        lines += _breakdown_lines(summaries, f)
    for s in summaries:
        for reason, n in s.skipped_reasons.items():
            lines.append(f"{s.split}: skipped {n:,} row{'' if n == 1 else 's'} on request: {reason}")
    notes = [f"{s.split}: {n}" for s in summaries for n in s.notes]
    if notes:
        lines.append("")
        lines.append("notes:")
        lines.extend(f"  - {n}" for n in notes)
    return lines


def _breakdown_lines(summaries: Sequence[SplitSummary], f: str) -> list[str]:
    """The rows per value of metadata field ``f`` (its 12 most common values), one column a split."""
    lines = ["", f"by {f}:"]
    values: Counter[str] = Counter()
    for s in summaries:
        values.update(s.breakdown.get(f, {}))
    top = [v for v, _ in values.most_common(12)]
    width = max(len(v) for v in top)
    lines.append("  " + " " * width + "  " + "  ".join(s.split.rjust(10) for s in summaries))
    for v in top:
        lines.append(
            "  "
            + v.ljust(width)
            + "  "
            + "  ".join(f"{s.breakdown.get(f, {}).get(v, 0):>10,}" for s in summaries)
        )
    if len(values) > len(top):
        lines.append(f"  ... {len(values) - len(top)} more values")
    return lines


def _audit_lines(a: AuditReport) -> list[str]:
    what = a.compared
    lines = [
        "",
        f"audit {a.train} vs {a.test}:",
        f"  {what}s {'found' if what == 'caption' else 'asked'} in both splits: "
        f"{a.repeated_questions:,} distinct; "
        f"{a.test_rows_repeating_a_question:,} {a.test} rows repeat a {a.train} {what}",
    ]
    if a.hashed:
        lines.append(
            f"  images shared by content (SHA-256 of the file bytes): {a.shared_images:,} of {a.test_images:,} "
            f"{a.test} images; {a.test_rows_on_shared_images:,} {a.test} rows use a {a.train} image"
        )
        lines.append(
            f"  {a.test} rows repeating a {a.train} (image, {a.compared}) pair: {a.duplicate_pairs:,}"
        )
        if a.unhashed_images:
            lines.append(f"  {a.unhashed_images:,} image files could not be read and are not in these counts")
        if a.dataset == "vqa_rad" and a.shared_images:
            lines.append(
                "  VQA-RAD asks different questions about the same images in train and test: shared "
                "images are how the release is built, not a loading error."
            )
    else:
        lines.append("  images not hashed (--no-hash)")
    for q in a.examples:
        lines.append(f"    e.g. {q!r}")
    return lines
