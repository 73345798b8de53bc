"""The assistant's settings from --set and flags: a flag wins, an unset flag leaves --set alone."""

from __future__ import annotations

import pytest

from assistant.cli import build_parser, configs
from ingest.errors import IngestError


@pytest.mark.parametrize("command", [["ask", "q"], ["eval", "tools"], ["search", "q"]])
def test_set_is_kept_when_the_flag_is_not_given(command: list[str]) -> None:
    args = build_parser().parse_args([*command, "--set", "model=/models/mine", "--set", "tools=a.py,pkg.mod:fn"])
    _, config = configs(args)
    assert config.model == "/models/mine" and config.tools == ("a.py", "pkg.mod:fn")


@pytest.mark.parametrize("command", [["ask", "q"], ["dataset", "build"], ["finetune"], ["adapters", "list"]])
def test_ingest_keys_set_on_any_command_are_kept(command: list[str]) -> None:
    args = build_parser().parse_args([*command, "--set", "embedding_model=/models/e", "--set", "chunk_tokens=100"])
    ingest, _ = configs(args)
    assert (ingest.embedding_model, ingest.chunk_tokens) == ("/models/e", 100)


def test_finetune_keys_go_to_the_finetune_config() -> None:
    from assistant.tuning import finetune_config

    args = build_parser().parse_args(
        ["finetune", "--name", "v2", "--set", "lora_r=8", "--set", "target_modules=q_proj,v_proj"]
    )
    tune = finetune_config(args)
    assert (tune.name, tune.lora_r, tune.target_modules) == ("v2", 8, ("q_proj", "v_proj"))
    with pytest.raises(IngestError, match="unknown config key 'lora_rank'"):
        configs(build_parser().parse_args(["finetune", "--set", "lora_rank=8"]))


def test_a_flag_wins_over_set() -> None:
    args = build_parser().parse_args(["ask", "q", "--set", "model=/a", "--model", "/b", "--set", "k=3", "--k", "4"])
    _, config = configs(args)
    assert (config.model, config.k) == ("/b", 4)


def test_unknown_and_bad_keys_are_named() -> None:
    with pytest.raises(IngestError, match="unknown config key 'max_step'"):
        configs(build_parser().parse_args(["ask", "q", "--set", "max_step=2"]))
    with pytest.raises(Exception, match="max_steps >= 1"):
        configs(build_parser().parse_args(["ask", "q", "--set", "max_steps=0"]))
