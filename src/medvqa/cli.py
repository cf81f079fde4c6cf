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


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser of the ``medvqa`` command."""
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
    for name in _COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``medvqa`` command and return its exit code.

    Errors raised on purpose (bad input, missing files, invalid options) are printed as one
    line, ``medvqa: error: ...``, with exit code 1; ``--debug`` shows the traceback instead.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
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
