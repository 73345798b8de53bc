"""``ragtune search``, ``ragtune ask`` and ``ragtune tools list``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from assistant.cli.options import settings, workspace
from assistant.errors import AssistantError
from assistant.events import Answer, Token, ToolCall, ToolResult
from assistant.prompt import check_question, source_label
from assistant.tools import build_registry


def _retrieval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", help="collection name (default: documents)")
    p.add_argument("--k", type=int, help="how many chunks (default 5)")
    p.add_argument("--source", help="only chunks of this file (path or file name)")
    p.add_argument("--mmr", action="store_true", help="diversify results with maximal marginal relevance")
    p.add_argument("--json", action="store_true", help="print JSON")


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add search, ask and tools to a ``ragtune`` parser."""
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
    a.add_argument("--adapter", help="adapter: active, none, a registered name or a folder")
    a.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    _retrieval_options(a)
    a.set_defaults(func=cmd_ask)

    t = sub.add_parser("tools", help="the agent's tools", description="The tools the agent may call.")
    tsub = t.add_subparsers(dest="tools_command", required=True, metavar="{list}")
    tl = tsub.add_parser("list", parents=[parent], help="show every tool with its JSON schema")
    tl.add_argument("--json", action="store_true", help="print the schemas as JSON")
    tl.set_defaults(func=cmd_tools_list)


def cmd_tools_list(args: argparse.Namespace) -> int:
    s = settings(args)

    def no_search() -> Any:  # listing tools loads no model
        raise AssistantError("the tools are only listed here")

    registry = build_registry(s.ingest, no_search, s.assistant.tools)
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
    ws = workspace(args)
    if not args.query and not args.batch:
        raise AssistantError("give a query, or --batch FILE with one JSON object per line")
    mmr = args.mmr or None
    if args.batch:
        for number, line in enumerate(_read_lines(args.batch), start=1):
            try:
                item = json.loads(line)
                query_id, query = item["id"], item["query"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise AssistantError(f'{args.batch} line {number}: expected {{"id": ..., "query": ...}}') from None
            result = ws.search(query, source=args.source, mmr=mmr)
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
    result = ws.search(args.query, source=args.source, mmr=mmr)
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
    for rank, hit in enumerate(result.hits or result.below_threshold, start=1):
        print(
            f"{rank}. {source_label(hit)}  chars {hit.metadata.get('start_char')}-{hit.metadata.get('end_char')}  "
            f"score {hit.score:.4f}  similarity {hit.similarity:.3f}  dense #{hit.dense_rank}  bm25 #{hit.lexical_rank}"
        )
        print("   " + " ".join(hit.text.split())[:300])
    return 0


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [line for line in f if line.strip()]
    except OSError as e:
        raise AssistantError(f"cannot read {path} ({e.strerror}): check the path") from None


def cmd_ask(args: argparse.Namespace) -> int:
    ws = workspace(args)
    check_question(args.question, ws.config.max_question_chars)
    mode = "agent" if args.agent else "plain" if args.no_rag else "rag"
    extra: dict[str, Any] = {"mmr": True} if args.mmr else {}
    answer: Answer | None = None
    for event in ws.respond(args.question, mode=mode, source=args.source, **extra):
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
    if answer.checked is not None and answer.cited_text("⚠") != answer.text:
        print(f"\nChecked against the sources:\n{answer.cited_text(' ⚠')}")
    for warning in answer.warnings():
        print(f"({warning})")
    if answer.stopped_note():
        print(f"({answer.stopped_note()})")
    if answer.sources:
        print("\nSources:")
        for n, hit in enumerate(answer.sources, start=1):
            mark = "*" if n in answer.cited else " "
            print(f"{mark}[{n}] {source_label(hit)}  (similarity {hit.similarity:.2f})  {hit.source}")
    if answer.dropped:
        print(f"({len(answer.dropped)} retrieved chunks did not fit the context and were left out)")
    return 0
