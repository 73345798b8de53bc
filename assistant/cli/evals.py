"""``ragtune eval retrieval|answers|tools``: the evaluations, as tables or JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from assistant.cli.options import workspace
from assistant.errors import AssistantError
from assistant.evaluate import evaluate_answers, evaluate_retrieval, load_dataset, load_split
from assistant.tool_eval import SHIPPED, evaluate_tools


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``eval retrieval``, ``eval answers`` and ``eval tools`` to a ``ragtune`` parser."""
    p = sub.add_parser("eval", help="measure retrieval, answers and tool use on an eval set")
    kinds = p.add_subparsers(dest="eval_command", required=True, metavar="{retrieval,answers,tools}")
    r = kinds.add_parser("retrieval", parents=[parent], help="recall@k and MRR, ours and the LangChain baseline")
    a = kinds.add_parser("answers", parents=[parent], help="EM/F1 for closed-book, RAG and oracle-context arms")
    for q in (r, a):
        q.add_argument(
            "data", metavar="DATA", help="SQuAD v1.1 JSON, JSONL of question/answers/context, or a built dataset"
        )
        q.add_argument("--limit", type=int, help="evaluate only the first N questions")
        q.add_argument(
            "--out", help="also write the result to this file: JSON, or one row per question and arm for .jsonl"
        )
        q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a.add_argument("--arms", default="closed-book,rag,oracle", help="comma-separated arms")
    a.add_argument(
        "--adapter", dest="eval_adapter", help="also evaluate every arm with this adapter (name, folder or active)"
    )
    a.add_argument("--answer-tokens", type=int, help="tokens per answer (default: answer_tokens, what users get)")
    r.set_defaults(func=cmd_eval_retrieval)
    a.set_defaults(func=cmd_eval_answers)

    t = kinds.add_parser("tools", parents=[parent], help="valid-call, right-tool, argument and answer rates")
    t.add_argument("--data", default=str(SHIPPED), help="JSONL eval set (default: the shipped 63-prompt set)")
    t.add_argument(
        "--docs",
        help="documents the set asks about, ingested into their own collection "
        "(default: the sample corpus for the shipped set, else the configured collection)",
    )
    t.add_argument("--adapter", dest="eval_adapter", help="also evaluate with this adapter")
    t.add_argument("--model", help="Hugging Face id or folder of the chat model")
    t.add_argument("--limit", type=int, help="evaluate only the first N prompts")
    t.add_argument("--answer-tokens", type=int, default=128, help="tokens per reply")
    t.add_argument("--out", help="also write the JSON result (with every case) to this file")
    t.add_argument("--json", action="store_true", help="print JSON instead of a table")
    t.set_defaults(func=cmd_eval_tools)


def _emit(args: argparse.Namespace, result: dict[str, Any], table: list[str]) -> int:
    if args.out and args.out.endswith(".jsonl"):
        rows = [{"arm": arm, **row} for arm, arm_rows in result.get("rows", {}).items() for row in arm_rows]
        Path(args.out).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    elif args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2) if args.json else "\n".join(table))
    return 0


def cmd_eval_retrieval(args: argparse.Namespace) -> int:
    ws = workspace(args)
    result = evaluate_retrieval(load_dataset(args.data, args.limit), ws.ingest, ws.config.device, ws.embedder)
    table = [
        f"{result['dataset']}: {result['questions']} questions, {result['documents']} documents",
        f"{'pipeline':<10} {'chunks':>7} " + " ".join(f"{m:>9}" for m in ("recall@1", "recall@5", "recall@10", "mrr")),
    ]
    for name in ("ragtune", "baseline"):
        row = result[name]
        table.append(
            f"{name:<10} {row['chunks']:>7} "
            + " ".join(f"{row[m]:>9.3f}" for m in ("recall@1", "recall@5", "recall@10", "mrr"))
        )
    return _emit(args, result, table)


def cmd_eval_answers(args: argparse.Namespace) -> int:
    ws = workspace(args)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = set(arms) - {"closed-book", "rag", "oracle"}
    if unknown:
        raise AssistantError(f"unknown arms {sorted(unknown)}: choose from closed-book, rag, oracle")
    data = Path(args.data)
    split_file = data.is_dir() or (
        data.suffix == ".jsonl" and data.exists() and '"messages"' in data.read_text()[:5000]
    )
    dataset = load_split(data, args.limit) if split_file else load_dataset(data, args.limit)
    adapter = ws.registry().resolve(args.eval_adapter) if args.eval_adapter else ""
    result = evaluate_answers(
        dataset, ws.ingest, ws.config, ws.base_model(), arms, adapter, args.answer_tokens, ws.embedder
    )
    columns = ("em", "f1", "loop_rate", "cited_rate", "citation_precision", "unsupported_rate", "decision_accuracy")
    names = ("EM", "F1", "loop%", "cited%", "cite-prec", "unsupp%", "decision")
    table = [
        f"{result['dataset']}: {result['questions']} questions, answers of up to {result['answer_tokens']} tokens",
        f"{'arm':<22}" + "".join(f"{name:>10}" for name in names),
    ]
    for arm, row in result["arms"].items():
        cells = "".join(f"{row[c]:>10.1f}" if row.get(c) is not None else f"{'n/a':>10}" for c in columns)
        table.append(f"{arm:<22}{cells}")
    return _emit(args, {k: v for k, v in result.items() if k != "rows" or args.out}, table)


def cmd_eval_tools(args: argparse.Namespace) -> int:
    ws = workspace(args)
    adapter = ws.registry().resolve(args.eval_adapter) if args.eval_adapter else ""
    result = evaluate_tools(
        ws.ingest,
        ws.config,
        ws.base_model(),
        adapter,
        args.data,
        args.docs,
        args.limit,
        args.answer_tokens,
        ws.embedder,
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    def cell(value: float | None) -> str:
        return f"{value:>10.1f}" if value is not None else f"{'n/a':>10}"

    metrics = ("call_rate", "valid_call_rate", "right_tool_rate", "argument_accuracy", "answer_correct")
    counts = ", ".join(f"{k} {v}" for k, v in result["categories"].items())
    print(f"{Path(args.data).name}: {result['prompts']} prompts ({counts}), model {ws.config.model}")
    print(f"{'variant':<9}" + "".join(f"{m.replace('_rate', '').replace('_', '-')[:10]:>11}" for m in metrics))
    for label, row in result["variants"].items():
        print(f"{label:<9}" + "".join(" " + cell(row[m]) for m in metrics) + f"   ({row['seconds']} s)")
    print("right tool / answer correct, by category:")
    for label, row in result["variants"].items():
        parts = [
            f"{category} {_short(group['right_tool_rate'])}/{_short(group['answer_correct'])}"
            for category, group in row["by_category"].items()
        ]
        print(f"{label:<9} " + ", ".join(parts))
    return 0


def _short(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}%"
