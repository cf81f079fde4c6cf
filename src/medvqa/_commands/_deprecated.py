"""Former spellings of ``medvqa`` options: they keep working for one release, each with a notice.

A former flag (``--precision``, ``--profiles``, ...) is a hidden option (absent from ``--help``)
that prints one deprecation line on stderr and stores its value where the current option
would. Former *values* (``--dtype fp16``, ``--transform swap_images``) are renamed by the
value types of :mod:`medvqa._commands._options`, which print the same notice through
:func:`deprecation`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEPRECATED_TRANSFORM_NAMES", "OLD_DTYPES", "add_deprecated", "deprecation"]

OLD_DTYPES: Mapping[str, str] = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
"""Former ``--dtype`` / ``--precision`` names and the torch dtype names that replace them."""

DEPRECATED_TRANSFORM_NAMES: Mapping[str, str] = {
    "swap_images": "swap",
    "blank_image": "blank",
    "no_image": "noimage",
}
"""Transform names of the former ``evaluate --transform`` and the names that replace them."""


def deprecation(old: str, new: str) -> None:
    """Print the one-line notice of a deprecated spelling on stderr."""
    print(
        f"medvqa: warning: {old} is deprecated and will be removed in the next release; use {new}",
        file=sys.stderr,
    )


class _Deprecated(argparse.Action):
    """A hidden former spelling: prints a notice and stores through the current option's action."""

    def __init__(self, *args: Any, new: str, convert: Callable[[Any], Any] | None, **kwargs: Any) -> None:
        self.new, self.convert = new, convert
        super().__init__(*args, **kwargs)

    def __call__(
        self, parser: argparse.ArgumentParser, ns: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        deprecation(str(option), self.new)
        if self.convert is not None:
            try:
                values = self.convert(values)
            except argparse.ArgumentTypeError as exc:
                parser.error(f"argument {option}: {exc}")
        if isinstance(values, list):
            before = getattr(ns, self.dest, None) or []
            values = list(dict.fromkeys([*before, *values]))
        setattr(ns, self.dest, values)


# The converters check a former flag's value with the current option's value type. Those
# types live in ``_options``, which imports this module, hence the imports at call time.
def _precision(value: str) -> str:
    from medvqa._commands._options import dtype_name

    return dtype_name(OLD_DTYPES.get(value, value))


def _profiles(value: str) -> list[str]:
    from medvqa._commands._options import profile_names

    return profile_names([value])


def _transforms(value: str) -> list[str]:
    from medvqa._commands._options import transform_names

    return transform_names([value])


# former spelling -> (current option, converter of the parsed value, add_argument keywords)
_DEPRECATED: Mapping[str, tuple[str, Callable[[Any], Any] | None, dict[str, Any]]] = {
    "--precision": ("--dtype", _precision, {"dest": "dtype", "metavar": "P"}),
    "--profiles": ("--profile", _profiles, {"dest": "profile", "metavar": "A,B"}),
    "--transforms": ("--transform", _transforms, {"dest": "transform", "metavar": "A,B"}),
    "--sweep-sizes": ("--sizes", None, {"dest": "sizes", "metavar": "A,B"}),
    "--med-halt": ("--nonsense-data", Path, {"dest": "nonsense_data", "metavar": "PATH"}),
    "--med-halt-split": ("--nonsense-split", None, {"dest": "nonsense_split"}),
}


def add_deprecated(parser: argparse.ArgumentParser, *flags: str) -> None:
    """Add hidden former spellings (``--precision``, ``--profiles``, ``--transforms``, the demo's
    ``--sweep-sizes``, ``--med-halt`` and ``--med-halt-split``) that still work."""
    for flag in flags:
        new, convert, kwargs = _DEPRECATED[flag]
        parser.add_argument(
            flag, action=_Deprecated, new=new, convert=convert, help=argparse.SUPPRESS, **kwargs
        )
