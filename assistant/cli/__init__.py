"""The ``ragtune`` command: one console script, a module per command group; each parses, calls the workspace, prints."""

from __future__ import annotations

import argparse
import sys

from assistant.cli import ask, evals, serving, tuning
from assistant.cli.options import common_options, ingest_settings
from assistant.errors import AssistantError
from finetune.errors import FinetuneError
from ingest import cli as ingest_cli
from ingest.errors import IngestError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ragtune",
        description="Turn a folder of documents into a domain chat assistant.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parent = common_options()
    ingest_cli.register(sub, parent, config_of=ingest_settings)
    ask.register(sub, parent)
    serving.register(sub, parent)
    evals.register(sub, parent)
    tuning.register(sub, parent)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ragtune`` console script."""
    return ingest_cli.run(build_parser().parse_args(argv), (IngestError, AssistantError, FinetuneError))


if __name__ == "__main__":
    sys.exit(main())
