"""Every config file shipped in configs/ loads, and starts with the command that uses it."""

from __future__ import annotations

import tomllib

import pytest

from assistant.config import AppConfig, AssistantConfig
from finetune.config import FinetuneConfig
from ingest import IngestConfig, load_config
from tests.conftest import ROOT

SECTIONS = {"ingest": IngestConfig, "assistant": AssistantConfig, "finetune": FinetuneConfig, "app": AppConfig}


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_config_loads(path) -> None:
    assert path.read_text().startswith("# ragtune "), "first line shows the command that uses it"
    tables = tomllib.loads(path.read_text())
    assert set(tables) <= set(SECTIONS), f"unknown tables {set(tables) - set(SECTIONS)}"
    for section, cls in SECTIONS.items():
        if section in tables:
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in tables[section].items()}
            assert load_config(cls, section, path) == cls(**values)
