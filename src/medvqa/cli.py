"""The ``medvqa`` command: a thin layer that parses arguments and calls the public API.

Every subcommand lives in its own module under ``medvqa._commands`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the
parsed arguments and returning an exit code). Command modules import heavy libraries
(torch, transformers) only inside ``func``, so ``medvqa --help`` and ``medvqa score`` start
instantly.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from typing import Any

from medvqa import __version__

__all__ = ["main"]

# Order here is the order of ``medvqa --help``.
_COMMAND_MODULES: tuple[str, ...] = (
    "medvqa._commands.data",
    "medvqa._commands.demo",
    "medvqa._commands.train",
    "medvqa._commands.two_stage",
    "medvqa._commands.sweep",
    "medvqa._commands.predict",
    "medvqa._commands.score",
    "medvqa._commands.predict_and_score",
    "medvqa._commands.ablate",
    "medvqa._commands.report",
    "medvqa._commands.review",
    "medvqa._commands.models",
    "medvqa._commands.export",
)

# Each command name (hidden aliases included) and the module that registers it, so that a run
# of one command builds only that command's parser; a test checks it against the full parser.
_MODULE_OF: dict[str, str] = {
    "data": "medvqa._commands.data",
    "demo": "medvqa._commands.demo",
    "train": "medvqa._commands.train",
    "two-stage": "medvqa._commands.two_stage",
    "sweep": "medvqa._commands.sweep",
    "predict": "medvqa._commands.predict",
    "score": "medvqa._commands.score",
    "predict-and-score": "medvqa._commands.predict_and_score",
    "evaluate": "medvqa._commands.predict_and_score",
    "ablate": "medvqa._commands.ablate",
    "report": "medvqa._commands.report",
    "review": "medvqa._commands.review",
    "models": "medvqa._commands.models",
    "export": "medvqa._commands.export",
}


def _named_command(argv: Sequence[str]) -> str | None:
    """The command that ``argv`` runs, when it names a known one before any help or version flag."""
    for arg in argv:
        if arg in ("-h", "--help", "--version"):
            return None
        if not arg.startswith("-"):
            return arg if arg in _MODULE_OF else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of the ``medvqa`` command.

    Args:
        command: Register only this command's module (every command when ``None``): the
            parser then accepts that command alone, with the same options and help as in the
            full parser. :func:`main` does this when the arguments name a command, so that
            running one command does not import every other command's definitions.
    """
    parser = argparse.ArgumentParser(
        prog="medvqa",
        description=(
            "Medical visual question answering with multimodal language models: data, "
            "two-stage QLoRA fine-tuning of vision-language models, honest scoring, ablations and reports."
        ),
        epilog="Run 'medvqa COMMAND --help' for the options and an example of each command.",
    )
    parser.add_argument("--version", action="version", version=f"medvqa {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback when a command fails")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES if command is None else (_MODULE_OF[command],):
        if importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``medvqa`` command and return its exit code.

    Errors raised on purpose (bad input, missing files, invalid options) are printed as one
    line, ``medvqa: error: ...``, with exit code 1; ``--debug`` shows the traceback instead.
    """
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_named_command(arguments))
    args = parser.parse_args(arguments)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    renamed = getattr(args, "deprecated_command", None)
    if renamed:
        from medvqa._commands._options import deprecation

        deprecation(f"'medvqa {args.command}'", f"'medvqa {renamed}'")
    undo = _quiet_transformers() if getattr(args, "no_progress", False) else None
    try:
        code = func(args)
    except KeyboardInterrupt:
        print("medvqa: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line is the contract
        if args.debug:
            raise
        from medvqa._errors import MedVQAError
        from medvqa._extras import MissingExtraError, missing_train_module

        missing = missing_train_module(exc)
        if missing is not None:  # which extra to install, not an import traceback
            error = MissingExtraError.for_module(f"'medvqa {args.command}'", missing)
            print(f"medvqa: error: {error}", file=sys.stderr)
            return 1
        expected = isinstance(exc, MedVQAError | OSError | ValueError | KeyError | TypeError)
        kind = "error" if expected else f"unexpected {type(exc).__name__}"
        print(f"medvqa: {kind}: {exc} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    finally:
        if undo is not None:
            undo()
    return int(code or 0)


def _quiet_transformers() -> Callable[[], None] | None:
    """``--no-progress``: hide transformers' own progress bars (loading and saving weights) too.

    Returns the undo, or ``None`` when transformers is not installed (light commands).
    """
    try:
        from transformers.utils import logging as _hf_logging
    except ModuleNotFoundError:
        return None
    hf_logging: Any = _hf_logging
    was_enabled = bool(hf_logging.is_progress_bar_enabled())
    hf_logging.disable_progress_bar()
    return hf_logging.enable_progress_bar if was_enabled else None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
