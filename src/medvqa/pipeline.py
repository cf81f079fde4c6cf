"""The whole paper pipeline in one call: train both stages, evaluate every table row, report.

:func:`run_demo` reproduces the Med-Idefics pipeline end to end: stage 1 (captions), stage 2
(VQA-RAD, continuing the same adapter), the single-stage baseline, then the rows of the paper's
table (base, single-stage, two-stage, out-of-distribution, swapped images, expert prompt,
nonsense questions) scored under several profiles, the pretraining-size sweep, the loss
curves, per-item prediction files, a human-evaluation sheet, and a Markdown + JSON report in
one folder.

With the defaults it runs on the tiny random Idefics2 of :mod:`medvqa.models` and the small
real sample bundled with the package, in a few minutes on a laptop CPU. **A random tiny
model's numbers mean nothing about medicine**: the demo shows that every part works and what
the outputs look like. With ``model`` set to Idefics2-8B and the data folders set to the real
releases, the same call runs the paper's recipe (its presets, unchanged).

Data of the default run (all bundled; licences in ``medvqa/_sample/LICENSES.md``):

- VQA-RAD (CC0): stage-2 training and the in-distribution test.
- ``captions/``: stage-1 data in the ROCO release layout, built from CC0 VQA-RAD images,
  because ROCO distributes only download links, not images.
- SLAKE (English, CC BY 4.0): the out-of-distribution test. The paper used PathVQA, whose
  images (textbook and PEIR figures) may not be redistributed; pass ``ood_dataset="path_vqa"``
  and its folder to use it.
- Med-HALT ``reasoning_fake`` (Apache-2.0): the nonsense questions, scored for abstention.

The module itself is light; training and generation import the ``medvqa[train]`` stack.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medvqa._distributed import barrier, ensure_process_group, is_main_process
from medvqa._errors import MedVQAError
from medvqa._extras import needs_train_extra
from medvqa._io import atomic_write_json, atomic_write_text, read_json
from medvqa._tables import interval, markdown_table, number
from medvqa.training import Quantization
from medvqa.training._config import TINY_MODEL  # the name of the tiny model; not a public constant

if TYPE_CHECKING:  # pragma: no cover
    from medvqa._demo_steps import DemoData, DemoRun, Rows, Trained
    from medvqa.training import SweepResult

__all__ = ["NONSENSE_ROWS", "PAPER_RESULTS", "DemoConfig", "DemoResult", "run_demo"]

PAPER_RESULTS: Mapping[str, Mapping[str, float | None]] = {
    "base": {"containment": 0.55, "f1": 0.38, "bleu1": 0.29, "human": 0.59},
    "single-stage": {"containment": 0.53, "f1": 0.55, "bleu1": 0.54, "human": None},
    "two-stage": {"containment": 0.56, "f1": 0.58, "bleu1": 0.57, "human": 0.63},
    "base, OOD": {"containment": 0.29, "f1": 0.20, "bleu1": 0.15, "human": None},
    "two-stage, OOD": {"containment": 0.30, "f1": 0.32, "bleu1": 0.31, "human": None},
    "two-stage, swapped images": {"containment": 0.48, "f1": 0.50, "bleu1": 0.49, "human": None},
    "two-stage, expert prompt": {"containment": 0.57, "f1": 0.59, "bleu1": 0.57, "human": None},
}
"""The paper's Figure 2 (VQA-RAD, first 400 test rows; OOD = PathVQA, first 400), paper profile."""

NONSENSE_ROWS: tuple[str, ...] = ("base, nonsense questions", "two-stage, nonsense questions")
"""Rows of the demo's tables beyond the paper's seven: Med-HALT ``reasoning_fake`` questions,
scored against the abstaining option (the paper asked 5 made-up questions and did not score them)."""

_DISCLAIMER = (
    "These numbers come from a tiny model with random weights, trained for seconds on a few dozen "
    "samples. They mean nothing about medicine or about Idefics2; they show that every step of the "
    "pipeline runs and what its outputs look like."
)


@dataclass(frozen=True)
class DemoConfig:
    """Settings of :func:`run_demo` (defaults: tiny model, bundled sample).

    Attributes:
        output_dir: The one folder everything goes to.
        model: ``"tiny"``, or the base model (folder or hub id) for the real run.
        family: The model family (:data:`medvqa.models.FAMILIES`); ``None``: Idefics2 for the
            tiny model, read from the checkpoint's ``config.json`` otherwise.
        quantization: Base-model quantization; ``None``: ``none`` for the tiny model, the
            preset's ``nf4`` otherwise.
        vqa_rad: VQA-RAD folder (``None``: the bundled sample).
        roco: Stage-1 caption folder in ROCO layout (``None``: the bundled one).
        ood_dataset: The out-of-distribution test set (``slake`` by default; the paper's is
            ``path_vqa``, not bundled).
        ood_data: Its folder (``None``: the bundled sample; required for ``path_vqa``).
        med_halt: Folder or ``reasoning_fake.csv`` of Med-HALT (``None``: the bundled sample).
        med_halt_split: Med-HALT split for the nonsense questions.
        stage1_size: Stage-1 pairs (``None``: all available for the tiny run, the preset's
            55,000 for the real one).
        sweep_sizes: Stage-1 sizes of the sweep (``None``: 0, half and all of the stage-1 data
            for the tiny run; the paper's 0/7K/20K/55K otherwise). Empty: no sweep.
        eval_limit: Score only the first N test questions in dataset order (the paper: 400).
        profiles: Scoring profiles (the first is the report's main table).
        n_boot: Bootstrap replicates of the intervals.
        batch_size: Generation batch size.
        seed: Seed of every random choice of the evaluation (image swaps, pairings, bootstraps).
        overwrite: Delete a previous demo in ``output_dir`` first (otherwise finished parts
            are reused and interrupted ones resumed).
        judge: The judge of the judged column (``medevalkit`` accuracy with open answers
            judged by a model; see :mod:`medvqa.judge`): a hub id or folder of a causal LM, or
            ``"none"``. ``None``: a tiny random judge in the tiny run (it shows the machinery;
            its verdicts are noise), no judged column otherwise.
    """

    output_dir: str = "medvqa-output/demo"
    model: str = TINY_MODEL
    family: str | None = None
    quantization: Quantization | None = None
    vqa_rad: str | None = None
    roco: str | None = None
    ood_dataset: Literal["slake", "path_vqa"] = "slake"
    ood_data: str | None = None
    med_halt: str | None = None
    med_halt_split: str = "train"
    stage1_size: int | None = None
    sweep_sizes: tuple[int, ...] | None = None
    eval_limit: int | None = None
    profiles: tuple[str, ...] = ("paper", "strict")
    n_boot: int = 1000
    batch_size: int = 8
    seed: int = 0
    overwrite: bool = False
    judge: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "output_dir", os.fspath(self.output_dir))
        object.__setattr__(self, "profiles", tuple(self.profiles))
        if self.sweep_sizes is not None:
            object.__setattr__(self, "sweep_sizes", tuple(int(s) for s in self.sweep_sizes))
        if not self.profiles:
            raise ValueError("DemoConfig.profiles must name at least one scoring profile")
        if self.ood_dataset not in ("slake", "path_vqa"):
            raise ValueError(
                f"DemoConfig.ood_dataset must be 'slake' or 'path_vqa'; got {self.ood_dataset!r}"
            )
        if self.ood_dataset == "path_vqa" and self.ood_data is None:
            raise ValueError("DemoConfig.ood_data is required for path_vqa (its images are not bundled)")
        for name in ("stage1_size", "eval_limit"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"DemoConfig.{name} must be at least 1; got {v}")
        if self.n_boot < 0 or self.batch_size < 1:
            raise ValueError("DemoConfig.n_boot must be >= 0 and batch_size >= 1")

    @property
    def tiny(self) -> bool:
        """Whether this is the tiny demo run (toy training settings)."""
        return self.model == TINY_MODEL

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        d = dataclasses.asdict(self)
        d["profiles"] = list(self.profiles)
        d["sweep_sizes"] = None if self.sweep_sizes is None else list(self.sweep_sizes)
        if self.family is None:  # demo folders written before families existed stay reusable
            del d["family"]
        return d


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its outputs, and its headline numbers.

    Attributes:
        output_dir: The output folder.
        report_md: The Markdown report.
        report_json: The JSON report (everything in the Markdown one, as data).
        elapsed_s: Wall time of the run.
        rows: Table row → flattened scores (``"<profile>/<metric>/<subset>"``).
    """

    output_dir: str
    report_md: str
    report_json: str
    elapsed_s: float
    rows: Mapping[str, Mapping[str, Any]]


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        from medvqa._tables import MISSING

        return MISSING
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


@needs_train_extra
def run_demo(
    config: DemoConfig | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the whole pipeline and write the report (see the module docstring).

    Five steps, each reusing what a previous run of the same settings finished: prepare the
    data, train (two stages on one adapter, and the single-stage baseline), score the
    table rows, sweep the pretraining size, write the report.

    Args:
        config: The settings (default: tiny model, bundled sample, ``medvqa-output/demo``).
        progress: Show progress bars.
        log: Where step messages go (default: standard error).

    Returns:
        A :class:`DemoResult`; ``report_md`` is the file to open first.

    Raises:
        MedVQAError: ``output_dir`` holds something other than a previous demo, or a data
            folder is missing or malformed.
    """
    from medvqa import _demo_steps as steps

    cfg = config or DemoConfig()
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    start = time.perf_counter()
    run = steps.DemoRun(cfg, _claim_output_dir(cfg), say, progress)
    data = steps.prepare_data(run)
    trained = steps.train_models(run, data)
    rows = steps.score_rows(run, data, trained)
    sweep = steps.size_sweep(run, data, trained)
    return _write_report(run, data, trained, rows, sweep, start)


def _claim_output_dir(cfg: DemoConfig) -> Path:
    """Make ``cfg.output_dir`` this demo's folder: new, a rerun of the same settings, or overwritten.

    Raises:
        MedVQAError: The folder holds something else, or a demo of other settings.
    """
    out = Path(cfg.output_dir)
    marker = out / "demo_config.json"
    if out.exists() and any(out.iterdir()):
        if not marker.is_file():
            raise MedVQAError(f"{out} exists and is not a medvqa demo folder; choose another --output")
        if cfg.overwrite and is_main_process():
            shutil.rmtree(out)
        elif read_json(marker) != cfg.to_dict():
            raise MedVQAError(
                f"{out} holds a demo run with other settings; use --overwrite to replace it or another --output"
            )
    ensure_process_group()
    barrier()
    out.mkdir(parents=True, exist_ok=True)
    if is_main_process():
        atomic_write_json(marker, cfg.to_dict())
    return out


def _write_report(
    run: DemoRun, data: DemoData, trained: Trained, rows: Rows, sweep: SweepResult | None, start: float
) -> DemoResult:
    """Step 5: the judged column, the tables per profile, ``report.json`` and ``report.md``."""
    from medvqa import _demo_steps as steps
    from medvqa.reports import results_table

    cfg, out, evals = run.cfg, run.out, rows.evals
    judged = steps.judge_rows(run, evals, [k for k in PAPER_RESULTS if k in evals])
    run.say("[6/6] writing the report")
    # The paper's seven rows, then the nonsense questions (reference: Med-HALT's abstaining
    # option; the paper asked such questions but did not score them).
    table_rows = [k for k in (*PAPER_RESULTS, *NONSENSE_ROWS) if k in evals]
    tables: dict[str, str] = {}
    for profile in cfg.profiles:
        t = results_table(
            [(row, evals[row].aggregates(profile)) for row in table_rows],
            title=f"{profile} profile",
        )
        tables[profile] = t.to_markdown()
    elapsed = time.perf_counter() - start
    two, one, abst, reliance = trained.two, trained.one, rows.abstention, rows.reliance
    report = {
        "title": "medvqa demo: the Med-Idefics pipeline end to end",
        "disclaimer": _DISCLAIMER if cfg.tiny else None,
        "config": cfg.to_dict(),
        "data": data.facts,
        "training": {
            "stage1": None if two.stage1 is None else two.stage1.to_dict(),
            "stage2": two.stage2.to_dict(),
            "single_stage (= sweep size 0)": one.to_dict(),
        },
        "rows": {label: e.to_dict() for label, e in evals.items()},
        "paper_results": {k: dict(v) for k, v in PAPER_RESULTS.items()},
        "abstention": {k: v.to_dict() for k, v in abst.items()},
        "visual_reliance": None if reliance is None else reliance.to_dict(),
        "sweep": None if sweep is None else [dict(r) for r in sweep.rows],
        "judged": judged,
        "files": {
            "loss_curves": "loss_curves.png",
            "human_evaluation_sheet": "human_evaluation_sheet.csv",
            "predictions": "predictions/",
            "sweep": None if sweep is None else "sweep/sweep.png",
        },
        "elapsed_s": elapsed,
    }
    if is_main_process():
        atomic_write_json(out / "report.json", report)
        md = _markdown(cfg, report, tables, abst, two, one, sweep, elapsed) + _judged_markdown(cfg, judged)
        atomic_write_text(out / "report.md", md)
    run.say(f"done in {elapsed:.0f} s")
    return DemoResult(
        output_dir=str(out),
        report_md=str(out / "report.md"),
        report_json=str(out / "report.json"),
        elapsed_s=elapsed,
        rows={label: e.flat() for label, e in evals.items()},
    )


def _judged_markdown(cfg: DemoConfig, judged: Mapping[str, Mapping[str, Any]]) -> str:
    if not judged:
        return ""
    first = next(iter(judged.values()))["judge"]
    lines = [
        "## Judged column (`medevalkit` profile)",
        "",
        f"Judge: `{first['model']}` (revision `{first['revision']}`, prompt `{first['prompt_version']}`); "
        "every verdict with its exact prompt is in `judge_cache.jsonl`. Closed questions stay "
        "rule-based; an unparseable verdict counts as wrong in the judged accuracy, as in MedEvalKit, "
        "and is left out of the judge's own open-item accuracy.",
        "",
    ]
    if cfg.judge is None:
        lines += [
            "> The tiny judge has random weights: its verdicts are noise (mostly unparseable). It shows "
            "the machinery only; pass a real judge (`--judge MODEL`) for numbers.",
            "",
        ]
    from medvqa._tables import markdown_table

    rows = [
        [
            row,
            _fmt(v["rules"]["value"]),
            _fmt(v["judged"]["value"]),
            f"{_fmt(v['judge_on_open']['value'])} (n={v['judge_on_open']['denominator']})",
            v["unparseable"],
        ]
        for row, v in judged.items()
    ]
    header = ["run", "accuracy (rules)", "accuracy (judged)", "judge on open items", "unparseable"]
    lines.append(markdown_table(header, rows))
    return "\n" + "\n".join(lines) + "\n"


def _markdown(
    cfg: DemoConfig,
    report: Mapping[str, Any],
    tables: Mapping[str, str],
    abst: Mapping[str, Any],
    two: Any,
    one: Any,
    sweep: Any,
    elapsed: float,
) -> str:
    """The demo's ``report.md`` (without the judged column): its sections, blank lines between."""
    sections = [
        _intro_section(cfg, elapsed),
        _data_section(cfg, report["data"]),
        _training_section(cfg, two, one),
        _paper_table_section(tables),
        _abstention_section(abst),
        _sweep_section(sweep),
        _files_section(),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections if lines) + "\n"


def _intro_section(cfg: DemoConfig, elapsed: float) -> list[str]:
    """Title, the tiny model's disclaimer and the model line."""
    lines = ["# medvqa demo: the Med-Idefics pipeline end to end", ""]
    if cfg.tiny:
        lines += [f"> **Read this first.** {_DISCLAIMER}", ""]
    lines.append(
        f"Model: `{cfg.model}`. Finished in {elapsed:.0f} s. Settings: `demo_config.json`; "
        "everything below is also in `report.json`."
    )
    return lines


def _data_section(cfg: DemoConfig, data: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Each part of the data (source, split, size), and the licences of the bundled sample."""
    rows = [[part, f"`{facts['source']}`", facts["split"], facts["n"]] for part, facts in data.items()]
    lines = ["## Data", "", markdown_table(["part", "source", "split", "n"], rows)]
    if cfg.vqa_rad is None:
        lines += [
            "",
            "Bundled sample: VQA-RAD is CC0. Stage-1 captions use the ROCO release layout but CC0 "
            "VQA-RAD images, because ROCO distributes only download links. SLAKE (CC BY 4.0, Liu et al. "
            "2021) stands in for PathVQA as the out-of-distribution set, because PathVQA's images may not "
            "be redistributed. Med-HALT is Apache-2.0. Licences: `medvqa/_sample/LICENSES.md`.",
        ]
    return lines


def _training_section(cfg: DemoConfig, two: Any, one: Any) -> list[str]:
    """The training runs (samples, steps, mean loss, precision, folder) and the loss-curve files."""
    lines = ["## Training", ""]
    if cfg.tiny:
        lines += [
            "The paper's presets (`paper_stage1`, `paper_stage2`, `paper_single_stage`) with toy "
            "overrides so that training takes seconds: batch 4, no gradient accumulation, 2 warm-up "
            "steps, learning rates 3e-3 (stage 1) and 5e-3 (stage 2), unquantized, and the answer-only "
            "loss of the recommended preset (with a few dozen samples the paper's whole-sequence loss "
            "spends the budget on the prompt and the tiny model never learns to answer). Epochs (3 and "
            "2), schedule and seeds are the paper's.",
            "",
        ]
    rows = [
        [
            label,
            r.train_samples,
            r.global_step,
            number(r.train_loss),
            r.precision,
            f"`{Path(r.output_dir).relative_to(cfg.output_dir)}`",
        ]
        for label, r in (("stage 1", two.stage1), ("stage 2", two.stage2), ("single-stage", one))
        if r is not None
    ]
    header = ["stage", "samples", "steps", "mean train loss", "precision", "folder"]
    lines += [markdown_table(header, rows), ""]
    lines.append("Loss curves of both stages (Figure 4): `loss_curves.png` (data: `loss_curves.json`).")
    return lines


def _paper_table_section(tables: Mapping[str, str]) -> list[str]:
    """The paper's table under each scoring profile, then the paper's own numbers (Figure 2)."""
    lines = [
        "## The paper's table",
        "",
        "Each cell is the value with its seeded 95% bootstrap interval. `n` lists the distinct "
        "denominators of the row's cells: a cell over open questions counts only those, a cell over "
        "closed questions only those, an overall cell every question (for example `13/16/29`).",
        "",
    ]
    for profile, md in tables.items():
        lines += [f"### `{profile}` profile", "", md.rstrip(), ""]
    lines += [
        "The two nonsense-questions rows score made-up Med-HALT `reasoning_fake` questions (random "
        'images) against the abstaining option ("I do not know"-style); the paper asked 5 such '
        "questions and did not score them. Their abstention rates are below.",
        "",
        "The paper's numbers for comparison (Figure 2; VQA-RAD and PathVQA, first 400 test rows, paper "
        "profile):",
        "",
    ]
    rows = [
        [
            row,
            number(vals["containment"], 2),
            number(vals["f1"], 2),
            number(vals["bleu1"], 2),
            "" if vals.get("human") is None else f"{vals['human']:.0%}",
        ]
        for row, vals in PAPER_RESULTS.items()
    ]
    lines.append(markdown_table(["run", "EM (containment)", "F1", "BLEU-1", "human"], rows))
    return lines


def _abstention_section(abst: Mapping[str, Any]) -> list[str]:
    """How often each model abstained on the nonsense questions, with its interval."""
    rows = [
        [name, a.n, a.abstained, number(a.rate, 2) + interval(a.ci_low, a.ci_high, 2)]
        for name, a in abst.items()
    ]
    table = markdown_table(["model", "n", "abstained", "rate [95% CI]"], rows)
    return ["## Nonsense questions (Med-HALT reasoning_fake)", "", table]


def _sweep_section(sweep: Any) -> list[str]:
    """The pretraining-size sweep's table (read from ``sweep.md``); nothing without a sweep."""
    if sweep is None:
        return []
    return [
        "## Pretraining-size sweep (Figure 3)",
        "",
        "Plot: `sweep/sweep.png`; table: `sweep/sweep.md`:",
        "",
        (Path(sweep.output_dir) / "sweep.md").read_text(encoding="utf-8").rstrip(),
    ]


def _files_section() -> list[str]:
    """What else the demo's folder holds."""
    return [
        "## Files",
        "",
        "- `predictions/<row>.predictions.jsonl`: every answer, one JSON object per line; "
        "`<row>.items.jsonl`: per-item scores; `<row>.scores.json`: aggregates with intervals.",
        "- `human_evaluation_sheet.csv`: the two-stage answers in a sheet for an expert to mark "
        "(`medvqa review`).",
        "- `sweep/size_<n>/`: adapters, configs, trainer states and loss histories of every run "
        "(`size_0` is the single-stage baseline).",
    ]
