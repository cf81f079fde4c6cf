"""The run record beside a prediction file decides whether a run may resume it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvqa._errors import MedVQAError
from medvqa.generation import check_run_record, run_record_path

RUN = {"model": "m", "adapter": None, "dataset": "vqa_rad", "prompt": None, "max_new_tokens": 20}


def _file(tmp_path: Path, record: dict[str, object] | None) -> Path:
    out = tmp_path / "preds.jsonl"
    out.write_text('{"id": "a", "prediction": "yes"}\n')
    if record is not None:
        run_record_path(out).write_text(json.dumps(record))
    return out


def test_a_fresh_or_empty_file_needs_no_record(tmp_path: Path) -> None:
    assert check_run_record(tmp_path / "new.jsonl", RUN) is None
    (tmp_path / "empty.jsonl").write_text("")
    assert check_run_record(tmp_path / "empty.jsonl", RUN) is None


def test_same_settings_resume_and_counts_may_change(tmp_path: Path) -> None:
    out = _file(tmp_path, {**RUN, "n": 10, "limit": 10, "batch_size": 8})
    assert check_run_record(out, {**RUN, "n": 20, "limit": 20, "batch_size": 1}) is not None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "other"}, "model was 'm', now 'other'"),
        ({"max_new_tokens": 50}, "max_new_tokens was 20, now 50"),
        ({"prompt": {"name": "expert"}}, "prompt was None, now 'expert'"),
    ],
)
def test_other_settings_are_refused(tmp_path: Path, change: dict[str, object], message: str) -> None:
    out = _file(tmp_path, RUN)
    with pytest.raises(MedVQAError, match="other settings") as info:
        check_run_record(out, {**RUN, **change})
    assert message in str(info.value)


def test_a_setting_the_old_run_had_and_this_one_lacks_is_refused(tmp_path: Path) -> None:
    out = _file(tmp_path, {**RUN, "transform": "swap_images"})
    with pytest.raises(MedVQAError, match="transform was 'swap_images', now None"):
        check_run_record(out, RUN)


def test_no_record_is_refused_unless_unverified(tmp_path: Path) -> None:
    out = _file(tmp_path, None)
    with pytest.raises(MedVQAError, match=r"no run record \(preds.run.json\).*resume_unverified=True"):
        check_run_record(out, RUN)
    assert check_run_record(out, RUN, resume_unverified=True) is None


def test_an_unreadable_record_is_an_error_naming_it(tmp_path: Path) -> None:
    out = _file(tmp_path, None)
    run_record_path(out).write_text("{not json")
    with pytest.raises(MedVQAError, match=r"preds.run.json: cannot read the settings"):
        check_run_record(out, RUN)
