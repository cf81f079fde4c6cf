"""Export a trained adapter as a folder ready for the Hugging Face Hub, with a model card.

:func:`export_adapter` reads a training run (a stage folder, or a two-stage folder holding
``stage1/`` and ``stage2/``) and writes::

    adapter_model.safetensors   the LoRA weights
    adapter_config.json         PEFT's config, base_model_name_or_path set to the base model
    processor files             the base model's processor (tokenizer, image processor, chat template)
    training_config.json        the stage config(s) the adapter was trained with
    README.md                   the model card: YAML metadata (base model, datasets, metrics) and text

Metrics come from the score files (``*.scores.json``, see :func:`medvqa.metrics.read_scores`)
that ``medvqa evaluate`` and ``medvqa two-stage --evaluate`` write (found in the run folder,
or given; ``medvqa score --format json`` output works too): each metric with
its scoring profile, ``n`` and its 95% bootstrap interval. :func:`push_to_hub` uploads the
folder with ``huggingface_hub`` (needs network access and a token).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medvqa._errors import MedVQAError
from medvqa._io import atomic_write_json, atomic_write_text, read_json

__all__ = ["DATA_LICENCES", "ExportResult", "export_adapter", "push_to_hub"]

DATA_LICENCES: Mapping[str, str] = {
    "vqa_rad": "VQA-RAD (Lau et al., 2018): CC0 1.0, public domain.",
    "slake": "SLAKE (Liu et al., 2021): CC BY 4.0; credit the authors.",
    "path_vqa": (
        "PathVQA (He et al., 2020): images from pathology textbooks and the PEIR library, which may "
        "not be redistributed; check the release's terms before sharing derived data."
    ),
    "roco": (
        "ROCO (Pelka et al., 2018): figures of PubMed Central open-access articles, each under its "
        "article's own licence (listed in the release's licences.txt)."
    ),
    "med_halt": "Med-HALT (Pal et al., 2023): Apache-2.0.",
}
"""Licence note per dataset name, written into the model card."""

_SAMPLE_NOTE = (
    "the sample bundled with medvqa (CC0 VQA-RAD images and questions; the caption sample is built "
    "from the same images)"
)


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_adapter` wrote.

    Attributes:
        output_dir: The exported folder.
        files: The file names in it.
        metrics: The metric rows of the model card (one dict per aggregate).
    """

    output_dir: str
    files: tuple[str, ...]
    metrics: tuple[Mapping[str, Any], ...]


def _stages(run_dir: Path) -> list[dict[str, Any]]:
    """The finished stages' ``result.json`` of a run folder, first stage first."""
    if (run_dir / "result.json").is_file():
        return [read_json(run_dir / "result.json")]
    found = [
        read_json(run_dir / s / "result.json")
        for s in ("stage1", "stage2")
        if (run_dir / s / "result.json").is_file()
    ]
    if not found:
        raise MedVQAError(
            f"{run_dir}: no result.json, nor stage1/ or stage2/ with one; give a finished stage folder "
            "(medvqa train) or two-stage folder (medvqa two-stage)"
        )
    return found


def _metrics(score_files: Sequence[Path]) -> list[dict[str, Any]]:
    from medvqa.metrics import read_scores

    rows: list[dict[str, Any]] = []
    for path in score_files:
        for run in read_scores(path).runs:
            for key, agg in run.aggregates.items():
                if agg.value is None:
                    continue
                rows.append(
                    {
                        "evaluation": run.label,
                        "dataset": run.info.get("dataset"),
                        "split": run.info.get("split"),
                        "profile": run.profile,
                        "metric": agg.name or key.split("/")[0],
                        "subset": agg.subset,
                        "value": agg.value,
                        "n": agg.denominator,
                        "ci_low": agg.ci_low,
                        "ci_high": agg.ci_high,
                        "file": path.name,
                    }
                )
    return rows


def _processor(model: str) -> Any:
    if model == "tiny":
        from medvqa.models import tiny_idefics2

        return tiny_idefics2(seed=0)[1]
    from transformers import AutoProcessor

    local = Path(model).is_dir() or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    try:
        return AutoProcessor.from_pretrained(model, trust_remote_code=False, local_files_only=local)  # type: ignore[no-untyped-call]
    except OSError as exc:
        raise MedVQAError(f"cannot load the processor of base model {model!r}: {exc}") from exc


def _yaml_value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _metadata(base: str, datasets: Sequence[str], metrics: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "---",
        f"base_model: {_yaml_value(base)}",
        "library_name: peft",
        "pipeline_tag: image-text-to-text",
        "license: other",
        "tags:",
        *(f"- {t}" for t in ("medvqa", "lora", "medical", "visual-question-answering")),
        "datasets:",
        *(f"- {_yaml_value(d)}" for d in datasets),
    ]
    if metrics:
        lines += ["model-index:", f"- name: {_yaml_value(base + ' + medvqa adapter')}", "  results:"]
        groups: dict[tuple[Any, Any], list[Mapping[str, Any]]] = {}
        for m in metrics:
            groups.setdefault((m["dataset"], m["split"]), []).append(m)
        for (dataset, split), rows in groups.items():
            lines += [
                "  - task:",
                "      type: visual-question-answering",
                "    dataset:",
                f"      name: {_yaml_value(dataset or 'unknown')}",
                f"      type: {_yaml_value(dataset or 'unknown')}",
                f"      split: {_yaml_value(split or 'unknown')}",
                "    metrics:",
            ]
            for m in rows:
                ci = "" if m["ci_low"] is None else f", 95% CI [{m['ci_low']:.4f}, {m['ci_high']:.4f}]"
                label = f"{m['metric']} ({m['subset']}), profile {m['profile']}, n={m['n']}{ci}"
                lines += [
                    f"    - type: {_yaml_value(m['metric'])}",
                    f"      value: {m['value']:.6g}",
                    f"      name: {_yaml_value(label)}",
                ]
    return "\n".join([*lines, "---", ""])


def _card(
    base: str,
    stages: Sequence[Mapping[str, Any]],
    metrics: Sequence[Mapping[str, Any]],
    sources: Mapping[str, str],
) -> str:
    names = [s["config"]["name"] for s in stages]
    out = [
        f"# LoRA adapter for `{base}` trained with medvqa",
        "",
        f"A LoRA adapter for medical visual question answering, trained in {len(stages)} stage(s) "
        f"({', '.join(names)}) with medvqa on the data listed below. "
        "**For research only; not for clinical use.**",
        "",
        "## Use",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "",
        f'base = AutoModelForImageTextToText.from_pretrained("{base}")',
        'model = PeftModel.from_pretrained(base, "THIS_REPO").eval()',
        'processor = AutoProcessor.from_pretrained("THIS_REPO")',
        "```",
        "",
        "## Evaluation",
        "",
    ]
    out += _evaluation_lines(metrics)
    out += _training_lines(stages, sources)
    return "\n".join(out)


def _evaluation_lines(metrics: Sequence[Mapping[str, Any]]) -> list[str]:
    """The card's evaluation table (or the line saying there is none)."""
    if not metrics:
        return ["No evaluation was exported with this adapter."]
    out = [
        "Scores from medvqa's scoring profiles, with the number of questions scored (n) and seeded "
        "95% bootstrap intervals.",
        "",
        "| evaluation | dataset | split | profile | metric | subset | value | 95% CI | n |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in metrics:
        ci = "" if m["ci_low"] is None else f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
        out.append(
            f"| {m['evaluation']} | {m['dataset']} | {m['split']} | {m['profile']} | {m['metric']} | "
            f"{m['subset']} | {m['value']:.3f} | {ci} | {m['n']} |"
        )
    return out


def _training_lines(stages: Sequence[Mapping[str, Any]], sources: Mapping[str, str]) -> list[str]:
    """The card's training stages, data and licences."""
    out = ["", "## Training", ""]
    for s in stages:
        cfg = s["config"]
        out += [
            f"Stage `{cfg['name']}`: {s.get('train_samples')} samples of `{cfg['dataset']}`, "
            f"{s.get('global_step')} steps, precision {s.get('precision')}, mean training loss "
            f"{s.get('train_loss')}. Full config: `training_config.json`.",
            "",
        ]
    out += ["## Data and licences", ""]
    for name, source in sources.items():
        out.append(
            f"- `{name}` ({source}): {DATA_LICENCES.get(name, 'see the dataset release for its terms.')}"
        )
    out += [
        "",
        "The adapter's own licence must respect the base model's licence and the data's terms above.",
        "",
    ]
    return out


def export_adapter(
    run_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    score_files: Sequence[str | os.PathLike[str]] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write the adapter of a training run as a Hub-ready folder with a model card.

    Args:
        run_dir: A finished stage folder (``result.json``, ``adapter/``) or two-stage folder.
        output_dir: The folder to write (must be absent or empty unless ``overwrite``).
        score_files: ``*.scores.json`` files of evaluations of this adapter; ``None``: those
            directly in ``run_dir``.
        overwrite: Replace an existing non-empty ``output_dir``.

    Returns:
        An :class:`ExportResult`.

    Raises:
        MedVQAError: The run is unfinished, its adapter has no safetensors weights, a scores
            file is malformed, or ``output_dir`` is not empty.
    """
    run = Path(run_dir)
    out = Path(output_dir)
    stages = _stages(run)
    final = stages[-1]
    adapter = _adapter_dir(run, final)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise MedVQAError(
                f"{out} is not empty; choose another folder or pass overwrite=True (--overwrite)"
            )
        shutil.rmtree(out)
    files = sorted(run.glob("*.scores.json")) if score_files is None else [Path(f) for f in score_files]
    metrics = _metrics(files)
    base = str(final["config"]["model"])

    out.mkdir(parents=True, exist_ok=True)
    _processor(base).save_pretrained(str(out))
    shutil.copyfile(adapter / "adapter_model.safetensors", out / "adapter_model.safetensors")
    adapter_config = read_json(adapter / "adapter_config.json")
    adapter_config["base_model_name_or_path"] = base
    atomic_write_json(out / "adapter_config.json", adapter_config)
    atomic_write_json(out / "training_config.json", {s["config"]["name"]: s["config"] for s in stages})
    sources = _data_sources(stages, metrics)
    card = _metadata(base, list(sources), metrics) + "\n" + _card(base, stages, metrics, sources)
    atomic_write_text(out / "README.md", card)
    return ExportResult(
        output_dir=str(out),
        files=tuple(sorted(p.name for p in out.iterdir())),
        metrics=tuple(metrics),
    )


def _adapter_dir(run: Path, final: Mapping[str, Any]) -> Path:
    """The folder of the run's final adapter; it must hold safetensors weights and a config."""
    candidates = [Path(final["adapter_dir"]), run / "adapter", run / "stage2" / "adapter"]
    adapter = next((c for c in candidates if (c / "adapter_config.json").is_file()), candidates[0])
    if (
        not (adapter / "adapter_model.safetensors").is_file()
        or not (adapter / "adapter_config.json").is_file()
    ):
        raise MedVQAError(f"{adapter}: no adapter_model.safetensors + adapter_config.json to export")
    return adapter


def _data_sources(
    stages: Sequence[Mapping[str, Any]], metrics: Sequence[Mapping[str, Any]]
) -> dict[str, str]:
    """Dataset name -> where its data came from: the stages' data folders, then the evaluations'."""
    sources: dict[str, str] = {}
    for s in stages:
        cfg = s["config"]
        sources[cfg["dataset"]] = cfg.get("data_dir") or _SAMPLE_NOTE
    for m in metrics:
        if m["dataset"]:
            sources.setdefault(m["dataset"], "evaluation")
    return sources


def push_to_hub(folder: str | os.PathLike[str], repo_id: str, *, private: bool = True) -> str:
    """Upload an exported folder to the Hugging Face Hub (creating the repository if needed).

    Needs network access and a token (``huggingface-cli login`` or ``HF_TOKEN``).

    Returns:
        The URL of the commit.
    """
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="Upload medvqa adapter")
    return str(info)
