"""Every command of the training area explains every option and shows an example; errors are one line."""

from __future__ import annotations

import argparse

import pytest

from medvqa.cli import build_parser, main

COMMANDS = ("train", "two-stage", "sweep", "predict-and-score", "demo")


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub = action.choices[name]
            assert isinstance(sub, argparse.ArgumentParser)
            return sub
    raise AssertionError("no subcommands")


@pytest.mark.parametrize("name", COMMANDS)
def test_help_explains_every_option_with_an_example(name: str) -> None:
    sub = _subparser(name)
    for action in sub._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        assert action.help and len(action.help) > 10, f"{name} {action.option_strings}: no help text"
    text = sub.format_help()
    assert "examples:" in text and f"medvqa {name}" in text.split("examples:", 1)[1]
    assert "examples/two_stage/" not in text and "examples/size_sweep/" not in text  # files that exist


def test_errors_are_one_line_with_nonzero_exit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--preset", "paper_stage2", "--set", "batch_size=0", "--print-config"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("medvqa:") and "batch_size" in err
    with pytest.raises(ValueError, match="batch_size"):  # --debug lets the exception (and traceback) through
        main(["--debug", "train", "--preset", "paper_stage2", "--set", "batch_size=0", "--print-config"])
