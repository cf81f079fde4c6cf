"""Options shared by the training commands (``train``, ``two-stage``, ``sweep``): configs and overrides."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

__all__ = [
    "add_stage_options",
    "add_two_stage_options",
    "add_two_stage_sources",
    "parse_set",
    "resolve_stage",
    "resolve_two_stages",
]

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
        help=(
            f"YAML or JSON stage config of {label} (as written by 'medvqa train --print-config'), "
            f"or a recipe of examples/*.yaml, whose {prefix.rstrip('-') or 'only stage'} section is read"
        ),
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


def add_two_stage_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of both stages (``two-stage``, ``sweep``): --stage1-*, --stage2-* and --set of both."""
    add_stage_options(parser, "stage1-", label="stage 1 (default preset: paper_stage1)")
    add_stage_options(parser, "stage2-", label="stage 2 (default preset: paper_stage2)")
    parser.add_argument(
        "--set",
        dest="both_set",
        action="append",
        metavar="KEY=VALUE",
        help="override a setting of both stages",
    )


def two_stage_parser(subparsers: Any, name: str, *, help: str, description: str, epilog: str) -> Any:
    """The parser of a command that trains both stages (``two-stage``, ``sweep``), with the options
    of both stages and their sources (:func:`add_two_stage_options`, :func:`add_two_stage_sources`)."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_two_stage_options(parser)
    add_two_stage_sources(parser)
    return parser


def add_two_stage_sources(parser: argparse.ArgumentParser) -> None:
    """Add --model and --family (of both stages), --stage1-data and --stage2-data."""
    from medvqa._commands._options import add_options

    add_options(parser, ("model", "family"))
    parser.add_argument(
        "--stage1-data", default=None, help="stage-1 caption folder in ROCO layout (default: bundled)"
    )
    parser.add_argument(
        "--stage2-data", default=None, help="stage-2 VQA-RAD folder (default: bundled sample)"
    )


def resolve_two_stages(args: argparse.Namespace, **stage1_extra: Any) -> tuple[Any, Any]:
    """Build stage 1 and stage 2 from :func:`add_two_stage_options` and :func:`add_two_stage_sources`.

    ``--set`` (and ``--report-to``) apply to both stages; ``stage1_extra`` holds more settings of stage 1.
    """
    both = parse_set(args.both_set)
    if getattr(args, "report_to", None) is not None:
        both.setdefault("report_to", args.report_to)
    s1 = resolve_stage(
        args,
        "stage1-",
        default_preset="paper_stage1",
        model=args.model,
        family=args.family,
        data_dir=args.stage1_data,
        **stage1_extra,
        **both,
    )
    s2 = resolve_stage(
        args,
        "stage2-",
        default_preset="paper_stage2",
        model=args.model,
        family=args.family,
        data_dir=args.stage2_data,
        **both,
    )
    return s1, s2


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
        section = _recipe_section(Path(path), prefix)
        if section is None:
            return StageConfig.load(path, **overrides)
        from medvqa._errors import DataFormatError

        where = f"{path} (section {section})"
        cfg = StageConfig.from_dict(_read_mapping(Path(path))[section], file=where)
        try:
            return cfg.replace(**overrides) if overrides else cfg
        except (TypeError, ValueError) as exc:
            raise DataFormatError(str(exc), file=where) from exc
    name = name or default_preset
    if name is None:
        raise ValueError(f"--{prefix}config or --{prefix}preset is required")
    return preset(name, **overrides)


_SECTIONS = ("stage1", "stage2")


def _read_mapping(path: Path) -> Any:
    from medvqa._errors import DataFormatError

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DataFormatError("config file not found", file=str(path)) from exc
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        import json

        return json.loads(text)
    except Exception:
        return None  # StageConfig.load reports the parse error with its position


def _recipe_section(path: Path, prefix: str) -> str | None:
    """The stage section to read when ``path`` is a recipe of ``examples/`` (``stage1:``/``stage2:``).

    ``--stage1-config`` reads ``stage1``, ``--stage2-config`` reads ``stage2``, and a plain
    ``--config`` reads the recipe's only stage section. ``None``: a plain stage config file.

    Raises:
        DataFormatError: The recipe lacks the section, or ``--config`` is ambiguous.
    """
    from medvqa._errors import DataFormatError

    data = _read_mapping(path)
    if not isinstance(data, dict) or not any(isinstance(data.get(k), dict) for k in _SECTIONS):
        return None
    present = [k for k in _SECTIONS if isinstance(data.get(k), dict)]
    wanted = prefix.rstrip("-")
    if wanted in _SECTIONS:
        if wanted not in present:
            raise DataFormatError(
                f"this recipe has no {wanted} section (it has {', '.join(present)})", file=str(path)
            )
        return wanted
    if len(present) > 1:
        raise DataFormatError(
            "this recipe has sections stage1 and stage2; train them with 'medvqa two-stage "
            "--stage1-config FILE --stage2-config FILE'",
            file=str(path),
        )
    return present[0]
