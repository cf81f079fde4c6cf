"""Prediction files a run streams to and resumes: the run record beside them, the rows read back.

A prediction file ``OUTPUT.jsonl`` has a run record ``OUTPUT.run.json`` holding the settings
of the run that wrote it; a run may resume the file only with the same settings (counts and
speed settings excepted), and every row read back must be a prediction of one of the run's
samples, made with the run's prompt.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medvqa._distributed import parts_dir
from medvqa._errors import MedVQAError
from medvqa._io import read_json, recover_jsonl
from medvqa.chat import PromptTemplate, default_prompt
from medvqa.records import Prediction, VQASample

PROMPT_METADATA_KEY = "prompt"
"""Prediction metadata key holding the name of the prompt template used."""

# Run-record keys that may change when a run resumes (counts and speed settings); every
# other key must be the same, or the file would mix two runs.
_FREE_KEYS = frozenset(
    {"command", "n", "limit", "batch_size", "skipped_rows", "adapted_modules", "on_bad_image"}
    | {"unverified_rows", "bad_images", "skipped_bad_images", "server_url"}
)
_PATH_KEYS = ("adapter", "data", "model")


def _prompt_name(sample: VQASample, prompt: PromptTemplate | None) -> str:
    return (prompt or default_prompt(sample)).name


def resumed_prediction(
    row: Mapping[str, Any],
    samples: Mapping[str, VQASample],
    prompt: PromptTemplate | None,
    *,
    file: Path,
    line: int,
) -> Prediction:
    """A prediction read back from a file a run resumes, checked against the run.

    Args:
        row: The parsed line.
        samples: The run's samples, by id.
        prompt: The run's prompt template (``None``: per-sample default).
        file: The file the row is from (for errors).
        line: Its 1-based line number.

    Raises:
        MedVQAError: The row is no prediction, its id is none of the run's samples, or it
            was generated with another prompt.
    """
    pred = Prediction.from_dict(row, file=str(file), line=line)
    sample = samples.get(pred.id)
    if sample is None:
        raise MedVQAError(
            f"{file}, row {line}: prediction for id {pred.id!r}, which is not among the samples "
            "of this run; use a new output file or the same samples to resume"
        )
    want = _prompt_name(sample, prompt)
    got = pred.metadata.get(PROMPT_METADATA_KEY)
    if got != want:
        raise MedVQAError(
            f"{file}, row {line}: id {pred.id!r} was generated with prompt {got!r}, this run uses "
            f"{want!r}; use a new output file"
        )
    return pred


def _load_done(
    path: Path, samples: Sequence[VQASample], prompt: PromptTemplate | None
) -> dict[str, Prediction]:
    rows, dropped_partial = recover_jsonl(path)
    by_id = {s.id: s for s in samples}
    done: dict[str, Prediction] = {}
    for line, row in enumerate(rows, start=1):
        pred = resumed_prediction(row, by_id, prompt, file=path, line=line)
        if pred.id in done:
            raise MedVQAError(f"{path}, row {line}: id {pred.id!r} appears twice")
        done[pred.id] = pred
    if dropped_partial:
        warnings.warn(
            f"{path}: removed a partial last line left by an interrupted run; that item is generated again",
            stacklevel=3,
        )
    return done


def run_record_path(output: str | os.PathLike[str]) -> Path:
    """The run record of a prediction file: ``preds.jsonl`` -> ``preds.run.json``.

    >>> run_record_path("runs/preds.jsonl").name
    'preds.run.json'
    """
    return Path(output).with_suffix(".run.json")


def _norm(key: str, value: Any) -> Any:
    if key in _PATH_KEYS and isinstance(value, str) and value != "tiny":
        local = Path(value).expanduser()
        return str(local.resolve()) if local.exists() else value
    return value


def _short(value: Any) -> str:
    if isinstance(value, dict) and "name" in value:
        return repr(value["name"])
    if isinstance(value, dict) and "mode" in value:
        return repr(value["mode"])
    return repr(value)


def _has_rows(output: Path) -> bool:
    """Whether ``output`` or one of its part files (a sharded run's) holds predictions."""
    files = [output, *sorted(parts_dir(output).glob("part-*.jsonl"))]
    return any(f.is_file() and f.stat().st_size > 0 for f in files)


def check_run_record(
    output: str | os.PathLike[str], run: Mapping[str, Any], *, resume_unverified: bool = False
) -> dict[str, Any] | None:
    """Check that ``run`` may resume ``output``; return the old record (``None``: none or a fresh file).

    Raises:
        MedVQAError: The file holds predictions of a run with other settings, its record is
            unreadable, or it has no record and ``resume_unverified`` is false.
    """
    out = Path(output)
    record = run_record_path(out)
    if not _has_rows(out):
        return None
    if not record.is_file():
        if resume_unverified:
            return None
        raise MedVQAError(
            f"{out} holds predictions but no run record ({record.name}), so nothing says which model and "
            "settings wrote them; resuming could mix two runs. Use a new output file, or resume anyway "
            "with --resume-unverified (Python: resume_unverified=True): the rows already there are then "
            "recorded as unverified, not as rows of this run"
        )
    try:
        old = read_json(record)
    except MedVQAError as exc:
        raise MedVQAError(
            f"{record}: cannot read the settings of the run that wrote {out} ({exc}); use a new output file"
        ) from None
    if not isinstance(old, dict):
        raise MedVQAError(f"{record}: not a run record (a JSON object); use a new output file")
    # every setting the old record has (a key it lacks was added to records later)
    changed = [k for k in old if k not in _FREE_KEYS and _norm(k, old.get(k)) != _norm(k, run.get(k))]
    if changed:
        k = changed[0]
        raise MedVQAError(
            f"{out} holds predictions of a run with other settings ({', '.join(changed)}; "
            f"{k} was {_short(old.get(k))}, now {_short(run.get(k))}); resuming would mix two runs, "
            "so use a new output file"
        )
    return old


def _new_record(
    output: Path,
    run: Mapping[str, Any] | None,
    template: PromptTemplate | None,
    settings: Mapping[str, Any],
    done: Mapping[str, Any],
    resume_unverified: bool,
) -> dict[str, Any]:
    """The run record to write before generating (checked against the old one first)."""
    record: dict[str, Any] = dict(run or {})
    record.setdefault("prompt", None if template is None else template.to_dict())
    for key, value in settings.items():
        record.setdefault(key, value)
    old = check_run_record(output, record, resume_unverified=resume_unverified) if done else None
    if done and old is None:  # resumed without a record: the rows there are not this run's
        record["unverified_rows"] = {"n": len(done), "ids": list(done)}
    elif old is not None and old.get("unverified_rows"):
        record["unverified_rows"] = old["unverified_rows"]
    return record
