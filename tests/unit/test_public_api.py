"""The public surface is exactly what is exported and documented.

Every public module has a sorted ``__all__``; every name in it resolves, has a docstring,
and its module has an ``automodule`` directive in ``docs/api``. ``import medvqa`` and the
light-core modules never import torch or transformers.
"""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import medvqa

DOCS_API = Path(__file__).resolve().parents[2] / "docs" / "api"

LIGHT_MODULES = [
    "medvqa",
    "medvqa.records",
    "medvqa.data",
    "medvqa.answers",
    "medvqa.metrics",
    "medvqa.ablations",
    "medvqa.ablations.runner",
    "medvqa.transforms",
    "medvqa.probes",
    "medvqa.chat",
    "medvqa.reports",
    "medvqa.review",
    "medvqa.export",
    "medvqa.server",
    "medvqa.judge",
    "medvqa.training",
    "medvqa.cli",
]
HEAVY_MODULES = ["medvqa.models", "medvqa.collate", "medvqa.generation"]
PUBLIC_MODULES = (
    [m for m in LIGHT_MODULES if m not in ("medvqa", "medvqa.cli", "medvqa.ablations.runner")]
    + HEAVY_MODULES
    + ["medvqa.plots"]
)

ABLATIONS_EXPORTS = [
    "DEFAULT_ABSTENTION_PATTERNS",
    "DEFAULT_ABSTENTION_RULES",
    "DEFAULT_FILLERS",
    "DEFAULT_NONSENSE_TEMPLATES",
    "DEFAULT_WHOLE_ANSWERS",
    "PAPER_INSTRUCTION",
    "TRANSFORMS_KEY",
    "TRANSFORM_NAMES",
    "TRANSFORM_TYPES",
    "AblationReport",
    "AbstentionDecision",
    "AbstentionResult",
    "AbstentionRules",
    "BlankImage",
    "BlankKind",
    "Compose",
    "MedEvalKitPrompt",
    "MetricDifference",
    "NoImage",
    "NonsenseQuestions",
    "ProbeError",
    "PromptMode",
    "PromptVariant",
    "RelianceResult",
    "Subset",
    "SwapFallback",
    "SwapImages",
    "SwapRule",
    "Transform",
    "TransformError",
    "ablation_report",
    "abstention",
    "detect_abstention",
    "format_options",
    "made_up_questions",
    "parse_transforms",
    "run_ablations",
    "transform_from_dict",
    "visual_reliance",
]
"""What ``medvqa.ablations`` exports (pinned: a name removed or added by accident fails)."""

# The former homes of these names keep every public name they had, as the same objects.
FORMER_EXPORTS = {
    "medvqa.transforms": [
        "DEFAULT_FILLERS",
        "DEFAULT_NONSENSE_TEMPLATES",
        "TRANSFORMS_KEY",
        "TRANSFORM_NAMES",
        "BlankImage",
        "BlankKind",
        "Compose",
        "MedEvalKitPrompt",
        "NoImage",
        "NonsenseQuestions",
        "PromptMode",
        "PromptVariant",
        "SwapFallback",
        "SwapImages",
        "SwapRule",
        "Transform",
        "TransformError",
        "format_options",
        "made_up_questions",
        "parse_transforms",
        "transform_from_dict",
    ],
    "medvqa.probes": [
        "DEFAULT_ABSTENTION_PATTERNS",
        "DEFAULT_ABSTENTION_RULES",
        "DEFAULT_WHOLE_ANSWERS",
        "AblationReport",
        "AbstentionDecision",
        "AbstentionResult",
        "AbstentionRules",
        "MetricDifference",
        "ProbeError",
        "RelianceResult",
        "Subset",
        "ablation_report",
        "abstention",
        "detect_abstention",
        "run_ablations",
        "visual_reliance",
    ],
}


def _isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions and the rest."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


def _documented_modules() -> set[str]:
    text = "\n".join(p.read_text() for p in DOCS_API.glob("*.md"))
    return set(re.findall(r"\.\. automodule:: ([\w.]+)", text))


def test_top_level_names_resolve_and_are_sorted() -> None:
    assert medvqa.__all__ == sorted(medvqa.__all__, key=_isort_key)
    for name in medvqa.__all__:
        assert getattr(medvqa, name) is not None, name


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_module_exports_are_sorted_documented_and_resolve(module_name: str) -> None:
    if module_name in HEAVY_MODULES:
        pytest.importorskip("torch")
    module = importlib.import_module(module_name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort_key), f"{module_name}.__all__ is not sorted"
    assert module_name in _documented_modules(), f"{module_name} has no automodule page in docs/api"
    for name in exported:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{module_name}.{name} has no docstring"


def test_ablations_exports_are_pinned() -> None:
    import medvqa.ablations

    assert list(medvqa.ablations.__all__) == ABLATIONS_EXPORTS


@pytest.mark.parametrize("module_name", sorted(FORMER_EXPORTS))
def test_former_modules_re_export_the_same_objects(module_name: str) -> None:
    import medvqa.ablations

    module = importlib.import_module(module_name)
    assert list(module.__all__) == FORMER_EXPORTS[module_name]
    for name in FORMER_EXPORTS[module_name]:
        assert getattr(module, name) is getattr(medvqa.ablations, name), f"{module_name}.{name}"


@pytest.mark.parametrize("module_name", LIGHT_MODULES)
def test_light_core_does_not_import_torch(module_name: str) -> None:
    code = (
        f"import sys, {module_name}; "
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'datasets', 'nltk') if m in sys.modules); "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing {module_name} imported {out.stdout.strip()}"


def test_missing_training_extra_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A command that needs the [train] extra says which extra to install, in one line."""
    from medvqa import cli

    def needs_torch(args: object) -> int:
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    parser = cli.build_parser()
    real_parse = parser.parse_args

    def parse(argv: object = None) -> object:
        ns = real_parse(["score", "x.jsonl"])
        ns.func = needs_torch
        return ns

    monkeypatch.setattr(cli, "build_parser", lambda command=None: parser)
    monkeypatch.setattr(parser, "parse_args", parse)
    assert cli.main(["score", "x.jsonl"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "medvqa[train]" in err
    assert "'torch'" in err
