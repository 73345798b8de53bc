"""The local transformers backend on a tiny model; adapters and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.errors import AssistantError
from assistant.model import LocalModel, complete
from tests.conftest import make_adapter


def test_tiny_model_counts_and_streams(tiny_lm: str, tmp_path: Path) -> None:
    model = LocalModel(tiny_lm, tmp_path, context_window=4096)
    assert model.context_window == 1024, "capped by the model's own limit"
    messages = [{"role": "user", "content": "battery warranty"}]
    assert model.count_tokens(messages) > model.count_text("battery warranty") == 2
    pieces = list(model.stream(messages, max_new_tokens=5))
    assert pieces and all(isinstance(p, str) for p in pieces)
    assert complete(model, messages, max_new_tokens=5) == "".join(pieces), "greedy decoding is deterministic"


def test_adapter_loads_and_a_foreign_one_is_refused(tiny_lm: str, tmp_path: Path) -> None:
    model = LocalModel(tiny_lm, tmp_path, adapter=str(make_adapter(tiny_lm, tmp_path / "ours")))
    assert type(model.model).__name__.startswith("Peft")
    foreign = make_adapter(tiny_lm, tmp_path / "foreign", recorded_base="meta-llama/Llama-3.1-8B-Instruct")
    with pytest.raises(AssistantError, match=r"was trained for base model 'meta-llama/Llama-3.1-8B-Instruct'"):
        LocalModel(tiny_lm, tmp_path, adapter=str(foreign))
    with pytest.raises(AssistantError, match=r"adapter .* not found"):
        LocalModel(tiny_lm, tmp_path, adapter=str(tmp_path / "nope"))


def test_missing_model_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(AssistantError, match="could not be loaded"):
        LocalModel(str(tmp_path / "no-such-model"), tmp_path)
