"""Name lists are derived from their registries, never kept by hand."""

from __future__ import annotations

import argparse
import inspect
from typing import get_args

import pytest

from medvqa.ablations import TRANSFORM_NAMES, TRANSFORM_TYPES, Transform, parse_transforms
from medvqa.data import DATASETS, SAMPLE_FOLDERS, DatasetName, sample_root
from medvqa.metrics import PROFILES


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


def _options(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, argparse.Action]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _options(sub, f"{prefix}{name} ")
        else:
            out.append((prefix.strip(), action))
    return out


def test_every_transform_class_is_registered() -> None:
    """A new Transform subclass that is not in the registry fails here."""
    defined = {cls.name for cls in _all_subclasses(Transform) if cls.__module__.startswith("medvqa.")}
    assert set(TRANSFORM_TYPES) == defined


def test_transform_names_are_the_parsers_names() -> None:
    for name in TRANSFORM_NAMES:
        assert list(parse_transforms(name)) == [name]


def test_dataset_lists_are_the_registry() -> None:
    from medvqa._commands._common import DATASET_NAMES, SAMPLE_DIRS
    from medvqa.training._config import DatasetName as StageDatasetName

    assert tuple(DATASETS) == DATASET_NAMES
    assert get_args(DatasetName) == tuple(DATASETS)  # a Literal cannot be derived: pinned instead
    assert get_args(StageDatasetName) == tuple(DATASETS)
    assert SAMPLE_DIRS is SAMPLE_FOLDERS


def test_bundled_sample_folders_exist_for_registered_datasets() -> None:
    assert set(SAMPLE_FOLDERS) <= set(DATASETS)
    assert set(DATASETS) - set(SAMPLE_FOLDERS) == {"path_vqa"}  # its images may not be redistributed
    for folder in SAMPLE_FOLDERS.values():
        assert (sample_root() / folder).is_dir(), folder


def test_every_profile_option_of_the_cli_takes_the_registry() -> None:
    from medvqa._commands._options import profile_names
    from medvqa.cli import build_parser

    seen = 0
    for command, action in _options(build_parser()):
        if "--profile" in action.option_strings and action.help is not argparse.SUPPRESS:
            for name in PROFILES:
                assert name in str(action.help), (command, name)
            seen += 1
    assert seen >= 3
    assert profile_names(["all"]) == list(PROFILES)
    assert [profile_names([name]) for name in PROFILES] == [[name] for name in PROFILES]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown profile"):
        profile_names(["no_such_profile"])


def test_dataset_choices_of_the_cli_come_from_the_registry() -> None:
    from medvqa.cli import build_parser

    for command, action in _options(build_parser()):
        if action.dest in ("dataset", "name") and action.choices and "vqa_rad" in action.choices:
            assert tuple(action.choices) == tuple(DATASETS), command


def test_judge_report_defaults_to_every_profile() -> None:
    from medvqa.judge import judge_report

    assert inspect.signature(judge_report).parameters["profiles"].default == tuple(PROFILES)


def test_lora_preset_literals_are_the_registered_presets() -> None:
    from medvqa.models import FAMILIES, LORA_PRESET_NAMES
    from medvqa.models._lora import LoraPreset
    from medvqa.training._config import LoraPresetName

    assert get_args(LoraPresetName) == LORA_PRESET_NAMES
    assert get_args(LoraPreset) == (*LORA_PRESET_NAMES, "custom")
    for family in FAMILIES.values():
        assert set(LORA_PRESET_NAMES) <= set(family.lora_presets), family.name


def test_prompt_and_transform_choices_name_registered_entries() -> None:
    from medvqa.chat import PROMPTS
    from medvqa.cli import build_parser
    from medvqa.training._config import PromptName

    assert set(get_args(PromptName)) <= set(PROMPTS)
    for command, action in _options(build_parser()):
        if "--prompt" in action.option_strings and action.choices is not None:
            assert set(action.choices) <= set(PROMPTS), command
        if "--transform" in action.option_strings and action.choices is not None:
            assert set(action.choices) <= set(TRANSFORM_TYPES) | set(TRANSFORM_NAMES), command
