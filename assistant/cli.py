"""The ``ragtune`` command: one console script, a subcommand per job."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from assistant.config import AssistantConfig
from ingest import cli as ingest_cli
from ingest.config import IngestConfig, load_config, parse_assignments


def configs(args: argparse.Namespace) -> tuple[IngestConfig, AssistantConfig]:
    """The ingest config (where the documents are) and the assistant config, from one file and flags.

    ``--set`` keys go to whichever config has them (the finetune config's keys are read by
    ``assistant.tuning``, the app's by ``ragtune chat``, the API's by ``ragtune serve``); a key none
    has is an error naming it.
    """
    assignments = parse_assignments(args.overrides)
    from assistant.config import AppConfig, ServeConfig
    from finetune.config import FinetuneConfig

    assistant_keys = {f.name for f in dataclasses.fields(AssistantConfig)}
    ingest_keys = {f.name for f in dataclasses.fields(IngestConfig)}
    other_keys = {f.name for cls in (FinetuneConfig, AppConfig, ServeConfig) for f in dataclasses.fields(cls)}
    for key in assignments:
        if key not in assistant_keys | ingest_keys | other_keys:
            known = ", ".join(sorted(assistant_keys | ingest_keys | other_keys))
            from ingest.errors import IngestError

            raise IngestError(f"unknown config key {key!r} in the command line; known keys: {known}")
    ingest = ingest_cli.ingest_config(args, {k: v for k, v in assignments.items() if k in ingest_keys})
    flags = {key: getattr(args, key, None) for key in ("k", "adapter", "model", "device")}
    flags = {key: value for key, value in flags.items() if value is not None}  # an unset flag keeps --set
    overrides: dict[str, Any] = {**{k: v for k, v in assignments.items() if k in assistant_keys}, **flags}
    assistant = load_config(AssistantConfig, "assistant", ingest_cli.config_path(args), overrides)
    return ingest, assistant


def _retrieval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", help="collection name (default: documents)")
    p.add_argument("--k", type=int, help="how many chunks (default 5)")
    p.add_argument("--source", help="only chunks of this file (path or file name)")
    p.add_argument("--mmr", action="store_true", help="diversify results with maximal marginal relevance")
    p.add_argument("--json", action="store_true", help="print JSON")


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add search, ask and eval to a ``ragtune`` parser."""
    s = sub.add_parser(
        "search",
        parents=[parent],
        help="show the chunks retrieved for a query",
        description="Hybrid search (dense + BM25, reciprocal-rank fusion) over the ingested documents.",
    )
    s.add_argument("query", nargs="?", help="the search text")
    s.add_argument(
        "--batch", metavar="FILE", help='JSONL of {"id", "query"}: one JSON result per line, models loaded once'
    )
    _retrieval_options(s)
    s.set_defaults(func=cmd_search)

    a = sub.add_parser(
        "ask",
        parents=[parent],
        help="answer a question from the documents, with citations",
        description="Retrieve, answer with the local model, and list the cited sources.",
    )
    a.add_argument("question", help="the question")
    a.add_argument("--no-rag", action="store_true", help="answer closed-book, without retrieval")
    a.add_argument(
        "--agent", action="store_true", help="let the model call tools (documents, calculator, date); show the trace"
    )
    a.add_argument("--model", help="Hugging Face id or folder of the chat model")
    a.add_argument("--adapter", help="PEFT adapter folder to apply")
    a.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    _retrieval_options(a)
    a.set_defaults(func=cmd_ask)

    t = sub.add_parser("tools", help="the agent's tools", description="The tools the agent may call.")
    tsub = t.add_subparsers(dest="tools_command", required=True, metavar="{list}")
    tl = tsub.add_parser("list", parents=[parent], help="show every tool with its JSON schema")
    tl.add_argument("--json", action="store_true", help="print the schemas as JSON")
    tl.set_defaults(func=cmd_tools_list)

    c = sub.add_parser(
        "chat",
        parents=[parent],
        help="open the browser app: chat, documents, fine-tuning, compare, adapters",
        description="Serve the browser app on 127.0.0.1 (the [app] table sets host, port, login and upload limit). "
        "With no documents yet, the sample corpus is ingested first.",
    )
    c.add_argument("--host", help="address to bind (default 127.0.0.1; 0.0.0.0 serves the network)")
    c.add_argument("--port", type=int, help="port (default 7860)")
    c.add_argument("--model", help="Hugging Face id or folder of the chat model")
    c.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    c.add_argument("--collection", help="collection name (default: documents)")
    c.add_argument("--no-sample", action="store_true", help="start empty instead of ingesting the sample corpus")
    c.set_defaults(func=cmd_chat)

    v = sub.add_parser(
        "serve",
        parents=[parent],
        help="serve an OpenAI-compatible API: /v1/models and /v1/chat/completions",
        description="Serve the assistant as an OpenAI-compatible API on 127.0.0.1:8000 (the [serve] table sets host, "
        "port, api_key and runtime_lora). Model names: ADAPTER (the model itself), ADAPTER:rag (grounded answers "
        "with sources), ADAPTER:agent (tools); ADAPTER is base, active or a registered adapter.",
    )
    v.add_argument("--host", help="address to bind (default 127.0.0.1; 0.0.0.0 serves the network: set an API key)")
    v.add_argument("--port", type=int, help="port (default 8000)")
    v.add_argument("--model", help="Hugging Face id or folder of the chat model")
    v.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    v.add_argument("--collection", help="collection name (default: documents)")
    v.set_defaults(func=cmd_serve)

    from assistant.evaluate import register as register_eval
    from assistant.tuning import register as register_tuning

    register_eval(sub, parent)
    register_tuning(sub, parent)


def _retriever(ingest: IngestConfig, config: AssistantConfig) -> Any:
    from assistant.retrieval import Retriever

    return Retriever(
        ingest, candidates=config.candidates, rrf_k=config.rrf_k, min_score=config.min_score, device=config.device
    )


def make_registry(ingest: IngestConfig, config: AssistantConfig) -> Any:
    """The built-in tools (document tools over the configured collection) plus the user's.

    The retriever is opened on the first document search, so listing tools loads no model.
    """
    import functools

    from assistant.tools import build_registry

    return build_registry(ingest, functools.cache(lambda: _retriever(ingest, config)), config.tools)


def cmd_tools_list(args: argparse.Namespace) -> int:
    ingest, config = configs(args)
    registry = make_registry(ingest, config)
    if args.json:
        print(json.dumps([{**t.schema(), "origin": t.origin} for t in registry], indent=2))
        return 0
    for t in registry:
        properties = t.parameters.get("properties", {})
        required = set(t.parameters.get("required", []))
        params = ", ".join(
            f"{name}{'' if name in required else '?'}: {spec.get('type', 'any')}"
            + (f" = {json.dumps(spec['default'])}" if "default" in spec else "")
            for name, spec in properties.items()
        )
        print(f"{t.name}({params})  [{t.origin}]")
        print(f"    {t.description}")
        for name, spec in properties.items():
            enum = f" one of {spec['enum']}" if "enum" in spec else ""
            print(f"      {name}: {spec.get('description', '')}{enum}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from assistant.errors import AssistantError

    ingest, config = configs(args)
    if not args.query and not args.batch:
        raise AssistantError("give a query, or --batch FILE with one JSON object per line")
    retriever = _retriever(ingest, config)
    mmr = args.mmr or config.mmr
    if args.batch:
        for number, line in enumerate(_read_lines(args.batch), start=1):
            try:
                item = json.loads(line)
                query_id, query = item["id"], item["query"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise AssistantError(f'{args.batch} line {number}: expected {{"id": ..., "query": ...}}') from None
            result = retriever.search(query, config.k, source=args.source, mmr=mmr, mmr_lambda=config.mmr_lambda)
            print(
                json.dumps(
                    {
                        "id": query_id,
                        "query": query,
                        "relevant": result.relevant,
                        "hits": [h.to_dict() for h in result.hits],
                    }
                )
            )
        return 0
    result = retriever.search(args.query, config.k, source=args.source, mmr=mmr, mmr_lambda=config.mmr_lambda)
    if args.json:
        print(
            json.dumps(
                {
                    "query": args.query,
                    "relevant": result.relevant,
                    "seconds": round(result.seconds, 4),
                    "hits": [h.to_dict() for h in result.hits],
                },
                indent=2,
            )
        )
        return 0
    if not result.relevant:
        print("nothing relevant found (no chunk reaches min_score); closest below the threshold:")
    from assistant.prompt import source_label

    for rank, hit in enumerate(result.hits or result.below_threshold, start=1):
        print(
            f"{rank}. {source_label(hit)}  chars {hit.metadata.get('start_char')}-{hit.metadata.get('end_char')}  "
            f"score {hit.score:.4f}  similarity {hit.similarity:.3f}  dense #{hit.dense_rank}  bm25 #{hit.lexical_rank}"
        )
        print("   " + " ".join(hit.text.split())[:300])
    return 0


def _read_lines(path: str) -> list[str]:
    from assistant.errors import AssistantError

    try:
        with open(path, encoding="utf-8") as f:
            return [line for line in f if line.strip()]
    except OSError as e:
        raise AssistantError(f"cannot read {path} ({e.strerror}): check the path") from None


def cmd_ask(args: argparse.Namespace) -> int:
    from assistant.agent import respond
    from assistant.events import Answer, Token, ToolCall, ToolResult
    from assistant.model import load_model
    from assistant.prompt import check_question, source_label

    check_question(args.question)
    ingest, config = configs(args)
    config = dataclasses.replace(config, mmr=args.mmr or config.mmr)
    if args.agent:
        registry = make_registry(ingest, config)
        model = load_model(config, ingest.home_path)
        events: Any = respond(args.question, model, config, registry=registry)
    else:
        retriever = None if args.no_rag else _retriever(ingest, config)
        model = load_model(config, ingest.home_path)
        events = respond(args.question, model, config, retriever=retriever, source=args.source)
    answer: Answer | None = None
    for event in events:
        if isinstance(event, Answer):
            answer = event
        elif args.json:
            continue
        elif isinstance(event, Token):
            print(event.text, end="", flush=True)
        elif isinstance(event, ToolCall):
            print(f"\n→ {event}", flush=True)
        elif isinstance(event, ToolResult):
            shown = " ".join((event.content if event.ok else f"error: {event.error}").split())
            print(f"← {shown[:200]}{'…' if len(shown) > 200 else ''}  ({event.seconds:.2f} s)", flush=True)
    assert answer is not None
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2))
        return 0
    print()
    if answer.stopped and answer.stopped != "answer":
        print(f"(the agent stopped calling tools: {answer.stopped.replace('_', ' ')})")
    if answer.sources:
        print("\nSources:")
        for n, hit in enumerate(answer.sources, start=1):
            mark = "*" if n in answer.cited else " "
            print(f"{mark}[{n}] {source_label(hit)}  (similarity {hit.similarity:.2f})  {hit.source}")
    if answer.dropped:
        print(f"({len(answer.dropped)} retrieved chunks did not fit the context and were left out)")
    return 0


def workspace(args: argparse.Namespace) -> Any:
    """The browser app's workspace from the command line (config file, ``--set``, flags)."""
    from assistant.config import AppConfig
    from assistant.tuning import finetune_config
    from assistant.workspace import Workspace

    ingest, config = configs(args)
    keys = {f.name for f in dataclasses.fields(AppConfig)}
    overrides: dict[str, Any] = {k: v for k, v in parse_assignments(args.overrides).items() if k in keys}
    overrides.update({k: getattr(args, k) for k in ("host", "port") if getattr(args, k, None) is not None})
    app = load_config(AppConfig, "app", ingest_cli.config_path(args), overrides)
    options = [*(["--home", args.home] if args.home else []), *(["--config", args.config] if args.config else [])]
    if args.collection:
        options += ["--collection", args.collection]
    options += [f"--set={flag}={getattr(args, flag)}" for flag in ("model", "device") if getattr(args, flag, None)]
    options += [item for pair in args.overrides for item in ("--set", pair)]
    return Workspace(ingest, config, finetune_config(args), app, options)


def cmd_chat(args: argparse.Namespace) -> int:
    from assistant.app import launch
    from ingest.pipeline import SAMPLE_CORPUS, ingest, list_documents

    ws = workspace(args)
    if not list_documents(ws.ingest) and not args.no_sample:
        print(f"no documents yet: ingesting the sample corpus ({SAMPLE_CORPUS})", flush=True)
        print(ingest([SAMPLE_CORPUS], ws.ingest).summary(), flush=True)
    print(f"loading {ws.config.model}…", flush=True)
    ws.base_model()
    if list_documents(ws.ingest):
        ws.retriever()
    app = launch(ws, block=False, quiet=True)
    login = " (login required)" if ws.app.login() else ""
    print(f"ragtune is serving on http://{ws.app.host}:{ws.app.port}{login}; Ctrl-C stops it", flush=True)
    try:
        app.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        ws.job.cancel()
    return 0


def _check_free(host: str, port: int) -> None:
    """Raise a one-line error when ``host:port`` cannot be bound."""
    import socket

    from assistant.errors import AssistantError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            s.bind(infos[0][4])
    except OSError as e:
        raise AssistantError(
            f"cannot serve on {host}:{port} ({e.strerror or e}): pick another --port, or stop what uses it"
        ) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from assistant.config import ServeConfig
    from assistant.server import serve
    from ingest.pipeline import list_documents

    ws = workspace(args)
    keys = {f.name for f in dataclasses.fields(ServeConfig)}
    overrides: dict[str, Any] = {k: v for k, v in parse_assignments(args.overrides).items() if k in keys}
    overrides.update({k: getattr(args, k) for k in ("host", "port") if getattr(args, k, None) is not None})
    options = load_config(ServeConfig, "serve", ingest_cli.config_path(args), overrides)
    _check_free(options.host, options.port)  # before the model loads
    if not list_documents(ws.ingest):
        print("no documents yet: the :rag models will refuse until `ragtune ingest PATH`", flush=True)
    print(f"loading {ws.config.model} ({ws.config.backend} backend)…", flush=True)
    ws.base_model()
    key = options.key()
    if not key and options.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving {options.host} without an API key: anyone who reaches it can use it", flush=True)
    print(
        f"ragtune serves an OpenAI-compatible API on http://{options.host}:{options.port}/v1"
        f"{' (API key required)' if key else ''}; GET /v1/models lists the models; Ctrl-C stops it",
        flush=True,
    )
    serve(ws, options.host, options.port, key, options.runtime_lora)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ragtune",
        description="Turn a folder of documents into a domain chat assistant.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parent = ingest_cli.common_options()
    ingest_cli.register(sub, parent)
    register(sub, parent)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ragtune`` console script."""
    from assistant.errors import AssistantError
    from finetune.errors import FinetuneError
    from ingest.errors import IngestError

    return ingest_cli.run(build_parser().parse_args(argv), (IngestError, AssistantError, FinetuneError))


if __name__ == "__main__":
    sys.exit(main())
