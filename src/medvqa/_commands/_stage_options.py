"""Options shared by the training commands (``train``, ``two-stage``, ``sweep``): configs and overrides."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

__all__ = ["add_stage_options", "parse_set", "resolve_stage"]

# YAML 1.1 reads "1e-4" (no dot) as a string; numbers written that way are numbers here.
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

PRESET_NAMES = (
    "paper_stage1",
    "paper_stage2",
    "paper_single_stage",
    "paper_single_stage_as_run",
    "recommended",
    "recommended_stage1",
    "recommended_single_stage",
)


def parse_set(items: list[str] | None, *, option: str = "--set") -> dict[str, Any]:
    """Parse ``KEY=VALUE`` overrides; values are read as YAML scalars (``1e-4``, ``true``, ``null``)."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} expects KEY=VALUE, got {item!r}")
        try:
            import yaml

            value = yaml.safe_load(raw) if raw.strip() else ""
        except ImportError:  # pragma: no cover - yaml ships with the train extra
            import json

            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
        except Exception as exc:
            raise ValueError(f"{option} {item!r}: cannot read the value: {exc}") from exc
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            value = float(value) if any(c in value for c in ".eE") else int(value)
        out[key.strip()] = value
    return out


def add_stage_options(parser: argparse.ArgumentParser, prefix: str = "", *, label: str = "the stage") -> None:
    """Add --config/--preset/--set (with an optional prefix such as ``stage1-``)."""
    dest = prefix.replace("-", "_")
    parser.add_argument(
        f"--{prefix}config",
        dest=f"{dest}config",
        type=Path,
        default=None,
        help=f"YAML or JSON stage config of {label} (see examples/*.yaml)",
    )
    parser.add_argument(
        f"--{prefix}preset",
        dest=f"{dest}preset",
        choices=PRESET_NAMES,
        default=None,
        help=f"start {label} from a built-in preset instead of a file",
    )
    parser.add_argument(
        f"--{prefix}set",
        dest=f"{dest}set",
        action="append",
        metavar="KEY=VALUE",
        help=f"override one setting of {label} (repeatable), e.g. --{prefix}set learning_rate=2e-4",
    )


def resolve_stage(
    args: argparse.Namespace, prefix: str = "", *, default_preset: str | None = None, **extra: Any
) -> Any:
    """Build the stage config from the parsed options: file or preset, then ``extra``, then ``--set``."""
    from medvqa.training import StageConfig, preset

    dest = prefix.replace("-", "_")
    path = getattr(args, f"{dest}config")
    name = getattr(args, f"{dest}preset")
    overrides = {k: v for k, v in extra.items() if v is not None}
    overrides.update(parse_set(getattr(args, f"{dest}set"), option=f"--{prefix}set"))
    if path is not None and name is not None:
        raise ValueError(f"give --{prefix}config or --{prefix}preset, not both")
    if path is not None:
        return StageConfig.load(path, **overrides)
    name = name or default_preset
    if name is None:
        raise ValueError(f"--{prefix}config or --{prefix}preset is required")
    return preset(name, **overrides)
