"""Predict and score: generate answers for samples, then score them under several profiles.

The evaluation step of the pipeline (``medvqa predict-and-score``, the sweep and the demo): answers
come from :func:`medvqa.generation.generate_answers` (streamed to a JSON Lines file, resumable),
scores from :func:`medvqa.metrics.evaluate` under each named profile. Files written in
``output_dir`` for an evaluation called ``name``::

    <name>.predictions.jsonl   one Prediction per line (per-item answers)
    <name>.items.jsonl         per-item scores of every profile
    <name>.scores.json         aggregates with numerators, denominators and intervals
                               (a score file, see :func:`medvqa.metrics.read_scores`)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medvqa._errors import MedVQAError
from medvqa._extras import check_train_modules, names_train_extra, needs_train_extra
from medvqa._io import JsonlWriter
from medvqa._lock import RunLock
from medvqa.records import Prediction, VQASample
from medvqa.training._runner import is_main_process

__all__ = ["AS_RUN_NOTE", "EvalResult", "as_run_loading", "load_trained_model", "predict_and_score"]

AS_RUN_NOTE = (
    "as_run: reproduces the paper's evaluation flaws on purpose (LoRA dropout active at inference, "
    "seeded; fine-tuned models in fp16 without quantization, the base model in 4-bit; one question "
    "at a time); not a fair comparison"
)
"""The line recorded with (and printed for) every ``as_run`` evaluation."""


def as_run_loading(adapter: str | os.PathLike[str] | None) -> tuple[str, str]:
    """``(quantization, precision)`` the paper evaluated a model in.

    The paper scored its base model in 4-bit NF4 (the QLoRA base, float16 compute) and its
    fine-tuned models on a float16 base without quantization.

    >>> as_run_loading(None), as_run_loading("runs/two_stage/stage2/adapter")
    (('nf4', 'fp16'), ('none', 'fp16'))
    """
    return ("nf4", "fp16") if adapter is None else ("none", "fp16")


@dataclass(frozen=True)
class EvalResult:
    """Scores of one evaluation.

    Attributes:
        name: The evaluation's name (a table row, e.g. ``two_stage``).
        n: Number of items scored.
        predictions_path: The per-item predictions file.
        scores: Profile → aggregate key (``"containment/all"``, ...) → aggregate dict
            (``value``, ``numerator``, ``denominator``, ``ci_low``, ``ci_high``, ...).
        info: Free-form facts about the run (model, adapter, prompt, transforms).
        predictions: The predictions themselves, in input order (not part of :meth:`to_dict`).
    """

    name: str
    n: int
    predictions_path: str
    scores: Mapping[str, Mapping[str, Mapping[str, Any]]]
    info: Mapping[str, Any] = field(default_factory=dict)
    predictions: tuple[Prediction, ...] = field(default=(), repr=False, compare=False)

    def aggregates(self, profile: str) -> dict[str, Any]:
        """The aggregates of one profile as :class:`medvqa.metrics.Aggregate` objects."""
        from medvqa.metrics import Aggregate

        return {k: Aggregate.from_dict(v) for k, v in self.scores[profile].items()}

    def value(self, profile: str, key: str) -> float | None:
        """One aggregate's value, e.g. ``value("paper", "containment/all")``.

        Raises:
            KeyError: The profile or key is absent (the message lists what exists).
        """
        if profile not in self.scores:
            raise KeyError(f"no profile {profile!r} in {self.name!r}; profiles: {', '.join(self.scores)}")
        aggs = self.scores[profile]
        if key not in aggs:
            raise KeyError(f"no aggregate {key!r} under {profile!r}; keys: {', '.join(aggs)}")
        v = aggs[key].get("value")
        return None if v is None else float(v)

    def flat(self) -> dict[str, Any]:
        """``{"<profile>/<key>": value, "<profile>/<key>:ci_low": ..., ...}`` for tables and plots."""
        out: dict[str, Any] = {}
        for profile, aggs in self.scores.items():
            for key, agg in aggs.items():
                out[f"{profile}/{key}"] = agg.get("value")
                out[f"{profile}/{key}:ci_low"] = agg.get("ci_low")
                out[f"{profile}/{key}:ci_high"] = agg.get("ci_high")
                out[f"{profile}/{key}:n"] = agg.get("denominator")
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return {
            "name": self.name,
            "n": self.n,
            "predictions_path": self.predictions_path,
            "scores": {p: {k: dict(v) for k, v in a.items()} for p, a in self.scores.items()},
            "info": dict(self.info),
        }

    def score_file(self, *, seed: int = 0, n_boot: int = 0) -> Any:
        """The scores as a :class:`medvqa.metrics.ScoreFile`: one run per profile, labelled :attr:`name`.

        This is what :func:`predict_and_score` writes to ``<name>.scores.json``; ``seed`` and
        ``n_boot`` record how the intervals were drawn. The runs carry the item count and
        hash when :attr:`predictions` are known.
        """
        from medvqa.metrics import Aggregate, ItemSet, ScoreFile, ScoreRun

        items = ItemSet.of(p.id for p in self.predictions) if self.predictions else None
        runs = []
        for profile, aggs in self.scores.items():
            runs.append(
                ScoreRun(
                    label=self.name,
                    profile=profile,
                    n=self.n,
                    aggregates={k: Aggregate.from_dict({"key": k, **v}) for k, v in aggs.items()},
                    file=self.predictions_path,
                    items=items,
                    seed=seed,
                    n_boot=n_boot,
                    info=dict(self.info),
                )
            )
        return ScoreFile(runs=tuple(runs))


def score_predictions(
    predictions: Sequence[Prediction],
    *,
    profiles: Sequence[str] = ("paper", "strict"),
    seed: int = 0,
    n_boot: int = 1000,
) -> tuple[dict[str, dict[str, dict[str, Any]]], list[dict[str, Any]]]:
    """Score predictions under each profile: aggregates per profile and merged per-item rows."""
    from medvqa.metrics import evaluate

    scores: dict[str, dict[str, dict[str, Any]]] = {}
    items: list[dict[str, Any]] = [{"id": p.id} for p in predictions]
    for profile in profiles:
        result = evaluate(predictions, profile=profile, seed=seed, n_boot=n_boot)
        scores[profile] = {key: agg.to_dict() for key, agg in result.aggregates.items()}
        for row, per in zip(items, result.per_item):
            for k, v in per.items():
                if k != "id":
                    row[f"{profile}/{k}"] = v
    return scores, items


# Long by its signature and docstring (20 options of the evaluate command); the body is the
# four steps generate -> score -> write -> log, each already a function or one call.
@names_train_extra  # a served model (medvqa.server.ServerEngine) needs no torch here
def predict_and_score(
    model: Any,
    processor: Any,
    samples: Sequence[VQASample],
    *,
    output_dir: str | os.PathLike[str],
    name: str,
    prompt: Any = None,
    profiles: Sequence[str] = ("paper", "strict"),
    max_new_tokens: int = 20,
    batch_size: int = 8,
    seed: int = 0,
    n_boot: int = 1000,
    progress: bool = True,
    info: Mapping[str, Any] | None = None,
    num_workers: int | None = None,
    sort_by_length: bool = False,
    report_to: str = "none",
    as_run: bool = False,
    dropout_seed: int = 0,
    resume_unverified: bool = False,
    on_bad_image: str = "error",
) -> EvalResult:
    """Generate answers for ``samples`` and score them under ``profiles``.

    Generation streams to ``<output_dir>/<name>.predictions.jsonl`` and resumes from it (a
    rerun generates only what is missing). Under ``torchrun``/``accelerate launch`` every
    process answers a shard (see :func:`medvqa.generation.generate_answers`); every process
    returns the same result and only the main one writes the score files. The model should be in ``eval`` mode (LoRA dropout
    off); :func:`load_trained_model` returns it so.

    Args:
        model: The model (base or with adapter).
        processor: Its processor.
        samples: What to answer.
        output_dir: Where the files go.
        name: The evaluation's name (file prefix and table row).
        prompt: A prompt template or name for :func:`medvqa.generation.generate_answers`
            (``None``: the paper's "Answer briefly.").
        profiles: Scoring profiles of :data:`medvqa.metrics.PROFILES`.
        max_new_tokens: Generation budget (paper: 20; 50 for nonsense questions).
        batch_size: Generation batch size.
        seed: Seed of the bootstrap intervals.
        n_boot: Bootstrap replicates (0: no intervals).
        progress: Show a progress bar.
        info: Facts recorded with the scores (model, adapter, transforms...) and in the
            predictions' run record (``<name>.predictions.run.json``): resuming the
            predictions with other facts is refused.
        num_workers: Data-loader workers of generation (``None``: the default of
            :func:`medvqa.generation.generate_answers`).
        sort_by_length: Batch by prompt length (same answers, same file order).
        report_to: Also log the aggregates (see :mod:`medvqa._tracking`): ``none``,
            ``tensorboard`` (to ``<output_dir>/tensorboard/<name>``), ``wandb`` or ``mlflow``.
        as_run: Reproduce the paper's evaluation *flaws* on purpose (never the default):
            every dropout module with ``p > 0`` (the LoRA dropout) stays active during
            generation, drawing its masks from ``dropout_seed`` (see
            :func:`medvqa.models.active_dropout`). Needs ``batch_size=1`` (the paper's loop;
            padding would change the draws), a new output name (an interrupted run cannot
            resume: the draws depend on everything generated before), input order (no
            ``sort_by_length``) and a single process (a shard would draw its masks in
            another order than the whole run). Load the model with
            :func:`load_trained_model` ``(..., as_run=True)`` for the paper's precision.
            ``info`` records ``as_run``, the seed and the number of active dropout modules.
        dropout_seed: Seed of the dropout masks in ``as_run`` mode.
        resume_unverified: Resume a predictions file that has no run record (see
            :func:`medvqa.generation.generate_answers`).
        on_bad_image: ``error`` or ``skip`` (see :func:`medvqa.generation.generate_answers`);
            skipped samples are not scored, and ``info["skipped_bad_images"]`` counts them.

    Returns:
        An :class:`EvalResult`.

    Raises:
        MedVQAError: No samples, another run writing the same files, or (``as_run``) a batch
            size other than 1, ``sort_by_length``, a multi-process launch or an existing
            predictions file.
    """
    from medvqa._tracking import check_report_to, log_scalars
    from medvqa.server import ServerEngine

    if not isinstance(model, ServerEngine):
        check_train_modules()  # a local model needs the training extra; a served one does not
    if not samples:
        raise MedVQAError(f"evaluation {name!r}: no samples to answer")
    check_report_to(report_to)
    out = Path(output_dir)
    pred_path = out / f"{name}.predictions.jsonl"
    facts = dict(info or {})
    if as_run:
        _check_as_run(pred_path, batch_size, sort_by_length)
    out.mkdir(parents=True, exist_ok=True)
    run = {"command": "predict-and-score", **facts, "as_run": as_run}
    if as_run:
        run["dropout_seed"] = dropout_seed
    # one lock for the whole evaluation, held by the main process only: under a multi-process
    # launch the other ranks write only their own part files (locked by generate_answers)
    lock: Any = RunLock(pred_path, folder=False, what="evaluation") if is_main_process() else nullcontext()
    with lock:
        predictions = _generate(
            model,
            processor,
            samples,
            pred_path,
            facts,
            as_run=as_run,
            dropout_seed=dropout_seed,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            prompt=prompt,
            progress=progress,
            num_workers=num_workers,
            sort_by_length=sort_by_length,
            run=run,
            resume_unverified=resume_unverified,
            on_bad_image=on_bad_image,
        )
        if len(predictions) < len(samples):
            facts["skipped_bad_images"] = len(samples) - len(predictions)
        scores, items = score_predictions(predictions, profiles=profiles, seed=seed, n_boot=n_boot)
        result = EvalResult(
            name=name,
            n=len(predictions),
            predictions_path=str(pred_path),
            scores=scores,
            info=facts,
            predictions=tuple(predictions),
        )
        if is_main_process():
            from medvqa.metrics import write_scores

            with JsonlWriter(out / f"{name}.items.jsonl", append=False, fsync=False) as w:
                w.write_all(items)
            write_scores(out / f"{name}.scores.json", result.score_file(seed=seed, n_boot=n_boot))
            log_scalars(report_to, result.flat(), log_dir=out / "tensorboard" / name)
    return result


def _check_as_run(pred_path: Path, batch_size: int, sort_by_length: bool) -> None:
    from medvqa._distributed import launch_shard

    if launch_shard().world_size > 1:
        raise MedVQAError(
            "as_run evaluation runs in one process: its dropout draws depend on the order of every "
            "question answered before, which a shard of a multi-process launch does not see; "
            "run it without torchrun/accelerate"
        )
    if sort_by_length:
        raise MedVQAError(
            "as_run evaluation answers the questions in input order (the dropout draws depend on it); "
            "do not pass sort_by_length"
        )
    if batch_size != 1:
        raise MedVQAError(
            f"as_run evaluation answers one question at a time, as the paper did (padding a batch "
            f"changes the dropout draws); got batch_size={batch_size}, pass 1"
        )
    if pred_path.exists() and pred_path.stat().st_size > 0:
        raise MedVQAError(
            f"{pred_path}: exists; an as_run evaluation cannot resume (its dropout draws depend on "
            "everything generated before): remove the file or choose another name"
        )


def _generate(
    model: Any,
    processor: Any,
    samples: Sequence[VQASample],
    pred_path: Path,
    facts: dict[str, Any],
    *,
    as_run: bool,
    dropout_seed: int,
    **kwargs: Any,
) -> list[Prediction]:
    """Generate (resumably), under seeded active dropout in ``as_run`` mode; record the mode in ``facts``."""
    import contextlib

    from medvqa.generation import generate_answers

    facts["as_run"] = as_run
    guard: Any = contextlib.nullcontext(0)
    if as_run:
        from medvqa.models import active_dropout

        guard = active_dropout(model, dropout_seed)
        facts.update(dropout_seed=dropout_seed, as_run_note=AS_RUN_NOTE)
    with guard as n_active:
        if as_run:
            facts["active_dropout_modules"] = n_active
        return generate_answers(model, processor, list(samples), output=pred_path, **kwargs)


@needs_train_extra
def load_trained_model(
    model: str,
    adapter: str | os.PathLike[str] | None = None,
    *,
    quantization: str = "nf4",
    precision: str = "auto",
    family: str | None = None,
    as_run: bool = False,
) -> tuple[Any, Any]:
    """Load a base model (``"tiny"``, a folder or a hub id), attach an adapter, and switch to eval mode.

    The base model and every fine-tuned model are loaded the same way (same quantization,
    same dtype), so that a comparison measures the adapter, not the loading; the paper scored
    its base model in 4-bit and its fine-tuned models in fp16.

    Args:
        model: The base model.
        adapter: A saved LoRA adapter folder, or ``None`` for the base model alone.
        quantization: ``nf4``, ``fp4``, ``int8`` or ``none``.
        precision: ``auto``, ``fp32``, ``fp16`` or ``bf16`` (compute dtype).
        family: The model family (``None``: detected; Idefics2 for ``"tiny"``).
        as_run: Load as the paper evaluated (see :func:`as_run_loading`): ``quantization``
            and ``precision`` are replaced by the paper's (fp16 falls back to fp32 on a CPU).

    Returns:
        ``(model, processor)`` with the model in ``eval`` mode.
    """
    from medvqa.models import load_adapter
    from medvqa.training._config import StageConfig
    from medvqa.training._runner import load_base_model

    if as_run:
        quantization, precision = as_run_loading(adapter)

    cfg = StageConfig(model=model, family=family, quantization=quantization, precision=precision)  # type: ignore[arg-type]
    base, processor = load_base_model(cfg)
    if adapter is None:
        base.eval()
        return base, processor
    return load_adapter(base, adapter), processor
