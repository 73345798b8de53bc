"""The adapter registry: list, activate, roll back, remove; wrong base models refused; names resolved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.adapters import ACTIVE_FILE, Registry, same_model
from finetune.errors import FinetuneError


def register(registry: Registry, name: str, base: str = "org/Model-1B", created: str = "2026-01-01") -> Path:
    folder = registry.root / f".{name}.tmp"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base}))
    (folder / "adapter.json").write_text(json.dumps({"name": name, "base_model": base, "created": created}))
    (folder / "adapter_model.safetensors").write_bytes(b"weights")  # checked to exist, never loaded here
    return registry.add(name, folder)


def test_activate_rollback_and_remove(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert registry.list() == [] and registry.active() is None and registry.resolve("active") == ""
    for n, name in enumerate(["a", "b", "c"]):
        register(registry, name, created=f"2026-01-0{n + 1}")
    assert [a.name for a in registry.list()] == ["c", "b", "a"]  # newest first
    with pytest.raises(FinetuneError, match="nothing to roll back"):
        registry.rollback()

    registry.activate("a", "org/Model-1B")
    registry.activate("b", "org/Model-1B")
    registry.activate("c", "org/Model-1B")
    assert registry.active() == "c" and registry.resolve("active") == str(registry.root / "c")
    assert [a.name for a in registry.list() if a.active] == ["c"]
    with pytest.raises(FinetuneError, match="is active"):
        registry.remove("c")
    registry.remove("b")
    assert not (registry.root / "b").exists()
    assert registry.rollback() == "a"  # b was removed, so the one before it
    assert registry.active() == "a"
    assert registry.rollback() is None and registry.active() is None  # back to the base model
    registry.activate("c")
    registry.deactivate()
    assert registry.active() is None and registry.rollback() == "c"


def test_an_adapter_for_another_base_model_is_refused(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    register(registry, "llama", base="meta-llama/Llama-3.1-8B-Instruct")
    registry.activate("llama", "/models/meta-llama--Llama-3.1-8B-Instruct")  # the same model from a folder
    registry.deactivate()
    before = (registry.root / ACTIVE_FILE).read_text()
    with pytest.raises(FinetuneError, match=r"trained on 'meta-llama/Llama-3\.1-8B-Instruct'.*set model="):
        registry.activate("llama", "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert (registry.root / ACTIVE_FILE).read_text() == before and registry.active() is None
    assert same_model("HuggingFaceTB/SmolLM2-135M-Instruct", "/home/x/models/HuggingFaceTB--SmolLM2-135M-Instruct")
    assert not same_model("org/Model-1B", "org/Model-7B")


def test_names_folders_and_mistakes(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    register(registry, "mine")
    assert registry.resolve("mine") == str(registry.root / "mine")
    assert registry.resolve(str(tmp_path)) == str(tmp_path)  # a folder is used as given
    assert registry.resolve("none") == "" and registry.resolve("") == ""
    with pytest.raises(FinetuneError, match="neither a registered name"):
        registry.resolve("ghost")
    with pytest.raises(FinetuneError, match="no adapter named 'ghost'; registered: mine"):
        registry.activate("ghost")
    with pytest.raises(FinetuneError, match="not an adapter name"):
        registry.remove("../mine")
    with pytest.raises(FinetuneError, match="exists"):
        register(registry, "mine")
    # a half-written folder (a killed run) is invisible
    (registry.root / ".other.tmp123").mkdir()
    (registry.root / "partial").mkdir()
    assert [a.name for a in registry.list()] == ["mine"]
