"""The local transformers backend on a tiny model; adapters and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.errors import AssistantError
from assistant.model import LocalModel, complete


def test_tiny_model_counts_and_streams(tiny_lm: str, tmp_path: Path) -> None:
    model = LocalModel(tiny_lm, tmp_path, context_window=4096)
    assert model.context_window == 512, "capped by the model's own limit"
    messages = [{"role": "user", "content": "battery warranty"}]
    assert model.count_tokens(messages) > model.count_text("battery warranty") == 2
    pieces = list(model.stream(messages, max_new_tokens=5))
    assert pieces and all(isinstance(p, str) for p in pieces)
    assert complete(model, messages, max_new_tokens=5) == "".join(pieces), "greedy decoding is deterministic"


def _adapter(tiny_lm: str, folder: Path, base: str | None = None) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_lm), LoraConfig(r=2, target_modules="all-linear")
    )
    peft_model.save_pretrained(folder)
    if base is not None:
        config = json.loads((folder / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = base
        (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


def test_adapter_loads_and_a_foreign_one_is_refused(tiny_lm: str, tmp_path: Path) -> None:
    model = LocalModel(tiny_lm, tmp_path, adapter=str(_adapter(tiny_lm, tmp_path / "ours")))
    assert type(model.model).__name__.startswith("Peft")
    foreign = _adapter(tiny_lm, tmp_path / "foreign", base="meta-llama/Llama-3.1-8B-Instruct")
    with pytest.raises(AssistantError, match=r"was trained for base model 'meta-llama/Llama-3.1-8B-Instruct'"):
        LocalModel(tiny_lm, tmp_path, adapter=str(foreign))
    with pytest.raises(AssistantError, match=r"adapter .* not found"):
        LocalModel(tiny_lm, tmp_path, adapter=str(tmp_path / "nope"))


def test_missing_model_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(AssistantError, match="could not be loaded"):
        LocalModel(str(tmp_path / "no-such-model"), tmp_path)
