"""Tools: schemas from typed, documented functions; argument checks; the calculator; loading user tools."""

from __future__ import annotations

import re
import sys
import time
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import pytest

from assistant.calculator import evaluate
from assistant.errors import AssistantError
from assistant.tools import (
    Tool,
    ToolError,
    ToolRegistry,
    build_registry,
    calculator,
    check_arguments,
    current_datetime,
    execute,
    load_user_tools,
    tool,
)


def test_schema_comes_from_the_signature_and_the_docstring() -> None:
    @tool
    def convert(amount: float, unit: Literal["km", "mi"], tags: list[str] | None = None, exact: bool = False) -> str:
        """Convert a distance between kilometres and miles.

        More text that the model does not need.

        Args:
            amount: The distance to convert.
            unit: The unit ``amount`` is in,
                kilometres or miles.
            tags: Labels to attach.
            exact: Keep every digit.
        """
        return ""

    assert isinstance(convert, Tool)
    assert convert.name == "convert"
    assert convert.description == "Convert a distance between kilometres and miles."
    assert convert.parameters == {
        "type": "object",
        "properties": {
            "amount": {"type": "number", "description": "The distance to convert."},
            "unit": {
                "type": "string",
                "enum": ["km", "mi"],
                "description": "The unit ``amount`` is in, kilometres or miles.",
            },
            "tags": {"type": "array", "items": {"type": "string"}, "description": "Labels to attach."},
            "exact": {"type": "boolean", "default": False, "description": "Keep every digit."},
        },
        "required": ["amount", "unit"],
    }
    assert convert.schema()["function"]["name"] == "convert"


def _no_docstring(x: int) -> int:
    return x


def _undescribed(x: int, y: int) -> int:
    """Add.

    Args:
        x: The first.
    """
    return x + y


def _unannotated(x) -> int:  # type: ignore[no-untyped-def]
    """Echo.

    Args:
        x: A value.
    """
    return 0


def _star(*values: int) -> int:
    """Sum.

    Args:
        values: Numbers.
    """
    return 0


def _stale_doc(x: int) -> int:
    """Echo.

    Args:
        x: A value.
        y: Gone.
    """
    return x


def _odd_type(x: complex) -> int:
    """Echo.

    Args:
        x: A value.
    """
    return 0


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (_no_docstring, "has no docstring"),
        (_undescribed, "'y' is not described"),
        (_unannotated, "'x' has no type annotation"),
        (_star, r"\*values is not allowed"),
        (_stale_doc, "does not take"),
        (_odd_type, "is not supported"),
    ],
)
def test_a_badly_documented_tool_fails_at_definition(function, message: str) -> None:
    with pytest.raises(AssistantError, match=message):
        tool(function)


def test_arguments_are_checked_against_the_schema() -> None:
    @tool
    def pick(n: int, mode: Literal["a", "b"] = "a", scale: float = 1.0) -> str:
        """Pick.

        Args:
            n: How many.
            mode: Which.
            scale: Factor.
        """
        return ""

    assert check_arguments(pick, {"n": "5", "scale": 2}) == {"n": 5, "scale": 2}
    assert check_arguments(pick, {"n": 3.0, "mode": None}) == {"n": 3}
    for bad, message in [
        ({}, "missing required"),
        ({"n": 1, "extra": 2}, "unknown argument"),
        ({"n": "five"}, "must be integer"),
        ({"n": True}, "must be integer"),
        ({"n": 1, "mode": "c"}, "must be one of"),
        ([1], "must be a JSON object"),
    ]:
        with pytest.raises(ToolError, match=message):
            check_arguments(pick, bad)


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("17*23", 391),
        ("(1250 - 300) / 5", 190),
        ("10 / 4", 2.5),
        ("2^10", 1024),
        ("2**-1", 0.5),
        ("-2**2", -4),
        ("2**3**2", 512),
        ("7 % 3", 1),
        ("7 // 2", 3),
        ("5!", 120),
        ("1,250 + 3", 1253),
        ("3 × 4 ÷ 2", 6),
        ("sqrt(1764)", 42),
        ("round(100/3, 2)", 33.33),
        ("max(1, 7, 3) - min(4, 2)", 5),
        ("log(e)", 1),
        ("1e3 + .5", 1000.5),
        ("((((((1))))))", 1),
    ],
)
def test_calculator_values(expression: str, value: float) -> None:
    assert evaluate(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('echo hacked')", "cannot read"),
        ("().__class__.__bases__", "cannot read"),
        ("open('/etc/passwd')", "cannot read"),
        ("open(1)", "unknown name 'open'"),
        ("exec(1)", "unknown name 'exec'"),
        ("9**9**9**9", "more than 10000 digits"),
        ("10**100000", "more than 10000 digits"),
        ("99999!", "too large"),
        ("1e308 * 10", "too large"),
        ("2.5 ** 100000", "too large"),
        ("1/0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("sqrt(-1)", "math error"),
        ("(" * 200 + "1" + ")" * 200, "nested too deeply"),
        ("-" * 300 + "1", "nested too deeply"),
        ("1" * 600, "longer than"),
        ("2 (3)", "unexpected"),
        ("abs(-3", "ends early"),
        ("round(1, 2, 3)", "takes 1 to 2"),
        ("", "empty"),
    ],
)
def test_calculator_rejects_hostile_and_broken_input(expression: str, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ToolError, match=re.escape(message)):
        evaluate(expression)
    assert time.perf_counter() - started < 2  # refused up front, never computed at length


def test_calculator_tool_formats_its_result() -> None:
    assert calculator(expression="0.1 + 0.2") == "0.1 + 0.2 = 0.3"
    assert calculator(expression="2/3") == "2/3 = 0.666666666667"


def test_current_datetime_in_a_timezone() -> None:
    text = current_datetime(timezone="Asia/Tokyo")
    now = datetime.now(ZoneInfo("Asia/Tokyo"))
    assert now.strftime("%A") in text and now.strftime("%Y-%m-%d") in text and "UTC+09:00" in text
    assert "UTC" in current_datetime()
    with pytest.raises(ToolError, match="unknown timezone"):
        current_datetime(timezone="Mars/Olympus")


def test_execute_turns_exceptions_and_timeouts_into_errors() -> None:
    @tool
    def slow(seconds: float) -> str:
        """Sleep.

        Args:
            seconds: How long.
        """
        time.sleep(seconds)
        return "done"

    @tool
    def broken(x: int) -> str:
        """Fail.

        Args:
            x: Anything.
        """
        raise ValueError(f"cannot handle {x}")

    started = time.perf_counter()
    outcome = execute(slow, {"seconds": 5}, timeout=0.2)
    assert outcome.error == "timed out after 0.2 s" and time.perf_counter() - started < 2
    assert execute(slow, {"seconds": 0}, timeout=5).value == "done"
    assert execute(broken, {"x": 3}, timeout=5).error == "ValueError: cannot handle 3"
    assert execute(broken, {"y": 3}, timeout=5).error.startswith("bad arguments: unknown argument")


def test_registry_refuses_duplicates_and_non_tools() -> None:
    registry = ToolRegistry([calculator])
    with pytest.raises(AssistantError, match="two tools are named 'calculator'"):
        registry.add(calculator)
    with pytest.raises(AssistantError, match="is not a tool"):
        registry.add(len)  # type: ignore[arg-type]
    assert registry.names == ["calculator"] and "calculator" in registry and len(registry) == 1


USER_TOOLS = '''
from assistant.tools import tool


@tool
def shout(text: str) -> str:
    """Upper-case a text.

    Args:
        text: What to shout.
    """
    return text.upper()


def whisper(text: str) -> str:
    """Lower-case a text.

    Args:
        text: What to whisper.
    """
    return text.lower()
'''


def test_user_tools_from_a_file_a_module_and_an_entry_point(tmp_path, monkeypatch) -> None:
    package = tmp_path / "site"
    package.mkdir()
    (package / "acme_tools.py").write_text(USER_TOOLS)
    dist = package / "acme_tools-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-tools\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ragtune.tools]\nwhisper = acme_tools:whisper\n")
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.delitem(sys.modules, "acme_tools", raising=False)

    from_file = load_user_tools([str(package / "acme_tools.py")], entry_points=False)
    assert [t.name for t in from_file] == ["shout"]
    assert from_file[0](text="hi") == "HI"
    assert [t.name for t in load_user_tools(["acme_tools:whisper"], entry_points=False)] == ["whisper"]
    from_entry_points = [t for t in load_user_tools() if t.origin.startswith("entry point")]
    assert [(t.name, t(text="HI")) for t in from_entry_points] == [("whisper", "hi")]
    assert "acme_tools:whisper" in from_entry_points[0].origin

    registry = build_registry(None, None, ["acme_tools"])
    assert registry.names == ["calculator", "current_datetime", "whisper", "shout"]
    with pytest.raises(AssistantError, match="two tools are named 'whisper'"):
        build_registry(None, None, ["acme_tools:whisper"])
    with pytest.raises(AssistantError, match=r"could not be loaded \(ModuleNotFoundError"):
        load_user_tools(["no_such_module_here"], entry_points=False)
    with pytest.raises(AssistantError, match="defines no tools"):
        load_user_tools(["json"], entry_points=False)


def test_document_tools_read_the_ingested_collection(tiny_config) -> None:
    import functools

    from assistant.retrieval import Hit, Retriever
    from ingest import ingest
    from tests.conftest import SAMPLE

    ingest([SAMPLE], tiny_config, progress=False)
    registry = build_registry(tiny_config, functools.cache(lambda: Retriever(tiny_config, min_score=-1.0)))
    assert registry.names[:3] == ["search_documents", "read_document", "list_documents"]
    listing = registry.get("list_documents")()
    assert listing.startswith("9 documents:") and "warranty.pdf (pdf," in listing

    hits = registry.get("search_documents")(query="error E116 current clamp", k=2)
    assert len(hits) == 2 and all(isinstance(h, Hit) for h in hits)
    with pytest.raises(ToolError, match="between 1 and 8"):
        registry.get("search_documents")(query="x", k=50)

    read = registry.get("read_document")
    page = read(source="warranty.pdf", page=2)
    assert page.page == 2 and page.text and page.source.endswith("warranty.pdf")
    start = read(source="release-notes")  # a unique part of the name is enough
    assert start.text.startswith("SOLSTICE HB-10 FIRMWARE RELEASE NOTES")
    with pytest.raises(ToolError, match="pages run 1 to 3"):
        read(source="warranty.pdf", page=9)
    with pytest.raises(ToolError, match="call list_documents"):
        read(source="nothing-like-this.pdf")


def test_document_tools_on_an_empty_home_say_what_to_do(tiny_config) -> None:
    from assistant.retrieval import Retriever

    registry = build_registry(tiny_config, lambda: Retriever(tiny_config))
    outcome = execute(registry.get("search_documents"), {"query": "warranty"}, timeout=30)
    assert outcome.error == "collection 'documents' is empty: add documents first with `ragtune ingest PATH`"
    assert registry.get("list_documents")() == "No documents have been ingested."


def test_a_strange_timezone_is_a_plain_error_that_reveals_no_path() -> None:
    for name in ("x" * 10_000, "../../etc/passwd", "Mars/Olympus"):
        with pytest.raises(ToolError, match="unknown timezone") as refused:
            current_datetime(timezone=name)
        assert "zoneinfo" not in str(refused.value) and "site-packages" not in str(refused.value)
        assert len(str(refused.value)) < 200
