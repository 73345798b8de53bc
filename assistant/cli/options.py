"""What every ``ragtune`` command shares: the common options, and settings and workspace from parsed arguments."""

from __future__ import annotations

import argparse
from typing import Any

from assistant.settings import Settings, load_settings
from assistant.workspace import Workspace
from ingest import cli as ingest_cli
from ingest.config import IngestConfig

# Flags that set a config key, by argparse destination; host and port belong to the command's own section.
FLAGS: dict[str, tuple[str, ...]] = {
    "collection": ("ingest.collection",),
    "embedding_model": ("ingest.embedding_model",),
    "chunk_tokens": ("ingest.chunk_tokens",),
    "chunk_overlap": ("ingest.chunk_overlap",),
    "max_file_mb": ("ingest.max_file_mb",),
    "chroma_url": ("ingest.chroma_url",),
    "device": ("ingest.device", "assistant.device"),
    "k": ("assistant.k",),
    "model": ("assistant.model",),
    "adapter": ("assistant.adapter",),
    "name": ("finetune.name",),
    "dataset": ("finetune.dataset",),
    "examples": ("finetune.examples",),
}


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand takes: data home, config file, overrides, verbosity."""
    example = "override a config key, e.g. --set assistant.k=3 (a bare key works when one section has it)"
    return ingest_cli.common_options("SECTION.KEY=VALUE", example)


def settings(args: argparse.Namespace) -> Settings:
    """The settings from the config file, ``--set`` and the command's flags (an unset flag keeps ``--set``)."""
    flags: dict[str, Any] = {}
    for dest, keys in FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            value = tuple(value) if isinstance(value, list) else value
            flags.update(dict.fromkeys(keys, value))
    section = getattr(args, "listen_section", None)
    if section:
        flags.update({f"{section}.{key}": getattr(args, key, None) for key in ("host", "port")})
    return load_settings(args.config, args.overrides, flags, home=args.home)


def ingest_settings(args: argparse.Namespace) -> IngestConfig:
    """The ``[ingest]`` section, for the document commands."""
    return settings(args).ingest


def workspace(args: argparse.Namespace) -> Workspace:
    """The workspace every command works through."""
    return Workspace(settings(args))
