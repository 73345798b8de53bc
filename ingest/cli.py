"""``ragtune ingest`` and ``ragtune docs``: argument parsing and printing only."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingest.config import IngestConfig, load_config, parse_assignments, resolve_home
from ingest.errors import IngestError
from ingest.sources import printable

CONFIG_NAME = "config.toml"  # read from the data home when --config is not given


def common_options(
    metavar: str = "KEY=VALUE", example: str = "override any config key, e.g. --set chunk_tokens=128"
) -> argparse.ArgumentParser:
    """Options every subcommand takes: data home, config file, overrides, verbosity.

    Args:
        metavar: How ``--set`` shows its value in the help.
        example: The help of ``--set``, before "(repeatable)".
    """
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--home", help="data home (default: $RAGTUNE_HOME or ./.ragtune)")
    parent.add_argument("--config", help=f"TOML config file (default: HOME/{CONFIG_NAME} when it exists)")
    parent.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar=metavar, help=f"{example} (repeatable)"
    )
    parent.add_argument("-v", "--verbose", action="count", default=0, help="-v: each file; -vv: each step")
    return parent


def register(
    subparsers: Any,
    parent: argparse.ArgumentParser,
    config_of: Callable[[argparse.Namespace], IngestConfig] | None = None,
) -> None:
    """Add the ingest subcommands to a ``ragtune`` parser.

    Args:
        subparsers: Where the subcommands go.
        parent: The common options (data home, config file, overrides, verbosity).
        config_of: Reads the ingest settings from parsed arguments; default :func:`ingest_config`.
    """
    p = subparsers.add_parser(
        "ingest",
        parents=[parent],
        help="ingest files and folders into the document store",
        description="Parse, chunk, embed and store documents. Unchanged files are skipped; "
        "changed files replace their old chunks. Without PATH, ingests the bundled sample corpus.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or folders (default: the sample corpus)")
    _collection_option(p)
    p.add_argument("--embedding-model", help="sentence-transformers model name or path")
    p.add_argument("--chunk-tokens", type=int, help="chunk size in embedder tokens")
    p.add_argument("--chunk-overlap", type=int, help="tokens shared by consecutive chunks")
    p.add_argument("--max-file-mb", type=float, help="skip files larger than this")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--chroma-url", help="use a Chroma server instead of the embedded store")
    p.add_argument("--prune", action="store_true", help="also drop chunks of files that no longer exist")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_ingest, config_of=config_of or ingest_config)

    docs = subparsers.add_parser("docs", help="list or remove ingested documents")
    docs_sub = docs.add_subparsers(dest="docs_command", required=True, metavar="{list,remove}")
    ls = docs_sub.add_parser("list", parents=[parent], help="list ingested files with chunk counts")
    _collection_option(ls)
    ls.add_argument("--json", action="store_true", help="print JSON lines")
    ls.set_defaults(func=cmd_docs_list, config_of=config_of or ingest_config)
    rm = docs_sub.add_parser("remove", parents=[parent], help="remove files (or folders) and their chunks")
    rm.add_argument("paths", nargs="+", metavar="PATH", help="ingested files, or folders holding them")
    _collection_option(rm)
    rm.set_defaults(func=cmd_docs_remove, config_of=config_of or ingest_config)


def _collection_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", help="collection name (default: documents)")


def config_path(args: argparse.Namespace) -> str | Path | None:
    """``--config``, else ``HOME/config.toml`` when it exists."""
    if args.config is not None:
        return str(args.config)
    default = resolve_home(args.home) / CONFIG_NAME
    return default if default.exists() else None


def ingest_config(args: argparse.Namespace, assignments: dict[str, str] | None = None) -> IngestConfig:
    """Config from the file, then ``--set`` overrides (or ``assignments``), then explicit flags."""
    path = config_path(args)
    flags = {
        key: getattr(args, key, None)
        for key in (
            "collection",
            "embedding_model",
            "chunk_tokens",
            "chunk_overlap",
            "max_file_mb",
            "device",
            "chroma_url",
        )
    }
    flags = {key: value for key, value in flags.items() if value is not None}  # an unset flag keeps --set
    given = parse_assignments(args.overrides) if assignments is None else assignments
    overrides: dict[str, Any] = {**given, **flags, "home": args.home}
    return load_config(IngestConfig, "ingest", path, overrides)


def cmd_ingest(args: argparse.Namespace) -> int:
    from ingest.pipeline import SAMPLE_CORPUS, ingest

    config = args.config_of(args)
    paths = args.paths or [SAMPLE_CORPUS]
    report = ingest(paths, config, prune=args.prune, progress=not args.json)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for f in report.files:
            if f.status in ("skipped", "failed"):
                print(f"{f.status:<9} {printable(f.path)}: {printable(f.reason)}")
            elif args.verbose:
                print(f"{f.status:<9} {printable(f.path)} ({f.chunks} chunks)")
        for note in report.notes:
            print(note)
        print(report.summary())
    if report.ok == 0 and not report.count("removed"):
        print("error: nothing could be ingested; see the reasons above", file=sys.stderr)
        return 1
    return 0


def cmd_docs_list(args: argparse.Namespace) -> int:
    from ingest.pipeline import list_documents

    config = args.config_of(args)
    records = list_documents(config)
    if args.json:
        for r in records:
            print(
                json.dumps(
                    {
                        "path": r.path,
                        "chunks": len(r.chunk_ids),
                        "sha256": r.sha256,
                        "bytes": r.size,
                        "ingested_at": r.ingested_at,
                    }
                )
            )
        return 0
    if not records:
        print(f"collection {config.collection!r} is empty: add documents with `ragtune ingest PATH`")
        return 0
    width = max(len(printable(r.path)) for r in records)
    print(f"{'path':<{width}}  chunks  {'bytes':>9}  ingested (UTC)")
    for r in records:
        print(f"{printable(r.path):<{width}}  {len(r.chunk_ids):>6}  {r.size:>9}  {r.ingested_at}")
    total = sum(len(r.chunk_ids) for r in records)
    print(f"{len(records)} files, {total} chunks in collection {config.collection!r}")
    return 0


def cmd_docs_remove(args: argparse.Namespace) -> int:
    from ingest.pipeline import remove_documents

    report = remove_documents(args.paths, args.config_of(args))
    for f in report.files:
        print(f"removed   {printable(f.path)} ({f.chunks} chunks)")
    print(report.summary())
    return 0


def run(args: argparse.Namespace, user_errors: tuple[type[Exception], ...] = (IngestError,)) -> int:
    """Run a parsed subcommand; user errors become one line on stderr and exit code 2."""
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.verbose < 2:  # libraries speak only when asked for every step
        for name in ("sentence_transformers", "transformers", "chromadb", "httpx"):
            logging.getLogger(name).setLevel(logging.WARNING)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except user_errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to finish; nothing is lost", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    """``python -m ingest``: the ingest subcommands on their own."""
    parser = argparse.ArgumentParser(prog="python -m ingest", description="ragtune document ingestion")
    register(parser.add_subparsers(dest="command", required=True), common_options())
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
