"""``ragtune eval tools``: how well a model uses the agent's tools, base and with an adapter.

Each line of the eval set is one prompt with the tool it needs (or ``null`` for
none), argument matchers and acceptable answers::

    {"id": "arith-01", "category": "arithmetic", "prompt": "What is 17 times 23?",
     "tool": "calculator", "arguments": {"expression": {"value": 391}}, "answer": ["391"]}

Argument matchers: a literal (strings compare case-insensitively),
``{"contains": [...]}`` (every word in the string), ``{"value": x, "tolerance": t}``
(the calculator's value of the expression), ``{"any": [...]}`` (one of these).
Answers: the final answer must contain one of the strings; ``{date}``,
``{weekday}`` and ``{year}`` are filled in with the current date in the expected
timezone. The shipped set (``assistant/evals/tools.jsonl``) asks about the
sample corpus, which is ingested into its own collection first.

Metrics: valid-call rate (calls that name a registered tool with arguments its
schema accepts, over all calls and unreadable attempts), right-tool rate (the
first tool called, or none, is the expected one), argument accuracy (of prompts
where the right tool was called) and answer correctness.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from assistant.agent import run_agent
from assistant.calculator import evaluate
from assistant.config import AssistantConfig
from assistant.errors import AssistantError, ToolError
from assistant.events import Answer
from assistant.retrieval import Retriever
from assistant.tools import build_registry, check_arguments
from ingest.config import IngestConfig
from ingest.pipeline import SAMPLE_CORPUS, ingest

SHIPPED = Path(__file__).parent / "evals" / "tools.jsonl"
SAMPLE_COLLECTION = "eval-tools-sample"


@dataclass(frozen=True)
class ToolCase:
    """One prompt of the tool-call eval set."""

    id: str
    category: str
    prompt: str
    tool: str | None  # None: no tool should be called
    arguments: dict[str, Any] = field(default_factory=dict)  # name -> matcher
    answer: tuple[str, ...] = ()  # acceptable substrings of the final answer; empty: not checked


def load_tool_cases(path: str | Path = SHIPPED, limit: int | None = None) -> list[ToolCase]:
    """The cases of a JSONL eval set.

    Raises:
        AssistantError: the file is missing, or a line is not a valid case (named by its number).
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise AssistantError(f"cannot read the eval set {path} ({e.strerror}): check the path") from None
    cases: list[ToolCase] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            case = ToolCase(
                str(row["id"]),
                str(row.get("category", "")),
                str(row["prompt"]),
                row["tool"],
                dict(row.get("arguments") or {}),
                tuple(str(a) for a in row.get("answer") or ()),
            )
            if case.tool is not None and not isinstance(case.tool, str):
                raise TypeError
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise AssistantError(
                f'{path} line {number}: expected {{"id", "prompt", "tool", "arguments", "answer"}} as JSON'
            ) from None
        cases.append(case)
    if not cases:
        raise AssistantError(f"{path} holds no cases")
    return cases[:limit] if limit else cases


def argument_matches(expected: Any, actual: Any) -> bool:
    """Whether an argument the model gave satisfies a matcher of the eval set."""
    if isinstance(expected, dict):
        if "contains" in expected:
            text = str(actual).lower() if actual is not None else ""
            return all(str(word).lower() in text for word in expected["contains"])
        if "value" in expected:
            try:
                value = evaluate(str(actual))
            except ToolError:
                return False
            tolerance = float(expected.get("tolerance", 1e-9))
            return math.isclose(float(value), float(expected["value"]), rel_tol=1e-9, abs_tol=tolerance)
        if "any" in expected:
            return any(argument_matches(option, actual) for option in expected["any"])
    if isinstance(expected, str):
        return isinstance(actual, str) and actual.strip().lower() == expected.strip().lower()
    return bool(actual == expected)


def expected_answers(case: ToolCase, now: datetime | None = None) -> list[str]:
    """The case's acceptable answers, with date placeholders filled in (several spellings for ``{date}``)."""
    from zoneinfo import ZoneInfo

    given = case.arguments.get("timezone")
    zone = given if isinstance(given, str) else "UTC"
    now = now or datetime.now(ZoneInfo(zone))
    spellings = {
        "{date}": [now.strftime("%Y-%m-%d"), f"{now:%B} {now.day}", f"{now.day} {now:%B}"],
        "{weekday}": [now.strftime("%A")],
        "{year}": [now.strftime("%Y")],
    }
    out: list[str] = []
    for answer in case.answer:
        options = [answer]
        for placeholder, values in spellings.items():
            options = [o.replace(placeholder, v) for o in options for v in values] if placeholder in answer else options
        out.extend(options)
    return out


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def score_cases(
    cases: list[ToolCase],
    model: Any,
    registry: Any,
    *,
    max_steps: int = 3,
    answer_tokens: int = 128,
    tool_timeout: float = 20.0,
    tool_output_chars: int = 4000,
    progress: str = "",
) -> dict[str, Any]:
    """Run the agent on every case and score its calls and answers."""
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    attempts = valid = 0
    for case in tqdm(cases, desc=progress or "tools", unit="prompt", disable=None):
        started = time.perf_counter()
        events = list(
            run_agent(
                case.prompt,
                model,
                registry,
                max_steps=max_steps,
                answer_tokens=answer_tokens,
                tool_timeout=tool_timeout,
                tool_output_chars=tool_output_chars,
            )
        )
        answer = next(e for e in events if isinstance(e, Answer))
        first = answer.calls[0] if answer.calls else None
        for call in answer.calls:
            attempts += 1
            tool = registry.get(call.name)
            try:
                if tool is not None:
                    check_arguments(tool, call.arguments)
                    valid += 1
            except ToolError:
                pass
        if answer.stopped == "unreadable_call":
            attempts += 1
        called = first.name if first else None
        right_tool = called == case.tool
        args_ok = None
        if case.tool is not None and right_tool and first is not None:
            given = first.arguments if isinstance(first.arguments, dict) else {}
            args_ok = all(argument_matches(m, given.get(k)) for k, m in case.arguments.items())
        wanted = expected_answers(case)
        answer_ok = any(_normal(w) in _normal(answer.text) for w in wanted) if wanted else None
        rows.append(
            {
                "id": case.id,
                "category": case.category,
                "expected_tool": case.tool,
                "called": called,
                "arguments": first.arguments if first else None,
                "right_tool": right_tool,
                "arguments_ok": args_ok,
                "answer_ok": answer_ok,
                "calls": len(answer.calls),
                "stopped": answer.stopped,
                "answer": answer.text[:300],
                "seconds": round(time.perf_counter() - started, 2),
            }
        )

    def rate(values: list[bool | None]) -> float | None:
        known = [v for v in values if v is not None]
        return round(100 * sum(known) / len(known), 1) if known else None

    needing = [r for r in rows if r["expected_tool"] is not None]
    by_category: dict[str, Any] = {}
    for category in sorted({r["category"] for r in rows}):
        group = [r for r in rows if r["category"] == category]
        by_category[category] = {
            "prompts": len(group),
            "right_tool_rate": rate([r["right_tool"] for r in group]),
            "argument_accuracy": rate([r["arguments_ok"] for r in group]),
            "answer_correct": rate([r["answer_ok"] for r in group]),
        }
    return {
        "prompts": len(rows),
        "call_rate": rate([r["calls"] > 0 for r in needing]),
        "valid_call_rate": round(100 * valid / attempts, 1) if attempts else None,
        "calls_attempted": attempts,
        "right_tool_rate": rate([r["right_tool"] for r in rows]),
        "argument_accuracy": rate([r["arguments_ok"] for r in rows]),
        "answer_correct": rate([r["answer_ok"] for r in rows]),
        "seconds": round(sum(r["seconds"] for r in rows), 1),
        "by_category": by_category,
        "cases": rows,
    }


def evaluate_tools(
    ingest_config: IngestConfig,
    config: AssistantConfig,
    model: Any,
    adapter: str = "",
    data: str | Path = SHIPPED,
    docs: str | None = None,
    limit: int | None = None,
    answer_tokens: int = 128,
    embedder: Callable[[str, str], Any] | None = None,
    others: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Score the base model, and the adapters when given, on a tool-call eval set.

    The shipped set asks about the sample corpus, which is ingested into its own
    collection; ``docs`` does the same for another set.

    Args:
        ingest_config: Where the documents are.
        config: The agent's limits and user tools.
        model: The base model (a view whose ``with_adapter`` switches adapters).
        adapter: An adapter folder to score as well.
        data: The eval set (JSONL).
        docs: Documents the set asks about.
        limit: Only the first N prompts.
        answer_tokens: Tokens per reply.
        embedder: Loads an embedder by (name, device); None loads a fresh one.
        others: More adapter folders to score, by label (e.g. two adapters trained differently).
    """
    cases = load_tool_cases(data, limit)
    shipped = Path(data).resolve() == SHIPPED.resolve()
    docs = docs or (str(SAMPLE_CORPUS) if shipped else None)
    if docs:
        ingest_config = dataclasses.replace(ingest_config, collection=SAMPLE_COLLECTION)
        ingest([docs], ingest_config, progress=False)
    scope = ingest_config
    registry = build_registry(
        scope, functools.cache(lambda: Retriever.from_config(scope, config, embedder)), config.tools
    )
    result: dict[str, Any] = {
        "data": str(data),
        "prompts": len(cases),
        "categories": dict(Counter(c.category for c in cases)),
        "model": config.model,
        "variants": {},
    }
    for label, chosen in [("base", ""), *(others or {}).items(), *([("adapter", adapter)] if adapter else [])]:
        result["variants"][label] = {
            "adapter": chosen,
            **score_cases(
                cases,
                model.with_adapter(chosen),
                registry,
                max_steps=config.max_steps,
                answer_tokens=answer_tokens,
                tool_timeout=config.tool_timeout,
                tool_output_chars=config.tool_output_chars,
                progress=label,
            ),
        }
    return result
