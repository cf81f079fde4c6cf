"""Running one command builds only that command's parser, and it is the same as in the full parser."""

from __future__ import annotations

import argparse
import sys

import pytest

from medvqa.cli import _MODULE_OF, _named_command, build_parser


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_the_command_table_names_every_command_of_the_full_parser() -> None:
    assert set(_MODULE_OF) == set(_subcommands(build_parser()))


@pytest.mark.parametrize("command", sorted(_MODULE_OF))
def test_a_one_command_parser_has_that_command_exactly(command: str) -> None:
    alone = _subcommands(build_parser(command))
    assert command in alone
    assert alone[command].format_help() == _subcommands(build_parser())[command].format_help()


def test_running_score_does_not_import_the_other_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("medvqa._commands.") and not m.endswith("_options")]:
        monkeypatch.delitem(sys.modules, name)
    build_parser("score")
    assert "medvqa._commands.train" not in sys.modules
    assert "medvqa._commands.score" in sys.modules


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["score", "x.jsonl"], "score"),
        (["--debug", "predict-and-score", "--help"], "predict-and-score"),
        (["--help", "score"], None),
        (["--version"], None),
        (["bogus"], None),
        ([], None),
    ],
)
def test_the_named_command_is_read_before_any_help_flag(argv: list[str], expected: str | None) -> None:
    assert _named_command(argv) == expected
