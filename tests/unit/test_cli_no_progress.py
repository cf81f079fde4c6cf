"""``--no-progress`` hides transformers' own progress bars in every command that has the option."""

from __future__ import annotations

import argparse
import importlib

import pytest

from medvqa.cli import main

transformers_logging = pytest.importorskip("transformers.utils.logging")

# Every command with --no-progress, with the fewest arguments its parser accepts.
_COMMANDS = {
    "predict": ["predict", "--model", "tiny", "--dataset", "vqa_rad", "--output", "p.jsonl"],
    "predict_and_score": ["predict-and-score", "--model", "tiny", "--dataset", "vqa_rad", "--output", "out"],
    "ablate": [
        "ablate",
        "--model",
        "tiny",
        "--dataset",
        "vqa_rad",
        "--transform",
        "swap",
        "--output",
        "out",
    ],
    "train": ["train", "--preset", "paper_stage1", "--output", "out"],
    "two_stage": ["two-stage", "--output", "out"],
    "sweep": ["sweep", "--output", "out"],
    "demo": ["demo"],
}


@pytest.mark.parametrize("module", sorted(_COMMANDS))
def test_no_progress_silences_transformers_bars_while_the_command_runs(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []

    def fake_run(args: argparse.Namespace) -> int:
        seen.append(bool(transformers_logging.is_progress_bar_enabled()))
        return 0

    monkeypatch.setattr(importlib.import_module(f"medvqa._commands.{module}"), "_run", fake_run)
    transformers_logging.enable_progress_bar()
    argv = _COMMANDS[module]
    assert main([*argv, "--no-progress"]) == 0
    assert main(argv) == 0
    assert seen == [False, True]  # hidden with the option, shown without it
    assert transformers_logging.is_progress_bar_enabled()  # and restored afterwards


def test_every_command_with_the_option_is_covered_above() -> None:
    from medvqa.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    having = {
        name.replace("-", "_")
        for name, p in sub.choices.items()
        if any("--no-progress" in a.option_strings for a in p._actions)
    }
    assert having - {"evaluate"} == set(_COMMANDS)  # evaluate: the former name of predict-and-score
