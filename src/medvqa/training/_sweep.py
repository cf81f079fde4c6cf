"""The pretraining-size sweep of the paper's Figure 3.

For each stage-1 size (0, 7K, 20K and 55K ROCO pairs by default) the sweep trains stage 1 on
a nested seeded subset of that size (the 7K subset lies inside the 20K one, which lies inside
the 55K one), continues the same adapter in stage 2, evaluates the result, and collects one row
per size into a table (JSON, CSV, Markdown) and a plot. Size 0 is stage 2 alone on a fresh
adapter. Each size lives in its own folder, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvqa._errors import MedVQAError
from medvqa._extras import needs_train_extra
from medvqa._io import atomic_write_json, atomic_write_text
from medvqa.records import VQASample
from medvqa.training._config import StageConfig
from medvqa.training._evaluate import EvalResult, load_trained_model, predict_and_score
from medvqa.training._model import load_base_model
from medvqa.training._results import TwoStageResult
from medvqa.training._runner import is_main_process, run_two_stage
from medvqa.training._samples import load_stage_samples

__all__ = ["DEFAULT_SIZES", "SweepResult", "run_sweep"]

_DIAGNOSTICS = frozenset({"empty_predictions", "closed_undecided", "closed_conflicting"})

DEFAULT_SIZES: tuple[int, ...] = (0, 7_000, 20_000, 55_000)
"""The paper's stage-1 sizes (Figure 3)."""


@dataclass(frozen=True)
class SweepResult:
    """The sweep's table and files.

    Attributes:
        rows: One dict per size: ``stage1_size``, training facts (steps, losses) and the
            flattened scores (``"<profile>/<metric>/<subset>"`` with ``:ci_low``,
            ``:ci_high`` and ``:n`` companions).
        output_dir: The sweep folder (``sweep.json``, ``sweep.csv``, ``sweep.md``, ``sweep.png`` and
            its data ``sweep_plot.json``).
        runs: The two-stage result of each size.
        evaluations: The evaluation of each size.
    """

    rows: tuple[Mapping[str, Any], ...]
    output_dir: str
    runs: tuple[TwoStageResult, ...]
    evaluations: tuple[EvalResult, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "output_dir": self.output_dir,
            "rows": [dict(r) for r in self.rows],
            "runs": [r.to_dict() for r in self.runs],
            "evaluations": [e.to_dict() for e in self.evaluations],
        }


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _table_markdown(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    from medvqa._tables import interval, markdown_table

    head = ["stage-1 size", "stage-1 steps", "stage-2 steps", "n", *metrics]
    body: list[list[object]] = []
    for r in rows:
        cells: list[object] = [r["stage1_size"], r.get("stage1_steps"), r.get("stage2_steps"), r.get("n")]
        for m in metrics:
            v = r.get(m)
            cells.append(
                None if v is None else _fmt(v) + interval(r.get(f"{m}:ci_low"), r.get(f"{m}:ci_high"))
            )
        body.append(cells)
    return markdown_table(head, body) + "\n"


def _headline_metrics(evaluation: EvalResult, profiles: Sequence[str]) -> list[str]:
    """The flattened keys of each profile's overall aggregates (subset ``all``), profile by profile."""
    return [
        f"{p}/{key}"
        for p in profiles
        for key, agg in evaluation.scores.get(p, {}).items()
        if agg.get("subset", "all") == "all" and agg.get("name") not in _DIAGNOSTICS
    ]


# Over 60 lines with its public docstring; the code is 39 lines.
@needs_train_extra
def run_sweep(
    stage1: StageConfig,
    stage2: StageConfig,
    *,
    output_dir: str | os.PathLike[str],
    sizes: Sequence[int] = DEFAULT_SIZES,
    eval_samples: Sequence[VQASample] | None = None,
    eval_limit: int | None = None,
    stage1_samples: Sequence[VQASample] | None = None,
    stage2_samples: Sequence[VQASample] | None = None,
    model_factory: Callable[[], tuple[Any, Any]] | None = None,
    profiles: Sequence[str] = ("paper", "strict"),
    plot_metrics: Sequence[str] | None = None,
    max_new_tokens: int = 20,
    batch_size: int = 8,
    n_boot: int = 1000,
    seed: int = 0,
    resume: bool = True,
    progress: bool = True,
) -> SweepResult:
    """Train and evaluate one two-stage run per stage-1 size; collect a table and a plot.

    Args:
        stage1: The stage-1 config; its ``subset_size`` is replaced by each size (its
            ``subset_seed`` fixes the nested subsets).
        stage2: The stage-2 config (the same for every size).
        output_dir: The sweep folder; size ``s`` trains in ``<output_dir>/size_<s>``.
        sizes: Stage-1 sizes (0 = stage 2 only). Every size must fit the stage-1 data.
        eval_samples: The evaluation set; default: ``stage2``'s dataset, ``test`` split.
        eval_limit: Score only the first ``eval_limit`` evaluation samples, in dataset order
            (the paper scored the first 400 of VQA-RAD's 451).
        stage1_samples: The stage-1 pool (loaded once from ``stage1`` when ``None``).
        stage2_samples: The stage-2 samples (loaded from ``stage2`` when ``None``).
        model_factory: Returns a fresh ``(model, processor)`` for each size (default: load
            ``stage2.model``). A fresh model per size is needed: adapters are injected in place.
        profiles: Scoring profiles.
        plot_metrics: Row keys to plot (default: each profile's ``*/all`` aggregates).
        max_new_tokens: Generation budget.
        batch_size: Generation batch size.
        n_boot: Bootstrap replicates of the intervals.
        seed: Seed of the intervals.
        resume: Reuse finished sizes and resume interrupted ones.
        progress: Show progress bars.

    Returns:
        A :class:`SweepResult`.
    """
    if not sizes:
        raise MedVQAError("run_sweep: no sizes given")
    if any(s < 0 for s in sizes) or len(set(sizes)) != len(sizes):
        raise MedVQAError(f"run_sweep: sizes must be distinct and >= 0; got {list(sizes)}")
    stage1_samples, stage2_samples, eval_samples = _sweep_samples(
        stage1, stage2, sizes, stage1_samples, stage2_samples, eval_samples
    )
    plan = _SweepPlan(
        stage1=stage1,
        stage2=stage2,
        out=Path(output_dir),
        factory=model_factory or (lambda: load_base_model(stage2)),
        own_factory=model_factory is not None,
        stage1_samples=stage1_samples,
        stage2_samples=stage2_samples,
        eval_set=list(eval_samples)[: eval_limit if eval_limit is not None else None],
        resume=resume,
        scoring={
            "report_to": stage2.report_to,
            "profiles": profiles,
            "max_new_tokens": max_new_tokens,
            "batch_size": batch_size,
            "seed": seed,
            "n_boot": n_boot,
            "progress": progress,
        },
    )
    done = [_run_size(plan, size) for size in sorted(sizes)]
    rows = [row for row, _, _ in done]
    result = SweepResult(
        rows=tuple(rows),
        output_dir=str(plan.out),
        runs=tuple(run for _, run, _ in done),
        evaluations=tuple(ev for _, _, ev in done),
    )
    if is_main_process():
        metrics = list(plot_metrics) if plot_metrics else _headline_metrics(result.evaluations[0], profiles)
        _write_sweep(plan.out, result, metrics)
    return result


def _sweep_samples(
    stage1: StageConfig,
    stage2: StageConfig,
    sizes: Sequence[int],
    stage1_samples: Sequence[VQASample] | None,
    stage2_samples: Sequence[VQASample] | None,
    eval_samples: Sequence[VQASample] | None,
) -> tuple[Sequence[VQASample] | None, Sequence[VQASample], Sequence[VQASample]]:
    """The stage-1 pool (``None`` when every size is 0), the stage-2 samples and the evaluation set.

    Raises:
        MedVQAError: The largest size exceeds the stage-1 pool.
    """
    if stage1_samples is None and any(s > 0 for s in sizes):
        stage1_samples = load_stage_samples(stage1.replace(subset_size=None))
    if stage1_samples is not None and max(sizes) > len(stage1_samples):
        raise MedVQAError(
            f"run_sweep: the largest size {max(sizes)} exceeds the {len(stage1_samples)} stage-1 samples available"
        )
    if stage2_samples is None:
        stage2_samples = load_stage_samples(stage2)
    if eval_samples is None:
        eval_samples = load_stage_samples(stage2.replace(subset_size=None), split="test")
    return stage1_samples, stage2_samples, eval_samples


@dataclass(frozen=True)
class _SweepPlan:
    """What every size of a sweep shares: the stages, the data, the model factory, the scoring."""

    stage1: StageConfig
    stage2: StageConfig
    out: Path
    factory: Callable[[], tuple[Any, Any]]
    own_factory: bool
    stage1_samples: Sequence[VQASample] | None
    stage2_samples: Sequence[VQASample]
    eval_set: list[VQASample]
    resume: bool
    scoring: Mapping[str, Any]


def _run_size(plan: _SweepPlan, size: int) -> tuple[dict[str, Any], TwoStageResult, EvalResult]:
    """Train and score one stage-1 size in ``<out>/size_<size>``: its table row, run and evaluation."""
    folder = plan.out / f"size_{size}"
    stage2 = plan.stage2
    model, processor = plan.factory()
    run = run_two_stage(
        None if size == 0 else plan.stage1.replace(subset_size=size),
        stage2,
        output_dir=folder,
        model=model,
        processor=processor,
        stage1_samples=plan.stage1_samples,
        stage2_samples=plan.stage2_samples,
        resume=plan.resume,
        progress=bool(plan.scoring["progress"]),
    )
    del model
    if stage2.model == "tiny" or plan.own_factory:
        base, proc = plan.factory()
        from medvqa.models import load_adapter

        trained = load_adapter(base, run.adapter_dir)
    else:
        trained, proc = load_trained_model(
            stage2.model, run.adapter_dir, quantization=stage2.quantization, precision=stage2.precision
        )
    info = {"stage1_size": size, "adapter": run.adapter_dir}
    ev = predict_and_score(
        trained, proc, plan.eval_set, output_dir=folder, name="eval", info=info, **plan.scoring
    )
    row: dict[str, Any] = {
        "stage1_size": size,
        "stage1_steps": None if run.stage1 is None else run.stage1.global_step,
        "stage1_train_loss": None if run.stage1 is None else run.stage1.train_loss,
        "stage2_steps": run.stage2.global_step,
        "stage2_train_loss": run.stage2.train_loss,
        "n": ev.n,
        **ev.flat(),
    }
    return row, run, ev


def _write_sweep(out: Path, result: SweepResult, metrics: Sequence[str]) -> None:
    """``sweep.json``, ``sweep.csv``, ``sweep.md``, and the plot ``sweep.png`` with its data."""
    from medvqa.plots import plot_sweep

    rows = result.rows
    atomic_write_json(out / "sweep.json", result.to_dict())
    cols = list(rows[0])
    csv = [",".join(cols)] + [",".join(_fmt(r.get(c)) for c in cols) for r in rows]
    atomic_write_text(out / "sweep.csv", "\n".join(csv) + "\n")
    atomic_write_text(out / "sweep.md", _table_markdown(rows, metrics))
    plot_sweep(list(rows), out / "sweep.png", metrics=metrics, data_path=out / "sweep_plot.json")
