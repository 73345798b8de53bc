"""Settings from the config file, --set and flags: qualified keys, bare keys of one section, flags win."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.cli import build_parser
from assistant.cli.options import settings
from assistant.errors import AssistantError
from assistant.settings import Settings, load_settings, qualify
from finetune.errors import FinetuneError
from ingest.errors import IngestError


@pytest.mark.parametrize("command", [["ask", "q"], ["eval", "tools"], ["search", "q"]])
def test_set_is_kept_when_the_flag_is_not_given(command: list[str]) -> None:
    args = build_parser().parse_args([*command, "--set", "model=/models/mine", "--set", "tools=a.py,pkg.mod:fn"])
    config = settings(args).assistant
    assert config.model == "/models/mine" and config.tools == ("a.py", "pkg.mod:fn")


@pytest.mark.parametrize("command", [["ask", "q"], ["dataset", "build"], ["finetune"], ["adapters", "list"]])
def test_ingest_keys_set_on_any_command_are_kept(command: list[str]) -> None:
    args = build_parser().parse_args(
        [*command, "--set", "embedding_model=/models/e", "--set", "ingest.chunk_tokens=100"]
    )
    ingest = settings(args).ingest
    assert (ingest.embedding_model, ingest.chunk_tokens) == ("/models/e", 100)


def test_finetune_keys_go_to_the_finetune_section() -> None:
    args = build_parser().parse_args(
        ["finetune", "--name", "v2", "--set", "lora_r=8", "--set", "finetune.target_modules=q_proj,v_proj"]
    )
    tune = settings(args).finetune
    assert (tune.name, tune.lora_r, tune.target_modules) == ("v2", 8, ("q_proj", "v_proj"))
    with pytest.raises(AssistantError, match="unknown config key 'lora_rank'"):
        settings(build_parser().parse_args(["finetune", "--set", "lora_rank=8"]))


def test_a_flag_wins_over_set() -> None:
    args = build_parser().parse_args(["ask", "q", "--set", "model=/a", "--model", "/b", "--set", "k=3", "--k", "4"])
    config = settings(args).assistant
    assert (config.model, config.k) == ("/b", 4)


def test_unknown_and_bad_keys_are_named_by_their_own_section() -> None:
    with pytest.raises(AssistantError, match="unknown config key 'max_step'"):
        settings(build_parser().parse_args(["ask", "q", "--set", "max_step=2"]))
    with pytest.raises(AssistantError, match="max_steps >= 1"):
        settings(build_parser().parse_args(["ask", "q", "--set", "max_steps=0"]))
    with pytest.raises(FinetuneError, match="expects int"):
        load_settings(overrides={"finetune.lora_r": "eight"})
    with pytest.raises(IngestError, match="expects int"):
        load_settings(overrides={"chunk_tokens": "many"})
    with pytest.raises(AssistantError, match="unknown config section 'assistent'"):
        qualify({"assistent.k": "3"})


def test_a_key_of_several_sections_must_be_qualified() -> None:
    with pytest.raises(AssistantError, match=r"several sections: write one of assistant\.api_key, serve\.api_key"):
        qualify({"api_key": "S"})
    with pytest.raises(AssistantError, match="several sections"):
        settings(build_parser().parse_args(["serve", "--set", "port=9000"]))
    s = settings(build_parser().parse_args(["serve", "--set", "serve.api_key=S", "--port", "9001"]))
    assert (s.serve.api_key, s.assistant.api_key, s.serve.port, s.app.port) == ("S", "", 9001, 7860)
    chat = settings(build_parser().parse_args(["chat", "--port", "9002"]))
    assert (chat.app.port, chat.serve.port) == (9002, 8000)


def test_resolved_settings_round_trip_through_one_file(tmp_path: Path) -> None:
    s = load_settings(
        overrides={"assistant.k": "3", "tools": "a.py,b.py", "serve.api_key": 'x"y\\z', "finetune.epochs": "1.5"},
        home=str(tmp_path / "home"),
    )
    path = s.write(tmp_path / "resolved.toml")
    again = load_settings(path)
    assert again == Settings(**{**s.__dict__, "ingest": again.ingest}) and again.home == (tmp_path / "home").resolve()
    assert (again.assistant.k, again.assistant.tools, again.serve.api_key) == (3, ("a.py", "b.py"), 'x"y\\z')
