"""The score file: one versioned JSON format for aggregates, written and read by every command.

``medvqa score --format json``, ``medvqa predict-and-score`` (``NAME.scores.json``), ``medvqa ablate``
(``scores.json``), ``two-stage --evaluate``, the sweep and the demo write this format;
``medvqa report`` and ``medvqa export`` read it. A file holds one or more *runs*: one
prediction set scored under one profile::

    {
      "format": "medvqa.scores/2",
      "runs": [
        {
          "label": "two_stage",                      # the row name in a report
          "file": "runs/eval/two_stage.predictions.jsonl",
          "profile": "paper",
          "n": 451,                                  # items scored
          "items": {"count": 451, "sha256": "..."},  # which items (hash of the sorted ids)
          "seed": 0, "n_boot": 1000, "options": {...},
          "aggregates": {"containment/all": {"value": ..., "numerator": ..., "denominator": ...,
                                             "ci_low": ..., "ci_high": ..., ...}, ...},
          "info": {"model": "...", "adapter": "..."}
        }
      ],
      "fields": {"id": "id", ...},                   # optional: prediction-file fields read
      "judge": {...}                                 # optional: judge audit reports by file
    }

Version 2 keeps every field of version 1 (``medvqa score --format json`` of earlier
releases) and adds ``label``, ``items`` and ``info`` to each run. :func:`read_scores`
also reads version 1 files and the ``NAME.scores.json`` files of earlier ``medvqa evaluate``
releases (``{"name", "n", "predictions_path", "scores", "info"}``), with a
:class:`FutureWarning`: that support ends in the next release; rewrite such a file with
``write_scores(path, read_scores(path))``.

>>> import tempfile, os
>>> from medvqa.metrics import evaluate
>>> from medvqa.records import Prediction
>>> preds = [Prediction("a", "Is it normal?", "no", "No.", "closed"),
...          Prediction("b", "Which organ?", "liver", "The liver", "open")]
>>> run = ScoreRun.from_result(evaluate(preds, profile="paper", n_boot=0), label="base",
...                            items=ItemSet.of(p.id for p in preds))
>>> path = os.path.join(tempfile.mkdtemp(), "base.scores.json")
>>> write_scores(path, ScoreFile(runs=(run,)))
>>> back = read_scores(path)
>>> back.runs[0].label, back.runs[0].aggregates["f1"].value, back.runs[0].items.count
('base', 0.6666666666666666, 2)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvqa._errors import DataFormatError
from medvqa.metrics._aggregate import Aggregate

if TYPE_CHECKING:
    from medvqa.metrics._profiles import ProfileResult
    from medvqa.records import Prediction

__all__ = [
    "SCORE_FORMAT",
    "ItemSet",
    "ScoreFile",
    "ScoreRun",
    "build_score_file",
    "file_labels",
    "is_score_data",
    "read_scores",
    "write_scores",
]

SCORE_FORMAT = "medvqa.scores/2"
"""The format string :func:`write_scores` writes (``format`` at the top of the file)."""

_V1 = "medvqa.scores/1"
_LEGACY = "evaluate"  # the NAME.scores.json layout of earlier ``medvqa evaluate`` releases


@dataclass(frozen=True)
class ItemSet:
    """Which items a run scored, without listing them: their number and a hash of their ids.

    Two runs with the same ``sha256`` scored the same items (in any order).

    Attributes:
        count: The number of distinct item ids.
        sha256: Hex SHA-256 of the sorted distinct ids as a JSON list, exactly
            ``json.dumps(sorted(set(ids)), ensure_ascii=False).encode("utf-8")``.

    >>> ItemSet.of(["b", "a"]) == ItemSet.of(["a", "b", "a"])
    True
    >>> ItemSet.of(["a"]).count
    1
    """

    count: int
    sha256: str

    @classmethod
    def of(cls, ids: Iterable[str]) -> ItemSet:
        """The item set of these ids (duplicates count once)."""
        unique = sorted(set(ids))
        blob = json.dumps(unique, ensure_ascii=False).encode("utf-8")
        return cls(count=len(unique), sha256=hashlib.sha256(blob).hexdigest())

    def to_dict(self) -> dict[str, Any]:
        """``{"count": ..., "sha256": ...}``."""
        return {"count": self.count, "sha256": self.sha256}


@dataclass(frozen=True)
class ScoreRun:
    """One prediction set scored under one profile.

    Attributes:
        label: The run's name (a report row), e.g. ``two_stage``.
        profile: The scoring profile (``paper``, ``strict``, ...).
        n: The number of items scored.
        aggregates: Aggregates by key (``containment/all``, ...), in the profile's order.
        file: The prediction file scored (``""`` when unknown).
        items: Which items were scored (``None``: unknown, in files of earlier releases).
        seed: Seed of the bootstrap intervals.
        n_boot: Bootstrap replicates (0: no intervals).
        options: The profile's options.
        info: Facts about the run where known (model, adapter, dataset, split, transforms).
    """

    label: str
    profile: str
    n: int
    aggregates: Mapping[str, Aggregate]
    file: str = ""
    items: ItemSet | None = None
    seed: int = 0
    n_boot: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_result(
        cls,
        result: ProfileResult,
        *,
        label: str,
        file: str = "",
        items: ItemSet | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> ScoreRun:
        """A run from a :class:`medvqa.metrics.ProfileResult` (per-item values are not kept)."""
        return cls(
            label=label,
            profile=result.profile,
            n=result.n,
            aggregates=dict(result.aggregates),
            file=file,
            items=items,
            seed=result.seed,
            n_boot=result.n_boot,
            options=dict(result.options),
            info=dict(info or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """The run as written in a score file."""
        out: dict[str, Any] = {"label": self.label, "file": self.file, "profile": self.profile, "n": self.n}
        if self.items is not None:
            out["items"] = self.items.to_dict()
        out.update(seed=self.seed, n_boot=self.n_boot, options=dict(self.options))
        out["aggregates"] = {k: a.to_dict() for k, a in self.aggregates.items()}
        out["info"] = dict(self.info)
        return out


@dataclass(frozen=True)
class ScoreFile:
    """The content of a score file.

    Attributes:
        runs: The scored runs, one per prediction set and profile.
        fields: The prediction-file fields that were read (``id``, ``reference``, ...), when
            the predictions came from a user's file (``medvqa score``).
        judge: Judge audit reports by prediction file (model-judged scoring), if any.
        format: The format the file was read in (``medvqa.scores/2``, ``medvqa.scores/1``,
            or ``evaluate`` for an earlier ``medvqa evaluate`` file); written files are
            always :data:`SCORE_FORMAT`.
    """

    runs: tuple[ScoreRun, ...]
    fields: Mapping[str, str] = field(default_factory=dict)
    judge: Mapping[str, Any] = field(default_factory=dict)
    format: str = SCORE_FORMAT

    def __post_init__(self) -> None:
        seen: set[tuple[str, str]] = set()
        for r in self.runs:
            if (r.label, r.profile) in seen:
                raise ValueError(
                    f"two runs labelled {r.label!r} under profile {r.profile!r}; a report could not tell "
                    "them apart: give them distinct labels"
                )
            seen.add((r.label, r.profile))

    def profiles(self) -> list[str]:
        """The profiles of the runs, in order of first appearance."""
        return list(dict.fromkeys(r.profile for r in self.runs))

    def run(self, label: str, profile: str) -> ScoreRun:
        """The run with this label and profile.

        Raises:
            KeyError: No such run (the message lists the runs).
        """
        for r in self.runs:
            if r.label == label and r.profile == profile:
                return r
        have = ", ".join(f"{r.label}/{r.profile}" for r in self.runs)
        raise KeyError(f"no run {label!r} scored under {profile!r}; runs: {have}")

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON object (always :data:`SCORE_FORMAT`)."""
        out: dict[str, Any] = {"format": SCORE_FORMAT, "runs": [r.to_dict() for r in self.runs]}
        if self.fields:
            out["fields"] = dict(self.fields)
        if self.judge:
            out["judge"] = dict(self.judge)
        return out

    def to_json(self) -> str:
        """The file's text as :func:`write_scores` writes it (NaN and infinities as ``null``)."""
        return json.dumps(_finite(self.to_dict()), indent=2, ensure_ascii=False) + "\n"


def build_score_file(
    runs: Mapping[str, Sequence[Prediction]],
    *,
    profiles: str | Sequence[str] = "strict",
    seed: int = 0,
    n_boot: int = 1000,
    files: Mapping[str, str] | None = None,
    info: Mapping[str, Any] | None = None,
) -> ScoreFile:
    """Score prediction sets under profiles into a :class:`ScoreFile` (one run per set and profile).

    Args:
        runs: Prediction sets by label (a report row each).
        profiles: One profile name or several.
        seed: Bootstrap seed.
        n_boot: Bootstrap replicates (0: no intervals).
        files: The prediction file of each label, where there is one.
        info: Facts recorded with every run (model, dataset, ...).

    >>> from medvqa.records import Prediction
    >>> sf = build_score_file({"a": [Prediction("1", "q", "yes", "yes", "closed")]}, n_boot=0)
    >>> sf.runs[0].label, sf.runs[0].profile, sf.runs[0].aggregates["accuracy"].value
    ('a', 'strict', 1.0)
    """
    from medvqa.metrics._profiles import evaluate

    names = [profiles] if isinstance(profiles, str) else list(profiles)
    out = []
    for label, preds in runs.items():
        items = ItemSet.of(p.id for p in preds)
        for profile in names:
            result = evaluate(preds, profile=profile, seed=seed, n_boot=n_boot)
            file = (files or {}).get(label, "")
            out.append(ScoreRun.from_result(result, label=label, file=file, items=items, info=info))
    return ScoreFile(runs=tuple(out))


def write_scores(path: str | os.PathLike[str], scores: ScoreFile) -> None:
    """Write a score file atomically (readers never see half a file)."""
    from medvqa._io import atomic_write_text

    atomic_write_text(path, scores.to_json())


def _finite(obj: Any) -> Any:
    """NaN and infinities as ``null`` (JSON has neither)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def file_labels(files: Iterable[str]) -> list[str]:
    """A run label per prediction file: its name without extension, or its path where two files share one.

    A path given twice (one file scored under two profiles) gets one label.

    >>> file_labels(["a/base.jsonl", "b/base.jsonl", "tuned.jsonl", "a/base.jsonl"])
    ['a/base.jsonl', 'b/base.jsonl', 'tuned', 'a/base.jsonl']
    """
    paths = list(files)
    unique = list(dict.fromkeys(paths))
    stems = [Path(f).stem for f in unique]
    label = {f: f if stems.count(stem) > 1 else stem for f, stem in zip(unique, stems)}
    return [label[f] for f in paths]


def is_score_data(data: Any) -> bool:
    """Whether parsed JSON is a score file (any version :func:`read_scores` reads).

    >>> is_score_data({"format": "medvqa.scores/1", "runs": []}), is_score_data([{"id": "a"}])
    (True, False)
    """
    if not isinstance(data, dict):
        return False
    if str(data.get("format", "")).startswith("medvqa.scores/"):
        return True
    return "format" not in data and isinstance(data.get("scores"), dict) and "name" in data


def read_scores(path: str | os.PathLike[str]) -> ScoreFile:
    """Read a score file of any supported version.

    Raises:
        DataFormatError: The file is not JSON, not a score file, of an unknown version, or a
            field is missing or of the wrong type (the message names the file and field).
    """
    from medvqa._io import read_json

    where = str(path)
    data = read_json(path)
    if not is_score_data(data):
        raise DataFormatError(
            "not a medvqa score file (expected an object with 'format': "
            f"{SCORE_FORMAT!r}, as written by medvqa score --format json or medvqa predict-and-score)",
            file=where,
        )
    fmt = data.get("format")
    if fmt is None:
        _deprecated(where, "the layout medvqa evaluate wrote")
        return _from_legacy(data, where)
    if fmt not in (SCORE_FORMAT, _V1):
        raise DataFormatError(
            f"unknown score format {fmt!r}; this medvqa reads {SCORE_FORMAT!r} and {_V1!r} "
            "(a file from a newer medvqa? upgrade medvqa)",
            file=where,
            field="format",
        )
    if fmt == _V1:
        _deprecated(where, f"format {_V1!r}")
    runs = _get(data, "runs", list, where, "")
    parsed = [_run(r, where, f"runs[{i}]", v1=fmt == _V1) for i, r in enumerate(runs)]
    if fmt == _V1:  # no labels: each run is named after its prediction file
        labels = file_labels(r.file for r in parsed)
        parsed = [dataclasses.replace(r, label=label) for r, label in zip(parsed, labels)]
    fields = _get(data, "fields", dict, where, "", default={})
    judge = _get(data, "judge", dict, where, "", default={})
    try:
        return ScoreFile(runs=tuple(parsed), fields=fields, judge=judge, format=str(fmt))
    except ValueError as exc:
        raise DataFormatError(str(exc), file=where, field="runs") from None


def _deprecated(where: str, what: str) -> None:
    warnings.warn(
        f"{where}: a score file in {what} of an earlier release, read for one more release only: "
        "rewrite it with medvqa.metrics.write_scores(path, read_scores(path)), or score the "
        "predictions again",
        FutureWarning,
        stacklevel=3,
    )


_MISSING: Any = object()


def _get(data: Mapping[str, Any], key: str, kind: Any, file: str, at: str, *, default: Any = _MISSING) -> Any:
    name = f"{at}.{key}" if at else key
    if key not in data or (data[key] is None and default is not _MISSING):
        if default is _MISSING:
            raise DataFormatError("missing", file=file, field=name)
        return default
    value = data[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        names = {str: "a string", int: "an integer", float: "a number", dict: "an object", list: "a list"}
        raise DataFormatError(
            f"expected {names.get(kind, kind.__name__)}, got {type(value).__name__} {value!r:.60}",
            file=file,
            field=name,
        )
    return value


def _aggregate(data: Any, key: str, file: str, at: str) -> Aggregate:
    if not isinstance(data, dict):
        raise DataFormatError(f"expected an object, got {type(data).__name__}", file=file, field=at)

    def opt(name: str) -> float | None:
        value = _get(data, name, float, file, at, default=None)
        return None if value is None else float(value)

    return Aggregate(
        name=_get(data, "name", str, file, at),
        subset=_get(data, "subset", str, file, at, default="all"),
        value=opt("value"),
        numerator=float(_get(data, "numerator", float, file, at)),
        denominator=_get(data, "denominator", int, file, at),
        ci_low=opt("ci_low"),
        ci_high=opt("ci_high"),
        item_metric=_get(data, "item_metric", str, file, at, default=""),
        key=_get(data, "key", str, file, at, default=key),
    )


def _aggregates(data: Mapping[str, Any], file: str, at: str) -> dict[str, Aggregate]:
    raw = _get(data, "aggregates", dict, file, at)
    return {k: _aggregate(v, k, file, f"{at}.aggregates[{k!r}]") for k, v in raw.items()}


def _run(data: Any, file: str, at: str, *, v1: bool) -> ScoreRun:
    if not isinstance(data, dict):
        raise DataFormatError(f"expected an object, got {type(data).__name__}", file=file, field=at)
    path = _get(data, "file", str, file, at, default="")
    label = _get(data, "label", str, file, at, default="") if v1 else _get(data, "label", str, file, at)
    items = None
    raw_items = _get(data, "items", dict, file, at, default=None)
    if raw_items is not None:
        items = ItemSet(
            count=_get(raw_items, "count", int, file, f"{at}.items"),
            sha256=_get(raw_items, "sha256", str, file, f"{at}.items"),
        )
    return ScoreRun(
        label=label,
        profile=_get(data, "profile", str, file, at),
        n=_get(data, "n", int, file, at),
        aggregates=_aggregates(data, file, at),
        file=path,
        items=items,
        seed=_get(data, "seed", int, file, at, default=0),
        n_boot=_get(data, "n_boot", int, file, at, default=0),
        options=_get(data, "options", dict, file, at, default={}),
        info=_get(data, "info", dict, file, at, default={}),
    )


def _from_legacy(data: Mapping[str, Any], file: str) -> ScoreFile:
    """``{"name", "n", "predictions_path", "scores": {profile: {key: aggregate}}, "info"}``."""
    label = _get(data, "name", str, file, "")
    n = _get(data, "n", int, file, "")
    path = _get(data, "predictions_path", str, file, "", default="")
    info = _get(data, "info", dict, file, "", default={})
    scores = _get(data, "scores", dict, file, "")
    runs = []
    for profile, aggs in scores.items():
        at = f"scores[{profile!r}]"
        if not isinstance(aggs, dict):
            raise DataFormatError(f"expected an object, got {type(aggs).__name__}", file=file, field=at)
        aggregates = {k: _aggregate(v, k, file, f"{at}[{k!r}]") for k, v in aggs.items()}
        runs.append(ScoreRun(label=label, profile=profile, n=n, aggregates=aggregates, file=path, info=info))
    return ScoreFile(runs=tuple(runs), format=_LEGACY)
