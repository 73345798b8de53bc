"""The tool-call eval: the shipped set is well formed, scoring is right, and the commands run end to end."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from assistant.errors import AssistantError
from assistant.tool_eval import SHIPPED, ToolCase, argument_matches, expected_answers, load_tool_cases, score_cases
from assistant.tools import build_registry, check_arguments
from tests.conftest import make_adapter, run_ragtune


def test_the_shipped_set_is_well_formed() -> None:
    cases = load_tool_cases(SHIPPED)
    assert len(cases) >= 60 and len({c.id for c in cases}) == len(cases)
    counts = Counter(c.category for c in cases)
    assert set(counts) == {"arithmetic", "dates", "documents", "no_tool"} and min(counts.values()) >= 10
    registry = build_registry(object(), lambda: None)  # type: ignore[arg-type]  # schemas only
    for case in cases:
        if case.tool is None:
            assert not case.arguments
            continue
        tool = registry.get(case.tool)
        assert tool is not None, case.id
        literal = {k: v for k, v in case.arguments.items() if not isinstance(v, dict)}
        assert set(case.arguments) <= set(tool.parameters["properties"]), case.id
        check_arguments(tool, {**{k: "x" for k in tool.parameters["required"]}, **literal})
        for matcher in case.arguments.values():
            if isinstance(matcher, dict) and "value" in matcher:
                assert argument_matches(matcher, str(matcher["value"])), case.id


def test_bad_eval_files_are_reported_by_line(tmp_path) -> None:
    path = tmp_path / "set.jsonl"
    path.write_text('{"id": "a", "prompt": "p", "tool": null}\n{"id": "b"}\n')
    with pytest.raises(AssistantError, match="line 2"):
        load_tool_cases(path)
    with pytest.raises(AssistantError, match="cannot read"):
        load_tool_cases(tmp_path / "missing.jsonl")


@pytest.mark.parametrize(
    ("matcher", "given", "ok"),
    [
        ({"value": 391}, "17*23", True),
        ({"value": 391}, "17 * 23 + 1", False),
        ({"value": 33.33, "tolerance": 0.005}, "100/3", True),
        ({"value": 5}, "__import__('os')", False),
        ({"contains": ["E116"]}, "what is e116", True),
        ({"contains": ["E116", "clamp"]}, "E116", False),
        ("Asia/Tokyo", "asia/tokyo", True),
        ("Asia/Tokyo", None, False),
        (2, 2, True),
        (2, "3", False),
        ({"any": ["UTC", "Etc/UTC"]}, "Etc/UTC", True),
    ],
)
def test_argument_matchers(matcher, given, ok: bool) -> None:
    assert argument_matches(matcher, given) is ok


def test_date_placeholders_are_filled_in() -> None:
    case = ToolCase(
        "d", "dates", "What day is it?", "current_datetime", {"timezone": "Asia/Tokyo"}, ("{date}", "{weekday}")
    )
    now = datetime(2026, 11, 21, 10, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert expected_answers(case, now) == ["2026-11-21", "November 21", "21 November", "Saturday"]


def test_scores_count_what_the_model_did(scripted) -> None:
    from assistant.tools import ToolRegistry, calculator, current_datetime

    cases = [
        ToolCase("a", "arithmetic", "What is 17 times 23?", "calculator", {"expression": {"value": 391}}, ("391",)),
        ToolCase("b", "arithmetic", "What is 2 plus 2?", "calculator", {"expression": {"value": 4}}, ("4",)),
        ToolCase("c", "dates", "What year is it?", "current_datetime", {"timezone": "UTC"}, ("{year}",)),
        ToolCase("d", "no_tool", "Capital of France?", None, {}, ("Paris",)),
    ]
    scripted.enqueue(
        '<tool_call>{"name": "calculator", "arguments": {"expression": "17*23"}}</tool_call>',
        "It is 391.",
        '<tool_call>{"name": "calculator", "arguments": {"expression": "2+3"}}</tool_call>',
        "It is 5.",
        '<tool_call>{"name": "clock", "arguments": {}}</tool_call>',
        "I do not know.",
        "Paris.",
    )
    result = score_cases(cases, scripted, ToolRegistry([calculator, current_datetime]), max_steps=1)
    assert [r["called"] for r in result["cases"]] == ["calculator", "calculator", "clock", None]
    assert result["calls_attempted"] == 3 and result["valid_call_rate"] == 66.7  # the unknown tool is invalid
    assert result["call_rate"] == 100.0
    assert result["right_tool_rate"] == 75.0  # a, b and d
    assert result["argument_accuracy"] == 50.0  # a right, b wrong (2+3)
    assert result["answer_correct"] == 50.0  # a and d
    assert result["by_category"]["arithmetic"]["answer_correct"] == 50.0
    assert not scripted.replies


def test_tools_list_and_a_user_tool_from_config(tmp_path) -> None:
    module = tmp_path / "my_tools.py"
    module.write_text(
        "from assistant.tools import tool\n\n\n@tool\ndef echo(text: str) -> str:\n"
        '    """Echo a text.\n\n    Args:\n        text: What to echo.\n    """\n    return text\n'
    )
    done = run_ragtune("tools", "list", "--json", "--set", f"tools={module}")
    assert done.returncode == 0, done.stderr
    listed = {t["function"]["name"]: t for t in json.loads(done.stdout)}
    assert list(listed) == [
        "search_documents",
        "read_document",
        "list_documents",
        "calculator",
        "current_datetime",
        "echo",
    ]
    assert listed["echo"]["function"]["parameters"]["required"] == ["text"]
    assert listed["calculator"]["origin"] == "built-in"

    text = run_ragtune("tools", "list")
    assert "calculator(expression: string)  [built-in]" in text.stdout
    bad = run_ragtune("tools", "list", "--set", "tools=no_such_module")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "could not be loaded" in bad.stderr


def test_eval_tools_and_ask_agent_end_to_end(tiny_lm: str, tiny_embedder: str, tmp_path) -> None:
    """`ragtune eval tools` ingests the sample corpus, runs every prompt, and prints the table."""
    out = tmp_path / "tools.json"
    common = ["--set", f"model={tiny_lm}", "--set", f"embedding_model={tiny_embedder}", "--set", "max_steps=2"]
    common += ["--set", "chunk_tokens=100", "--set", "chunk_overlap=16"]  # the tiny embedder reads 126 tokens
    adapter = make_adapter(tiny_lm, tmp_path / "adapter")
    done = run_ragtune(
        "eval", "tools", "--limit", "4", "--answer-tokens", "4", "--out", str(out), "--adapter", str(adapter), *common
    )
    assert done.returncode == 0, done.stderr
    assert "tools.jsonl: 4 prompts" in done.stdout and "valid-call" in done.stdout
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines[2:4]] == ["base", "adapter"]
    assert lines[4] == "right tool / answer correct, by category:"
    assert [line.split()[0] for line in lines[5:]] == ["base", "adapter"] and "arithmetic " in lines[5]
    result = json.loads(out.read_text())
    assert list(result["variants"]) == ["base", "adapter"] and result["variants"]["adapter"]["adapter"] == str(adapter)
    for variant in result["variants"].values():
        assert variant["prompts"] == 4 and len(variant["cases"]) == 4
        assert all(r["stopped"] in ("answer", "empty_reply", "unreadable_call", "step_limit") for r in variant["cases"])

    question = ["ask", "--agent", "What is 2 plus 2?", "--json", "--collection", "eval-tools-sample"]
    asked = run_ragtune(*question, "--set", "answer_tokens=8", *common)
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert "stopped" in answer and "calls" in answer
