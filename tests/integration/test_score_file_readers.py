"""Every writer of score files × every reader: the reader gets the aggregates the writer computed.

Writers: ``medvqa score --format json -o``, ``medvqa evaluate`` (``NAME.scores.json``, written
by :func:`medvqa.training.predict_and_score`, which ``two-stage --evaluate``, the sweep and the
demo call too), ``medvqa ablate`` (``scores.json``), and the two layouts of earlier releases
(``medvqa.scores/1`` and the old ``NAME.scores.json``). Readers: :func:`medvqa.metrics.read_scores`,
``medvqa report`` (every format) and the model card of ``medvqa export``. The expected
aggregates come from scoring each run's prediction file again with
:func:`medvqa.metrics.evaluate`, not from the file under test.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from medvqa.cli import main
from medvqa.metrics import Aggregate, evaluate, read_predictions, read_scores
from medvqa.records import Prediction

N_BOOT = 20

Expected = dict[tuple[str, str], dict[str, Aggregate]]
"""(run label, profile) → aggregates."""


def _preds_file(folder: Path) -> Path:
    refs = ["yes", "no", "left lung", "liver", "yes", "ct"]
    said = ["Yes.", "No", "the left lung", "spleen", "", "CT scan"]
    path = folder / "base.jsonl"
    rows = [
        Prediction(f"s{i}", "q", refs[i], said[i], "closed" if refs[i] in ("yes", "no") else "open").to_dict()
        for i in range(6)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _rescored(files: dict[str, Path], profiles: list[str]) -> Expected:
    """Each labelled prediction file scored again, independently of the file under test."""
    out: Expected = {}
    for label, path in files.items():
        preds = read_predictions(path)
        for p in profiles:
            out[(label, p)] = dict(evaluate(preds, profile=p, seed=0, n_boot=N_BOOT).aggregates)
    return out


def _profiles_in(path: Path) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return read_scores(path).profiles()


def write_score(folder: Path) -> tuple[Path, Expected]:
    preds = _preds_file(folder)
    out = folder / "scores.json"
    argv = ["score", str(preds), "--profile", "paper", "strict", "--n-boot", str(N_BOOT), "-o", str(out)]
    assert main([*argv, "--format", "json"]) == 0
    return out, _rescored({"base": preds}, ["paper", "strict"])


def write_score_v1(folder: Path) -> tuple[Path, Expected]:
    """What ``medvqa score --format json`` wrote in earlier releases."""
    preds = _preds_file(folder)
    expected = _rescored({"base": preds}, ["paper", "strict"])
    runs = [
        {"file": str(preds), **evaluate(read_predictions(preds), profile=p, n_boot=N_BOOT).to_dict()}
        for p in ("paper", "strict")
    ]
    out = folder / "v1.json"
    out.write_text(json.dumps({"format": "medvqa.scores/1", "fields": {}, "runs": runs}), encoding="utf-8")
    return out, expected


def write_evaluate_legacy(folder: Path) -> tuple[Path, Expected]:
    """What ``medvqa evaluate`` wrote to ``NAME.scores.json`` in earlier releases."""
    from medvqa.training import EvalResult

    preds = _preds_file(folder)
    expected = _rescored({"old_eval": preds}, ["paper", "strict"])
    scores = {p: {k: a.to_dict() for k, a in expected[("old_eval", p)].items()} for p in ("paper", "strict")}
    old = EvalResult(
        name="old_eval", n=6, predictions_path=str(preds), scores=scores, info={"dataset": "vqa_rad"}
    )
    out = folder / "old_eval.scores.json"
    out.write_text(json.dumps(old.to_dict()), encoding="utf-8")
    return out, expected


TINY = ["--model", "tiny", "--quantization", "none", "--dataset", "vqa_rad", "--limit", "4"]
TINY += ["--max-new-tokens", "3", "--n-boot", str(N_BOOT), "--no-progress"]


def write_evaluate(folder: Path) -> tuple[Path, Expected]:
    pytest.importorskip("transformers")
    assert main(["evaluate", *TINY, "--output", str(folder), "--name", "tiny_eval"]) == 0
    out = folder / "tiny_eval.scores.json"
    profiles = _profiles_in(out)
    assert profiles
    return out, _rescored({"tiny_eval": folder / "tiny_eval.predictions.jsonl"}, profiles)


def write_ablate(folder: Path) -> tuple[Path, Expected]:
    pytest.importorskip("transformers")
    argv = ["ablate", *TINY, "--split", "test", "--transforms", "noimage", "--output", str(folder)]
    assert main(argv) == 0
    out = folder / "scores.json"
    files = {name: folder / "predictions" / f"{name}.jsonl" for name in ("baseline", "noimage")}
    return out, _rescored(files, _profiles_in(out))


WRITERS: dict[str, Callable[[Path], tuple[Path, Expected]]] = {
    "score": write_score,
    "score_v1": write_score_v1,
    "evaluate_legacy": write_evaluate_legacy,
    "evaluate": write_evaluate,
    "ablate": write_ablate,
}
NEEDS_TRAIN = {"evaluate", "ablate"}


@pytest.fixture(
    scope="module",
    params=[pytest.param(w, marks=[pytest.mark.train] if w in NEEDS_TRAIN else []) for w in WRITERS],
)
def written(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Expected]:
    name = request.param
    return WRITERS[name](tmp_path_factory.mktemp(name))


def _same(got: Aggregate, want: Aggregate) -> bool:
    keep = ("name", "subset", "value", "numerator", "denominator", "ci_low", "ci_high")
    return all(getattr(got, k) == pytest.approx(getattr(want, k)) for k in keep)


def read_with_api(path: Path) -> Expected:
    return {(r.label, r.profile): dict(r.aggregates) for r in read_scores(path).runs}


def read_with_report(path: Path) -> Expected:
    out: Expected = {}
    for profile in _profiles_in(path):
        keys = list(next(r for r in read_scores(path).runs if r.profile == profile).aggregates)
        metrics = [a for k in keys for a in ("--metric", k)]
        argv = ["report", str(path), "--profile", profile, "--format", "json", *metrics]
        table = _run_cli(argv)
        for row in json.loads(table)["rows"]:
            out[(row["run"], profile)] = {
                k: Aggregate.from_dict(v) for k, v in row["values"].items() if v is not None
            }
    return out


def read_with_export(path: Path) -> dict[tuple[str, str], dict[tuple[str, str], tuple[object, ...]]]:
    """The model card's metric rows: (run, profile) → (metric, subset) → (value, n, ci_low, ci_high)."""
    from medvqa.export import _metrics

    out: dict[tuple[str, str], dict[tuple[str, str], tuple[object, ...]]] = {}
    for row in _metrics([path]):
        cell = (row["value"], row["n"], row["ci_low"], row["ci_high"])
        out.setdefault((row["evaluation"], row["profile"]), {})[(row["metric"], row["subset"])] = cell
    return out


def _run_cli(argv: list[str]) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_the_api_reads_every_writer(written: tuple[Path, Expected]) -> None:
    path, expected = written
    got = read_with_api(path)
    assert set(got) == set(expected)
    for run, aggs in expected.items():
        assert list(got[run]) == list(aggs), run
        assert all(_same(got[run][k], a) for k, a in aggs.items()), run


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_report_reads_every_writer(written: tuple[Path, Expected]) -> None:
    path, expected = written
    got = read_with_report(path)
    assert set(got) == set(expected)
    for run, aggs in expected.items():
        assert set(got[run]) == set(aggs), run
        assert all(_same(got[run][k], a) for k, a in aggs.items()), run


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_the_model_card_reads_every_writer(written: tuple[Path, Expected]) -> None:
    path, expected = written
    got = read_with_export(path)
    assert set(got) == set(expected)
    for run, aggs in expected.items():
        want = {(a.name, a.subset): (a.value, a.denominator, a.ci_low, a.ci_high) for a in aggs.values()}
        want = {k: v for k, v in want.items() if v[0] is not None}  # the card leaves out empty subsets
        assert set(got[run]) == set(want), run
        assert all(got[run][k] == pytest.approx(v) for k, v in want.items()), run


@pytest.mark.parametrize("fmt", ["md", "csv", "latex"])
def test_report_renders_every_writer(written: tuple[Path, Expected], fmt: str) -> None:
    path, expected = written
    for (label, profile), aggs in expected.items():
        key = next(k for k, a in aggs.items() if a.value is not None and k != "empty_predictions")
        text = _run_cli(["report", str(path), "--profile", profile, "--metric", key, "--format", fmt])
        shown = label.replace("_", "\\_") if fmt == "latex" else label
        value = repr(aggs[key].value) if fmt == "csv" else f"{aggs[key].value:.3f}"
        assert shown in text and value in text, (label, profile, fmt)
