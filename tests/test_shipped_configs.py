"""Every config file shipped in configs/ loads, and starts with the command that uses it."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from assistant.config import AppConfig, AssistantConfig, ServeConfig
from finetune.config import FinetuneConfig
from ingest import IngestConfig, load_config
from tests.conftest import ROOT

SECTIONS = {
    "ingest": IngestConfig,
    "assistant": AssistantConfig,
    "finetune": FinetuneConfig,
    "serve": ServeConfig,
    "app": AppConfig,
}


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_config_loads(path) -> None:
    assert path.read_text().startswith("# ragtune "), "first line shows the command that uses it"
    tables = tomllib.loads(path.read_text())
    assert set(tables) <= set(SECTIONS), f"unknown tables {set(tables) - set(SECTIONS)}"
    for section, cls in SECTIONS.items():
        if section in tables:
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in tables[section].items()}
            assert load_config(cls, section, path) == cls(**values)


def test_the_reference_config_lists_every_key_with_its_default() -> None:
    tables = tomllib.loads((ROOT / "configs" / "ragtune.toml").read_text())
    assert set(tables) == set(SECTIONS)
    for section, cls in SECTIONS.items():
        defaults = {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in tables[section].items()}
        assert values == defaults, section
