"""Count options (--limit, --eval-limit, --batch-size, --max-new-tokens) refuse 0 and negatives everywhere."""

from __future__ import annotations

import argparse

import pytest

from medvqa._commands._common import positive_int
from medvqa.cli import build_parser

_COUNTS = ("--limit", "--eval-limit", "--batch-size", "--max-new-tokens")


def _count_options() -> list[tuple[str, str, argparse.Action]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [
        (name, option, action)
        for name, p in sorted(sub.choices.items())
        for action in p._actions
        for option in action.option_strings
        if option in _COUNTS
    ]


def test_every_count_option_of_every_command_uses_one_type() -> None:
    found = _count_options()
    commands = {"ablate", "demo", "predict-and-score", "predict", "sweep", "two-stage"}
    assert {name for name, _, _ in found} >= commands
    assert all(action.type is positive_int for _, _, action in found), [
        (name, option) for name, option, action in found if action.type is not positive_int
    ]


@pytest.mark.parametrize("bad", ["-5", "0", "two"])
def test_a_count_below_one_is_refused_by_name(bad: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=f"at least 1, got '{bad}'"):
        positive_int(bad)


def test_eval_limit_minus_five_is_an_error_not_a_slice(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["two-stage", "--eval-limit", "-5", "--output", "out"])
    assert exc.value.code == 2
    assert "argument --eval-limit: must be a whole number of at least 1, got '-5'" in capsys.readouterr().err
