"""One vocabulary: every concept has one spelling, one type, one default and one help text in every command.

The test walks every parser of ``medvqa`` (subcommands of subcommands included). Former
spellings are allowed only as hidden aliases that still work and print a deprecation line.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from medvqa._commands._loading import resolve_quantization
from medvqa._commands._options import PER_COMMAND_HELP
from medvqa.cli import build_parser, main

# concepts that once had two spellings: the current one and the former one(s)
SYNONYMS = {
    "--dtype": ("--precision",),
    "--profile": ("--profiles",),
    "--transform": ("--transforms",),
    "--sizes": ("--sweep-sizes",),
    "--nonsense-data": ("--med-halt",),
    "--nonsense-split": ("--med-halt-split",),
}
# (command, dest): a documented reason to differ from the shared definition
EXCEPTIONS = {
    ("data summary", "split"): "summarizes every split unless one is named (no default split)",
}
# an option string stored under two names, for a documented reason
TWO_DESTS = {"--set": "train overrides its one stage (set); two-stage and sweep both stages (both_set)"}


def _commands(
    parser: argparse.ArgumentParser, prefix: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{prefix} {name}".strip()
                yield full, sub
                yield from _commands(sub, full)


def _options() -> list[tuple[str, argparse.Action]]:
    return [
        (command, action)
        for command, sub in _commands(build_parser())
        for action in sub._actions
        if action.option_strings and not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
    ]


def _listed(action: argparse.Action) -> bool:
    return action.help is not argparse.SUPPRESS


def test_every_concept_has_one_definition_across_commands() -> None:
    by_dest: dict[str, dict[tuple[object, ...], list[str]]] = defaultdict(lambda: defaultdict(list))
    for command, action in _options():
        if not _listed(action) or (command, action.dest) in EXCEPTIONS:
            continue
        shape: tuple[object, ...] = (
            tuple(action.option_strings),
            type(action).__name__,
            repr(action.default),
            action.type,
            tuple(action.choices) if action.choices is not None else None,
            action.nargs,
            action.metavar,
        )
        if action.dest in PER_COMMAND_HELP:  # --output and --format: the command words them
            shape = shape[:2] + ((action.type,) if action.dest == "output" else ())
        else:
            shape += (action.help,)
        by_dest[action.dest][shape].append(command)
    differing = {dest: dict(shapes) for dest, shapes in by_dest.items() if len(shapes) > 1}
    assert not differing, differing


def test_one_option_string_means_one_destination() -> None:
    seen: dict[str, set[str]] = defaultdict(set)
    for _, action in _options():
        for option in action.option_strings:
            seen[option].add(action.dest)
    assert {o: d for o, d in seen.items() if len(d) > 1 and o not in TWO_DESTS} == {}


@pytest.mark.parametrize(("current", "former"), [(c, f) for c, fs in SYNONYMS.items() for f in fs])
def test_a_former_spelling_exists_only_as_a_hidden_alias(current: str, former: str) -> None:
    options = _options()
    having = {command for command, action in options if former in action.option_strings}
    assert having, f"no command accepts {former} any more: drop it from SYNONYMS"
    for command, action in options:
        if former in action.option_strings:
            assert not _listed(action), f"{command}: {former} is listed in --help"
            assert action.dest == current.lstrip("-").replace("-", "_"), command
            assert any(current in a.option_strings for c, a in options if c == command), command


def test_the_renamed_command_is_hidden_from_the_command_list() -> None:
    text = build_parser().format_help()
    assert "predict-and-score" in text and "evaluate" not in text


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


_BASE = ["--model", "tiny", "--dataset", "vqa_rad", "--output", "out"]


@pytest.mark.parametrize(
    ("argv", "dest", "expected", "notice"),
    [
        (["predict-and-score", *_BASE, "--precision", "fp16"], "dtype", "float16", "--precision"),
        (["predict-and-score", *_BASE, "--precision", "auto"], "dtype", "auto", "--precision"),
        (["predict", *_BASE, "--dtype", "bf16"], "dtype", "bfloat16", "--dtype bf16"),
        (
            ["predict-and-score", *_BASE, "--profiles", "paper,strict"],
            "profile",
            ["paper", "strict"],
            "--profiles",
        ),
        (["two-stage", "--output", "o", "--profiles", "strict"], "profile", ["strict"], "--profiles"),
        (["sweep", "--output", "o", "--profiles", "paper"], "profile", ["paper"], "--profiles"),
        (["demo", "--profiles", "paper,strict"], "profile", ["paper", "strict"], "--profiles"),
        (["demo", "--sweep-sizes", "0,8"], "sizes", "0,8", "--sweep-sizes"),
        (["demo", "--med-halt", "mh"], "nonsense_data", Path("mh"), "--med-halt"),
        (["demo", "--med-halt-split", "test"], "nonsense_split", "test", "--med-halt-split"),
        (
            ["ablate", *_BASE, "--transforms", "swap,noimage"],
            "transform",
            ["swap", "noimage"],
            "--transforms",
        ),
        (
            ["predict-and-score", *_BASE, "--transform", "swap_images"],
            "transform",
            ["swap"],
            "--transform swap_images",
        ),
        (["ablate", *_BASE, "--transform", "no_image+expert"], "transform", ["noimage+expert"], "no_image"),
    ],
)
def test_each_former_spelling_still_works_and_warns(
    argv: list[str], dest: str, expected: object, notice: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert getattr(_parse(argv), dest) == expected
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "deprecated" in err and notice in err


def test_the_current_spellings_do_not_warn(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse(["predict-and-score", *_BASE, "--dtype", "float16", "--profile", "paper", "strict"])
    assert (args.dtype, args.profile) == ("float16", ["paper", "strict"])
    args = _parse(["ablate", *_BASE, "--transform", "swap", "swap_index", "--transform", "blank,swap"])
    assert args.transform == ["swap", "swap_index", "blank"]
    assert _parse(["score", "f.jsonl", "--profile", "all"]).profile[-1] == "strict"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["score", "f.jsonl", "--profile", "papr"],
        ["predict", *_BASE, "--dtype", "float8"],
        ["predict", *_BASE, "--quantization", "nf3"],
        ["score", "f.jsonl", "--n-boot", "-1"],
        ["predict", *_BASE, "--num-workers", "-2"],
    ],
)
def test_a_bad_value_is_refused_by_the_parser(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse(argv)
    assert exc.value.code == 2 and argv[-1] in capsys.readouterr().err


def test_the_evaluate_command_still_works_and_warns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import medvqa._commands.predict_and_score as command

    ran: list[str] = []
    monkeypatch.setattr(command, "_run", lambda args: ran.append(args.command) or 0)
    assert main(["evaluate", *_BASE]) == 0 and main(["predict-and-score", *_BASE]) == 0
    assert ran == ["evaluate", "predict-and-score"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'medvqa evaluate' is deprecated" in err and "predict-and-score" in err


def test_quantization_auto_is_none_on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_quantization("auto") == "none"
    assert resolve_quantization("nf4") == "nf4"  # an explicit choice is kept
    for command in ("predict", "predict-and-score", "ablate", "demo"):
        argv = [command] if command == "demo" else [command, *_BASE]
        assert _parse(argv).quantization == "auto", command


def test_run_records_hold_the_resolved_quantization_and_dtype(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    from medvqa._commands._loading import model_settings

    settings = model_settings(_parse(["predict", *_BASE]))
    assert (settings.quantization, settings.dtype) == ("none", "float32")
    assert settings.record()["quantization"] == "none" and settings.record()["dtype"] == "float32"


def test_the_same_model_flags_reach_the_loader_in_every_generating_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--dtype, --device-map, --adapter and --seed are read the same way by predict, predict-and-score and ablate."""
    pytest.importorskip("torch")
    from medvqa._commands._loading import model_settings

    extra = ["--dtype", "bfloat16", "--device-map", "cpu", "--seed", "3", "--quantization", "int8"]
    seen = set()
    for command in ("predict", "predict-and-score", "ablate"):
        s = model_settings(_parse([command, *_BASE, *extra]))
        seen.add((s.dtype, s.device_map, s.seed, s.quantization))
    assert seen == {("bfloat16", "cpu", 3, "int8")}
