"""Properties of stage configs: every valid config survives JSON and YAML unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from medvqa.training import StageConfig
from tests.strategies import stage_config_kwargs


@settings(max_examples=60, deadline=None)
@given(stage_config_kwargs)
def test_json_round_trip_is_identity(kwargs: dict[str, Any]) -> None:
    """A config read back from its JSON equals the original, and so does its fingerprint."""
    cfg = StageConfig(**kwargs)
    again = StageConfig.from_json(cfg.to_json())
    assert again == cfg and again.fingerprint() == cfg.fingerprint()


@settings(max_examples=40, deadline=None)
@given(stage_config_kwargs)
def test_yaml_round_trip_is_identity(kwargs: dict[str, Any]) -> None:
    """A config read back from its YAML equals the original."""
    pytest.importorskip("yaml")
    cfg = StageConfig(**kwargs)
    assert StageConfig.from_yaml(cfg.to_yaml(header="any header\nsecond line")) == cfg
