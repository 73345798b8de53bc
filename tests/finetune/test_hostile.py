"""Broken adapters and bad example files: one line each that says what to do, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.adapters import Registry
from finetune.config import FinetuneConfig
from finetune.data import build_dataset, read_examples
from finetune.errors import FinetuneError
from ingest import IngestConfig
from tests.finetune.test_adapters import register


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path)
    register(registry, "good")
    register(registry, "other")
    registry.activate("good")
    return registry


def test_deleted_weights_are_named(registry: Registry) -> None:
    (registry.root / "good" / "adapter_model.safetensors").unlink()
    with pytest.raises(FinetuneError, match=r"'good' has lost its weights .*ragtune adapters remove good"):
        registry.resolve("active")
    with pytest.raises(FinetuneError, match="lost its weights"):
        registry.resolve("good")


def test_corrupt_adapter_config_is_named(registry: Registry) -> None:
    (registry.root / "good" / "adapter_config.json").write_text('{"r": 8, "lora_alpha"')
    with pytest.raises(FinetuneError, match=r"adapter_config.json is damaged .*remove good"):
        registry.resolve("good")
    (registry.root / "good" / "adapter_config.json").unlink()
    with pytest.raises(FinetuneError, match=r"has no adapter_config\.json"):
        registry.resolve("good")


def test_corrupt_adapter_json_is_listed_and_removable(registry: Registry) -> None:
    (registry.root / "other" / "adapter.json").write_bytes(b"\x00\xff garbage")
    with pytest.raises(FinetuneError, match=r"other/adapter.json is damaged .*ragtune adapters remove other"):
        registry.get("other")
    listed = {a.name: a for a in registry.list()}
    assert "damaged" in listed["other"].metadata["error"] and "error" not in listed["good"].metadata
    registry.remove("other")
    assert [a.name for a in registry.list()] == ["good"]


@pytest.mark.parametrize("content", ['{"active": "good", "hist', "[1, 2]", '{"active": 5}'])
def test_corrupt_active_json_is_named(registry: Registry, content: str) -> None:
    (registry.root / "active.json").write_text(content)
    with pytest.raises(FinetuneError, match=r"active.json .*delete .* to use the base model"):
        registry.active()


def test_overlong_adapter_names_are_refused_in_words(registry: Registry) -> None:
    name = "x" * 300
    for call in (registry.path, registry.resolve, registry.get, registry.remove):
        with pytest.raises(FinetuneError, match="at most 100 printable characters"):
            call(name)


def _problem(path: Path) -> str:
    loaded = read_examples(path)
    assert loaded.examples == [] and len(loaded.problems) == 1
    return loaded.problems[0]


def test_bad_example_files_each_get_their_own_reason(tmp_path: Path) -> None:
    folder = tmp_path / "examples"
    folder.mkdir()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("  \n")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(bytes(range(256)) * 4)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"instruction": "Qu\'est-ce qu\'un caf\xe9 ?", "output": "Une boisson."}\n'.encode("latin-1"))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    deep_line = tmp_path / "deep.jsonl"
    deep_line.write_text('{"a": ' * 100_000 + "1" + "}" * 100_000 + "\n")
    assert "is a folder, not a file" in _problem(folder)
    assert "is empty" in _problem(empty)
    assert "is binary, not JSON text" in _problem(binary)
    assert "is not UTF-8 (byte 0xe9 at offset 36, perhaps latin-1" in _problem(latin)
    assert "nested too deeply" in _problem(deep)
    assert _problem(deep_line).startswith("deep.jsonl:1: JSON nested too deeply")


def test_an_unreadable_examples_file_stops_the_build_with_its_reason(tmp_path: Path) -> None:
    latin = tmp_path / "mine.jsonl"
    latin.write_bytes(b'{"instruction": "caf\xe9", "output": "yes"}\n')
    config = FinetuneConfig(examples=(str(latin),), synthetic="none", tool_examples=0)
    ingest_config = IngestConfig(home=str(tmp_path / "home"))
    with pytest.raises(FinetuneError, match=r"examples file .*mine.jsonl is not UTF-8 .*save it as UTF-8"):
        build_dataset(config, ingest_config, "unused-model", None, tmp_path / "out")  # type: ignore[arg-type]
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": "no known format"}) + "\n")
    config = FinetuneConfig(examples=(str(rows),), synthetic="none", tool_examples=0)
    with pytest.raises(FinetuneError, match=r"no training examples \(rows.jsonl:1: unknown format"):
        build_dataset(config, ingest_config, "unused-model", None, tmp_path / "out")  # type: ignore[arg-type]
