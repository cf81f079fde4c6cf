"""Helpers shared by the example scripts: reading a recipe file, the ``--tiny`` switch, one evaluation.

A recipe file is YAML with up to four sections:

- ``stage1`` / ``stage2``: :class:`medvqa.training.StageConfig` fields (training);
- ``evaluation``: what to answer and how to score it (see :class:`Evaluation`);
- ``sweep``: ``sizes`` of the pretraining-size sweep.

Paths in a recipe are relative to the directory you run the command from (the repository root in
the header comments). ``--tiny`` swaps in the tiny random model, the sample bundled with medvqa and
a few optimizer steps, so that every recipe runs in seconds on a CPU (this is what CI runs).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from medvqa.training import StageConfig

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = Path("medvqa-output/examples")

TINY_STAGE: dict[str, Any] = {
    "model": "tiny",
    "quantization": "none",
    "data_dir": None,
    "max_steps": 2,
    "batch_size": 2,
    "grad_accum": 1,
    "warmup_steps": 0,
    "logging_steps": 1,
    "save_steps": 1000,
    "learning_rate": 1e-3,
}
"""What ``--tiny`` changes in every stage (the schedule shape, masking and seeds stay)."""

TINY_STAGE1_SIZE = 8
TINY_EVAL_LIMIT = 4


@dataclass(frozen=True)
class Evaluation:
    """The ``evaluation`` section of a recipe.

    Attributes:
        name: Row name (file prefix of the outputs).
        model: Base model (``tiny``, a folder or a hub id).
        quantization: ``nf4`` (the paper), ``fp4``, ``int8`` or ``none``.
        precision: Compute dtype (``auto``: bf16 where supported).
        adapter: LoRA adapter folder (``null``: the base model).
        dataset: Dataset name.
        data: Dataset folder (``null``: the bundled sample).
        split: Split to answer.
        limit: First N questions in dataset order (the paper: 400).
        prompt: ``paper``, ``expert`` or ``caption``.
        transform: ``swap_images`` or ``null``.
        profiles: Scoring profiles.
        max_new_tokens: Generation budget (paper: 20; 50 for nonsense questions).
        batch_size: Generation batch size (the paper: 1).
        n_boot: Bootstrap replicates.
        seed: Seed of the transform and bootstrap (and, with ``as_run``, of the dropout masks).
        as_run: Evaluate as the paper ran it, flaws included (LoRA dropout active, seeded;
            an adapter on an fp16 base without quantization; batch size 1): replaces
            ``quantization``, ``precision`` and ``batch_size``. Never the default.
    """

    name: str
    model: str = "HuggingFaceM4/idefics2-8b"
    quantization: str = "nf4"
    precision: str = "auto"
    adapter: str | None = None
    dataset: str = "vqa_rad"
    data: str | None = None
    split: str = "test"
    limit: int | None = 400
    prompt: str = "paper"
    transform: str | None = None
    profiles: Sequence[str] = field(default=("paper", "strict"))
    max_new_tokens: int = 20
    batch_size: int = 1
    n_boot: int = 1000
    seed: int = 0
    as_run: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown evaluation keys {sorted(unknown)}; valid: {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe file."""

    path: Path
    stage1: StageConfig | None
    stage2: StageConfig | None
    evaluation: Evaluation | None
    sweep_sizes: tuple[int, ...] | None
    extra: dict[str, Any]


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file."""
    p = Path(path)
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    allowed = {"stage1", "stage2", "evaluation", "sweep", "extra"}
    if set(data) - allowed:
        raise ValueError(f"{p}: unknown sections {sorted(set(data) - allowed)}; valid: {sorted(allowed)}")
    s1 = StageConfig.from_dict(data["stage1"], file=str(p)) if data.get("stage1") else None
    s2 = StageConfig.from_dict(data["stage2"], file=str(p)) if data.get("stage2") else None
    ev = Evaluation.from_dict(data["evaluation"]) if data.get("evaluation") else None
    sizes = tuple(int(s) for s in data["sweep"]["sizes"]) if data.get("sweep") else None
    return Recipe(p, s1, s2, ev, sizes, dict(data.get("extra") or {}))


def parser(doc: str | None, default_config: str) -> argparse.ArgumentParser:
    """The command line every example script shares."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=HERE / default_config, help="recipe file (YAML)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="root folder of all example outputs")
    p.add_argument(
        "--tiny", action="store_true", help="tiny random model + bundled sample + a few steps (CI)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def tiny_stage(cfg: StageConfig, *, stage1: bool = False) -> StageConfig:
    """The ``--tiny`` version of a stage."""
    extra = {"subset_size": TINY_STAGE1_SIZE} if stage1 else {}
    return cfg.replace(**TINY_STAGE, **extra)


def tiny_evaluation(ev: Evaluation) -> Evaluation:
    """The ``--tiny`` version of an evaluation (bundled data: SLAKE stands in for PathVQA)."""
    from dataclasses import replace

    dataset = "slake" if ev.dataset == "path_vqa" else ev.dataset
    split = "train" if dataset == "med_halt" else ev.split
    return replace(
        ev,
        model="tiny",
        quantization="none",
        data=None,
        dataset=dataset,
        split=split,
        limit=TINY_EVAL_LIMIT,
        n_boot=0,
        batch_size=1 if ev.as_run else 4,
    )


def two_stage(recipe_path: Path, output: Path, *, tiny: bool, progress: bool) -> Any:
    """Train (or reuse) the two-stage adapter of ``two_stage.yaml``; other recipes build on it."""
    from medvqa.training import run_two_stage

    recipe = load_recipe(recipe_path)
    assert recipe.stage1 is not None and recipe.stage2 is not None
    s1, s2 = recipe.stage1, recipe.stage2
    if tiny:
        s1, s2 = tiny_stage(s1, stage1=True), tiny_stage(s2)
    return run_two_stage(s1, s2, output_dir=output / "two_stage", progress=progress)


def evaluate(ev: Evaluation, output: Path, *, progress: bool, samples: Sequence[Any] | None = None) -> Any:
    """Answer and score one table row; returns the :class:`medvqa.training.EvalResult`."""
    from medvqa.chat import get_prompt
    from medvqa.data import load, sample_root
    from medvqa.training import load_trained_model, predict_and_score

    if samples is None:
        bundled = {"vqa_rad": "vqa_rad", "slake": "slake", "med_halt": "med_halt", "roco": "captions"}
        source = ev.data if ev.data is not None else sample_root() / bundled[ev.dataset]
        samples = list(load(ev.dataset, source, split=ev.split))[: ev.limit]
    if ev.transform == "swap_images":
        from medvqa.ablations import SwapImages

        samples = SwapImages(seed=ev.seed)(samples)
    elif ev.transform is not None:
        raise ValueError(f"unknown transform {ev.transform!r}; valid: swap_images")
    stale = output / "evaluations" / f"{ev.name}.predictions.jsonl"
    if ev.as_run and stale.exists():  # seeded, so generating again gives the same answers
        print(f"{stale}: an as-run evaluation cannot resume; generating it again")
        stale.unlink()
    model, processor = load_trained_model(
        ev.model, ev.adapter, quantization=ev.quantization, precision=ev.precision, as_run=ev.as_run
    )
    result = predict_and_score(
        model,
        processor,
        samples,
        output_dir=output / "evaluations",
        name=ev.name,
        prompt=get_prompt(ev.prompt),
        profiles=tuple(ev.profiles),
        max_new_tokens=ev.max_new_tokens,
        batch_size=1 if ev.as_run else ev.batch_size,
        seed=ev.seed,
        n_boot=ev.n_boot,
        progress=progress,
        info={"model": ev.model, "adapter": ev.adapter, "dataset": ev.dataset, "split": ev.split},
        as_run=ev.as_run,
        dropout_seed=ev.seed,
    )
    for profile, aggs in result.scores.items():
        shown = ", ".join(
            f"{k}={a['value']:.3f}"
            for k, a in aggs.items()
            if a.get("subset") == "all" and a["value"] is not None
        )
        print(f"{ev.name} [{profile}, n={result.n}]: {shown}")
    return result


def run_evaluation_recipe(
    doc: str | None, default_config: str, argv: Sequence[str] | None, *, needs_two_stage: bool
) -> Any:
    """The body of the evaluation-only scripts: parse, apply ``--tiny``, evaluate one row."""
    from dataclasses import replace

    args = parser(doc, default_config).parse_args(argv)
    recipe = load_recipe(args.config)
    if recipe.evaluation is None:
        raise ValueError(f"{args.config} has no evaluation section")
    ev = recipe.evaluation
    if args.tiny:
        ev = tiny_evaluation(ev)
        if needs_two_stage:
            run = two_stage(HERE / "two_stage.yaml", args.output, tiny=True, progress=not args.no_progress)
            ev = replace(ev, adapter=run.adapter_dir)
    elif needs_two_stage and (ev.adapter is None or not Path(ev.adapter).is_dir()):
        raise FileNotFoundError(
            f"adapter {ev.adapter} not found: run examples/two_stage.py first (or set evaluation.adapter)"
        )
    return evaluate(ev, args.output, progress=not args.no_progress)
