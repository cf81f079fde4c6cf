"""The ablation driver: run a model on the samples as they are and under each transform.

:func:`run_ablations` generates every run (streamed, resumable prediction files), then
scores them with :func:`~medvqa.ablations.ablation_report`. It is the only part of
:mod:`medvqa.ablations` that needs the ``medvqa[train]`` extra, and it imports torch only
when called, so importing this module stays light.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvqa._io import atomic_write_json
from medvqa.ablations.abstention import DEFAULT_ABSTENTION_RULES, AbstentionRules
from medvqa.ablations.report import AblationReport, ablation_report
from medvqa.records import Prediction, VQASample

if TYPE_CHECKING:
    from medvqa.ablations.transforms import Transform
    from medvqa.chat import PromptTemplate

__all__ = ["run_ablations"]

_RESERVED = "baseline"


def _file_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.+=-]+", "_", name).strip("._")
    if not safe:
        raise ValueError(f"run name {name!r} gives an empty file name")
    return safe


# Long for its 20 keyword options and their docstring; the body is four steps: settings, generate
# every run, score, write.
def run_ablations(
    model: Any,
    processor: Any,
    samples: Sequence[VQASample],
    transforms: Mapping[str, Transform],
    output: str | os.PathLike[str],
    *,
    nonsense: Mapping[str, Sequence[VQASample]] | None = None,
    profile: str = "strict",
    rules: AbstentionRules = DEFAULT_ABSTENTION_RULES,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
    batch_size: int = 8,
    max_new_tokens: int = 20,
    nonsense_max_new_tokens: int = 50,
    prompt: PromptTemplate | str | None = None,
    progress: bool = True,
    config: Mapping[str, Any] | None = None,
    num_workers: int | None = None,
    sort_by_length: bool = False,
    resume_unverified: bool = False,
    on_bad_image: str = "error",
) -> AblationReport:
    """Run a model on the samples as they are and under each transform, then score the probes.

    Writes, under ``output``: ``predictions/baseline.jsonl`` (the untransformed samples),
    ``predictions/<name>.jsonl`` for every transform and every nonsense run (each row's
    metadata says which transform produced it), ``ablations.json`` (the transforms and
    settings), ``report.md`` / ``report.json`` (see :func:`ablation_report`) and
    ``scores.json``, the normal and every ablated run scored under ``profile`` (a score file,
    see :func:`medvqa.metrics.read_scores`). Prediction files are streamed and resumed by :func:`medvqa.generation.generate_answers`, so an
    interrupted run started again with the same ``output`` loses nothing.

    Needs the ``medvqa[train]`` extra (generation); torch is imported only here.

    Args:
        model: An Idefics2 model (see :mod:`medvqa.models`).
        processor: Its processor.
        samples: The questions of the normal run.
        transforms: Ablations by name (:class:`medvqa.ablations.Transform` objects, e.g.
            from :func:`medvqa.ablations.parse_transforms`); the name ``baseline`` is reserved.
        output: Output folder.
        nonsense: Nonsense-question sample lists by name (already paired with images, e.g.
            by :class:`medvqa.ablations.NonsenseQuestions`), scored for abstention.
        profile: Scoring profile of the paired differences.
        rules: Abstention rules.
        seed: Seed of the bootstraps.
        n_boot: Bootstrap replicates.
        level: Confidence level.
        batch_size: Generation batch size.
        max_new_tokens: Longest answer for the normal and ablated runs (paper: 20).
        nonsense_max_new_tokens: Longest answer for nonsense questions (paper: 50).
        prompt: Prompt template or name passed to generation (``None``: per-sample default).
        progress: Show progress bars.
        num_workers: Data-loader workers of generation (``None``: the default of
            :func:`medvqa.generation.generate_answers`).
        sort_by_length: Batch by prompt length (same answers, same file order).
        config: Extra settings recorded in the report, and in each prediction file's run
            record (resuming a file with other settings is refused).
        resume_unverified: Resume prediction files that have no run record (see
            :func:`medvqa.generation.generate_answers`).
        on_bad_image: ``error`` or ``skip`` (see :func:`medvqa.generation.generate_answers`);
            a skipped sample is missing from that run's file and listed in its run record.

    Returns:
        The report (also written to ``output``).
    """
    from medvqa._distributed import is_main_process

    names = _check_names([*transforms, *(nonsense or {})])
    out = Path(output)
    settings: dict[str, Any] = {
        "profile": profile,
        "seed": seed,
        "n_boot": n_boot,
        "level": level,
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        "nonsense_max_new_tokens": nonsense_max_new_tokens,
        "n_samples": len(samples),
        "transforms": {name: t.to_dict() for name, t in transforms.items()},
        "nonsense": {name: len(v) for name, v in (nonsense or {}).items()},
        "abstention_rules": rules.to_dict(),
        **dict(config or {}),
    }
    if is_main_process():
        atomic_write_json(out / "ablations.json", settings)
    generate = _Generator(
        model,
        processor,
        out / "predictions",
        described={name: t.to_dict() for name, t in transforms.items()},
        options={
            "batch_size": batch_size,
            "prompt": prompt,
            "progress": progress,
            "num_workers": num_workers,
            "sort_by_length": sort_by_length,
            "resume_unverified": resume_unverified,
            "on_bad_image": on_bad_image,
        },
        config=dict(config or {}),
    )
    baseline = generate(_RESERVED, samples, max_new_tokens)
    runs = {name: generate(name, t(samples), max_new_tokens) for name, t in transforms.items()}
    nonsense_runs = {
        name: generate(name, items, nonsense_max_new_tokens) for name, items in (nonsense or {}).items()
    }
    shown = {k: v for k, v in settings.items() if k not in ("transforms", "abstention_rules", "nonsense")}
    shown["runs"] = ", ".join([_RESERVED, *names])
    report = ablation_report(
        baseline,
        runs,
        nonsense=nonsense_runs,
        profile=profile,
        rules=rules,
        seed=seed,
        n_boot=n_boot,
        level=level,
        config=shown,
    )
    if is_main_process():
        report.write(out)
        _write_run_scores(out, {_RESERVED: baseline, **runs}, profile, seed, n_boot, config)
    return report


def _write_run_scores(
    out: Path,
    runs: Mapping[str, Sequence[Prediction]],
    profile: str,
    seed: int,
    n_boot: int,
    config: Mapping[str, Any] | None,
) -> None:
    """``scores.json``: the normal and every ablated run scored under ``profile`` (a score file)."""
    from medvqa.metrics import build_score_file, write_scores

    files = {name: str(out / "predictions" / f"{_file_name(name)}.jsonl") for name in runs}
    scores = build_score_file(runs, profiles=profile, seed=seed, n_boot=n_boot, files=files, info=config)
    write_scores(out / "scores.json", scores)


def _check_names(names: list[str]) -> list[str]:
    """Refuse the reserved run name and names that map to one file name."""
    if _RESERVED in names:
        raise ValueError(f"the run name {_RESERVED!r} is reserved for the untransformed run")
    files = [_file_name(n) for n in names]
    clash = sorted({f for f in files if files.count(f) > 1})
    if clash:
        raise ValueError(f"run names map to the same file name {clash}; rename them")
    return names


class _Generator:
    """Generates one run's answers into ``<folder>/<run name>.jsonl`` (streamed, resumable)."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        folder: Path,
        *,
        described: Mapping[str, Any],
        options: Mapping[str, Any],
        config: Mapping[str, Any],
    ) -> None:
        self.model, self.processor, self.folder = model, processor, folder
        self.described, self.options, self.config = described, options, config

    def __call__(self, name: str, items: Sequence[VQASample], tokens: int) -> list[Prediction]:
        from medvqa.generation import generate_answers

        run = {"command": "ablate", "run": name, "transform": self.described.get(name), **self.config}
        return generate_answers(
            self.model,
            self.processor,
            items,
            max_new_tokens=tokens,
            output=self.folder / f"{_file_name(name)}.jsonl",
            run=run,
            **self.options,
        )
