"""The ``ragtune`` command: one console script, a subcommand per job."""

from __future__ import annotations

import argparse
import sys

from ingest import cli as ingest_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ragtune",
        description="Turn a folder of documents into a domain chat assistant.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ingest_cli.register(sub, ingest_cli.common_options())
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ragtune`` console script."""
    return ingest_cli.run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
