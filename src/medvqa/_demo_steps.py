"""The steps of :func:`medvqa.pipeline.run_demo`: data, training, the table rows, the sweep.

Each step is one function that takes what the earlier steps produced and returns what the
later ones need; :mod:`medvqa.pipeline` runs them in order and writes the report. Training
and generation import the ``medvqa[train]`` stack when a step runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medvqa._distributed import is_main_process
from medvqa._errors import MedVQAError
from medvqa.training import StageConfig, paper_stage1, paper_stage2

if TYPE_CHECKING:  # pragma: no cover
    from medvqa.ablations import AbstentionResult, RelianceResult
    from medvqa.pipeline import DemoConfig
    from medvqa.training import EvalResult, StageResult, SweepResult, TwoStageResult

_TOY_TRAINING: dict[str, Any] = {
    "batch_size": 4,
    "grad_accum": 1,
    "warmup_steps": 2,
    "logging_steps": 1,
    "save_steps": 1000,
    # With a few dozen samples, the paper's whole-sequence loss spends the toy budget on
    # the prompt and the tiny model never learns to answer; the answer-only loss of the
    # recommended preset lets it learn something in seconds.
    "mask": "answer",
}


@dataclass(frozen=True)
class DemoRun:
    """What every step needs: the settings, the folder, where messages go, progress bars."""

    cfg: DemoConfig
    out: Path
    say: Callable[[str], None]
    progress: bool

    @property
    def predictions_dir(self) -> Path:
        """The folder of the per-item prediction files."""
        return self.out / "predictions"


# -- step 1: data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoData:
    """The samples of every part of the demo, and where each came from (``facts``)."""

    roco: list[Any]
    vqa_train: list[Any]
    vqa_test: list[Any]
    ood_test: list[Any]
    nonsense: Sequence[Any]
    swapped: Sequence[Any]
    facts: dict[str, dict[str, Any]]


def bundled(sub: str) -> str:
    """The folder of the sample bundled with medvqa for ``sub``."""
    from medvqa.data import sample_root

    return str(sample_root() / sub)


def _load(name: str, source: str | None, split: str, sample: str) -> list[Any]:
    from medvqa.data import load

    data = load(name, source if source is not None else bundled(sample), split=split)
    if data.skipped:
        raise MedVQAError(
            f"{name} {split}: {data.skipped} rows were skipped while loading; fix the data first"
        )
    return list(data)


def prepare_data(run: DemoRun) -> DemoData:
    """Load every dataset, and derive the nonsense questions and the swapped-image test."""
    from medvqa.ablations import NonsenseQuestions, SwapImages
    from medvqa.data import SplitNotFoundError

    cfg = run.cfg
    run.say("[1/6] loading data" + (" (the sample bundled with medvqa)" if cfg.vqa_rad is None else ""))
    roco = _load("roco", cfg.roco, "train", "captions")
    vqa_train = _load("vqa_rad", cfg.vqa_rad, "train", "vqa_rad")
    vqa_test = _load("vqa_rad", cfg.vqa_rad, "test", "vqa_rad")[: cfg.eval_limit]
    ood_test = _load(cfg.ood_dataset, cfg.ood_data, "test", "slake")[: cfg.eval_limit]
    try:
        nonsense_raw = _load("med_halt", cfg.med_halt, cfg.med_halt_split, "med_halt")
    except SplitNotFoundError as exc:
        raise MedVQAError(f"Med-HALT: {exc}; set med_halt_split to a split the file has") from exc
    nonsense = NonsenseQuestions(pool=tuple(s.image for s in vqa_test if s.image is not None), seed=cfg.seed)(
        nonsense_raw
    )
    swapped = SwapImages(seed=cfg.seed)(vqa_test)
    facts = {
        "stage1 (captions, ROCO layout)": {
            "source": cfg.roco or bundled("captions"),
            "split": "train",
            "n": len(roco),
        },
        "stage2 (VQA-RAD)": {
            "source": cfg.vqa_rad or bundled("vqa_rad"),
            "split": "train",
            "n": len(vqa_train),
        },
        "test (VQA-RAD)": {"source": cfg.vqa_rad or bundled("vqa_rad"), "split": "test", "n": len(vqa_test)},
        f"out-of-distribution test ({cfg.ood_dataset})": {
            "source": cfg.ood_data or bundled("slake"),
            "split": "test",
            "n": len(ood_test),
        },
        "nonsense questions (Med-HALT reasoning_fake)": {
            "source": cfg.med_halt or bundled("med_halt"),
            "split": cfg.med_halt_split,
            "n": len(nonsense),
        },
    }
    return DemoData(roco, vqa_train, vqa_test, ood_test, nonsense, swapped, facts)


# -- step 2: training ------------------------------------------------------------------------


@dataclass(frozen=True)
class Trained:
    """The trained runs: the two-stage run and the single-stage baseline, with their configs."""

    stage1: StageConfig
    stage2: StageConfig
    two: TwoStageResult
    one: StageResult


def stage_configs(cfg: DemoConfig, n_stage1: int) -> tuple[StageConfig, StageConfig]:
    """The two stage configs of the demo: the paper presets, toy settings for the tiny model."""
    quant: Any = cfg.quantization or ("none" if cfg.tiny else "nf4")
    common: dict[str, Any] = {"model": cfg.model, "family": cfg.family, "quantization": quant}
    s1: dict[str, Any] = {**common, "data_dir": cfg.roco, "subset_size": cfg.stage1_size}
    s2: dict[str, Any] = {**common, "data_dir": cfg.vqa_rad}
    if cfg.tiny:
        s1.update(_TOY_TRAINING, learning_rate=3e-3)
        s2.update(_TOY_TRAINING, learning_rate=5e-3)
        if cfg.stage1_size is None:
            s1["subset_size"] = n_stage1
    elif cfg.stage1_size is None:
        s1.pop("subset_size")
    return paper_stage1(**s1), paper_stage2(**s2)


def train_models(run: DemoRun, data: DemoData) -> Trained:
    """Train stage 1 then stage 2 on one adapter, and the single-stage baseline; plot the losses.

    Every run lives in the sweep's folder layout (``sweep/size_<n>``), so that the sweep reuses
    the two-stage run (size = the stage-1 size) and the single-stage baseline (size 0, stage
    2's settings on a fresh adapter) instead of training them again.
    """
    from medvqa.plots import plot_loss_curves
    from medvqa.training import run_two_stage

    stage1, stage2 = stage_configs(run.cfg, len(data.roco))
    n1 = stage1.subset_size if stage1.subset_size is not None else len(data.roco)
    sweep_dir = run.out / "sweep"
    run.say(
        f"[2/6] training stage 1 ({n1} caption pairs) and stage 2 ({len(data.vqa_train)} questions), "
        "continuing one LoRA adapter"
    )
    two = run_two_stage(
        stage1,
        stage2,
        output_dir=sweep_dir / f"size_{n1}",
        stage1_samples=data.roco,
        stage2_samples=data.vqa_train,
        progress=run.progress,
    )
    run.say("[3/6] training the single-stage baseline (stage 2's settings on a fresh adapter)")
    one = run_two_stage(
        None,
        stage2,
        output_dir=sweep_dir / "size_0",
        stage2_samples=data.vqa_train,
        progress=run.progress,
        plot=False,
    ).stage2
    histories = {r.name: list(r.loss_history) for r in (two.stage1, two.stage2) if r is not None}
    if is_main_process():
        plot_loss_curves(
            histories, run.out / "loss_curves.png", title="Training loss, stage 1 then stage 2 (Figure 4)"
        )
    return Trained(stage1, stage2, two, one)


# -- step 3: the table rows ------------------------------------------------------------------


@dataclass
class Rows:
    """The scored table rows (label → :class:`~medvqa.training.EvalResult`), and the probes on them."""

    evals: dict[str, EvalResult] = field(default_factory=dict)
    abstention: dict[str, AbstentionResult] = field(default_factory=dict)
    reliance: RelianceResult | None = None
    sheet: Path | None = None


@dataclass(frozen=True)
class _RowScorer:
    """Answers and scores one table row, and files its result under its label."""

    run: DemoRun
    rows: Rows

    def __call__(
        self, label: str, model: Any, processor: Any, samples: Sequence[Any], **kw: Any
    ) -> EvalResult:
        from medvqa.training import predict_and_score

        cfg = self.run.cfg
        key = label.replace(", ", "_").replace(" ", "_").replace("-", "_")
        kw.setdefault("profiles", cfg.profiles)
        result = predict_and_score(
            model,
            processor,
            samples,
            output_dir=self.run.predictions_dir,
            name=key,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            n_boot=cfg.n_boot,
            progress=self.run.progress,
            **kw,
        )
        self.rows.evals[label] = result
        return result


def score_rows(run: DemoRun, data: DemoData, trained: Trained) -> Rows:
    """Answer and score every row of the paper's table (base, single-stage, two-stage, ...).

    Then the probes on them: abstention on the nonsense questions, visual reliance on the
    swapped images, and the human-evaluation sheet of the two-stage answers.
    """
    from medvqa.chat import EXPERT_PROMPT
    from medvqa.training import load_trained_model

    cfg = run.cfg
    run.say("[4/6] answering and scoring the table rows")
    rows = Rows()
    score = _RowScorer(run, rows)

    def load(adapter: str | None) -> tuple[Any, Any]:
        stage2 = trained.stage2
        return load_trained_model(
            cfg.model,
            adapter,
            quantization=stage2.quantization,
            precision=stage2.precision,
            family=cfg.family,
        )

    base_m, base_p = load(None)
    score("base", base_m, base_p, data.vqa_test, info={"adapter": None})
    score("base, OOD", base_m, base_p, data.ood_test, info={"adapter": None})
    base_nonsense = score("base, nonsense questions", base_m, base_p, data.nonsense, max_new_tokens=50)
    del base_m
    one_m, one_p = load(trained.one.adapter_dir)
    score("single-stage", one_m, one_p, data.vqa_test, info={"adapter": trained.one.adapter_dir})
    del one_m
    two_m, two_p = load(trained.two.adapter_dir)
    info = {"adapter": trained.two.adapter_dir}
    normal = score("two-stage", two_m, two_p, data.vqa_test, info=info)
    score("two-stage, OOD", two_m, two_p, data.ood_test, info=info)
    swap = score(
        "two-stage, swapped images", two_m, two_p, data.swapped, info={**info, "transform": "swap_images"}
    )
    expert_info = {**info, "prompt": "expert"}
    score("two-stage, expert prompt", two_m, two_p, data.vqa_test, prompt=EXPERT_PROMPT, info=expert_info)
    two_nonsense = score("two-stage, nonsense questions", two_m, two_p, data.nonsense, max_new_tokens=50)
    del two_m
    _probe_rows(run, rows, (base_nonsense, two_nonsense), normal, swap)
    return rows


def _probe_rows(
    run: DemoRun, rows: Rows, nonsense: tuple[EvalResult, EvalResult], normal: EvalResult, swap: EvalResult
) -> None:
    from medvqa.ablations import abstention, visual_reliance
    from medvqa.review import export_review_sheet

    cfg = run.cfg
    rows.abstention = {
        "base": abstention(list(nonsense[0].predictions), name="base", seed=cfg.seed),
        "two-stage": abstention(list(nonsense[1].predictions), name="two-stage", seed=cfg.seed),
    }
    rows.reliance = visual_reliance(
        list(normal.predictions),
        list(swap.predictions),
        name="swapped images",
        profile=cfg.profiles[-1],
        seed=cfg.seed,
        n_boot=cfg.n_boot,
    )
    rows.sheet = run.out / "human_evaluation_sheet.csv"
    if is_main_process():
        export_review_sheet(list(normal.predictions), rows.sheet, shuffle_seed=cfg.seed)


# -- step 4: the pretraining-size sweep ------------------------------------------------------


def size_sweep(run: DemoRun, data: DemoData, trained: Trained) -> SweepResult | None:
    """The pretraining-size sweep (the paper's Figure 3), reusing the runs of step 2; ``None``: no sizes."""
    from medvqa.training import load_base_model, run_sweep

    cfg = run.cfg
    sizes = cfg.sweep_sizes
    if sizes is None:
        sizes = (0, len(data.roco) // 2, len(data.roco)) if cfg.tiny else (0, 7_000, 20_000, 55_000)
    if not sizes:
        run.say("[5/6] sweep skipped (no sizes)")
        return None
    run.say(f"[5/6] pretraining-size sweep over stage-1 sizes {list(sizes)} (Figure 3)")
    return run_sweep(
        trained.stage1,
        trained.stage2,
        output_dir=run.out / "sweep",
        sizes=sizes,
        eval_samples=data.vqa_test,
        stage1_samples=data.roco,
        stage2_samples=data.vqa_train,
        model_factory=lambda: load_base_model(trained.stage2),
        profiles=cfg.profiles,
        batch_size=cfg.batch_size,
        n_boot=cfg.n_boot,
        seed=cfg.seed,
        progress=run.progress,
    )


# -- step 5 (its judged column; the report itself is written by medvqa.pipeline) -------------


def judge_rows(run: DemoRun, evals: Mapping[str, Any], rows: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The judged column: ``medevalkit`` accuracy by rules and with open answers judged."""
    from medvqa.judge import LocalJudge, judge_from_spec, judge_predictions, judge_report, judged_profile
    from medvqa.metrics import evaluate

    cfg, out = run.cfg, run.out
    if cfg.judge == "none" or (cfg.judge is None and not cfg.tiny):
        return {}
    if not is_main_process():  # the judged column goes only into the reports, which rank 0 writes
        return {}
    if cfg.judge is None:
        from medvqa.models._tiny_judge import save_tiny_judge

        folder = out / "tiny_judge"
        if not (folder / "config.json").is_file():
            save_tiny_judge(folder, seed=cfg.seed)
        judge: Any = LocalJudge(folder, max_new_tokens=16, batch_size=16)
    else:
        judge = judge_from_spec(cfg.judge)
    run.say(
        f"      judging the open answers of {len(rows)} rows ({judge.model_id}; cache: judge_cache.jsonl)"
    )
    table: dict[str, dict[str, Any]] = {}
    for row in rows:
        preds = list(evals[row].predictions)
        verdicts = judge_predictions(preds, judge, cache=out / "judge_cache.jsonl")
        audit = judge_report(preds, verdicts, profiles=("medevalkit",))
        table[row] = {
            "rules": evaluate(preds, profile="medevalkit", n_boot=0)["accuracy"].to_dict(),
            "judged": evaluate(preds, profile=judged_profile(verdicts), n_boot=0)["accuracy"].to_dict(),
            "judge_on_open": audit.judged_accuracy.to_dict(),
            "unparseable": len(audit.unparseable),
            "judge": audit.judge,
        }
    return table
