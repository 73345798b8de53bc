"""Tools the agent may call: typed functions whose JSON schema comes from their signature and docstring.

A tool is a plain function with type hints and a Google-style docstring::

    @tool
    def convert(amount: float, unit: Literal["km", "mi"]) -> str:
        \"\"\"Convert a distance between kilometres and miles.

        Args:
            amount: The distance to convert.
            unit: The unit ``amount`` is in.
        \"\"\"

The first docstring paragraph becomes the description and each ``Args:`` entry
the description of its parameter; both are text the model reads, so a missing
annotation or description fails at definition. Users add tools through the
``ragtune.tools`` entry-point group or the ``tools`` config key.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import re
import threading
import time
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from assistant.calculator import evaluate, format_number
from assistant.errors import AssistantError, ToolError
from assistant.retrieval import Hit, Retriever
from ingest import pipeline
from ingest.config import IngestConfig

ENTRY_POINT_GROUP = "ragtune.tools"
_TIMEZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+){0,2}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Return|Yields|Raises|Examples?|Notes?):\s*$")


@dataclass(frozen=True)
class Tool:
    """A callable the model may use, with the JSON schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    function: Callable[..., Any] = field(repr=False, compare=False)
    timeout: float | None = None  # seconds; None: the agent's default
    origin: str = "built-in"  # where it came from, for messages and `ragtune tools list`

    def schema(self) -> dict[str, Any]:
        """The OpenAI-style function schema chat templates expect."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def __call__(self, **arguments: Any) -> Any:
        return self.function(**arguments)


def tool(function: Callable[..., Any] | None = None, *, name: str | None = None, timeout: float | None = None) -> Any:
    """Make a :class:`Tool` of a typed function with a Google-style docstring; usable with or without arguments.

    Args:
        function: The function (when used as ``@tool``).
        name: The tool's name; the function's name by default.
        timeout: Seconds the tool may run; the agent's ``tool_timeout`` by default.

    Raises:
        AssistantError: an annotation, the docstring, or a parameter description is missing.
    """

    def wrap(fn: Callable[..., Any]) -> Tool:
        description, parameters = describe(fn)
        tool_name = name or fn.__name__
        if not _NAME.match(tool_name):
            raise AssistantError(f"tool name {tool_name!r} is invalid: use letters, digits, _ and -, at most 64")
        module = getattr(fn, "__module__", "") or ""
        origin = "built-in" if module.startswith("assistant.") else module
        return Tool(tool_name, description, parameters, fn, timeout, origin)

    return wrap(function) if function is not None else wrap


def describe(fn: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
    """The description and the JSON schema of ``fn``'s arguments, from its signature and docstring.

    Raises:
        AssistantError: the function is not fully typed and documented.
    """
    where = f"tool {getattr(fn, '__name__', fn)!r}"
    description, documented = _parse_docstring(inspect.getdoc(fn) or "")
    if not description:
        raise AssistantError(f"{where} has no docstring: its first line tells the model what the tool does")
    # Parameters only: the return annotation is for readers (and may name types imported for type checking).
    holder = type(
        "_Parameters",
        (),
        {"__annotations__": {k: v for k, v in getattr(fn, "__annotations__", {}).items() if k != "return"}},
    )
    try:
        hints = typing.get_type_hints(holder, globalns=getattr(fn, "__globals__", None))
    except Exception as e:
        raise AssistantError(f"{where}: its type hints cannot be resolved ({e})") from None
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in inspect.signature(fn).parameters.values():
        pname = parameter.name
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise AssistantError(f"{where}: *{pname} is not allowed; name every parameter")
        if pname not in hints:
            raise AssistantError(f"{where}: parameter {pname!r} has no type annotation")
        if not documented.get(pname):
            raise AssistantError(f"{where}: parameter {pname!r} is not described under Args: in the docstring")
        schema = _json_type(hints[pname], f"{where}, parameter {pname!r}")
        schema["description"] = documented[pname]
        if parameter.default is parameter.empty:
            required.append(pname)
        elif parameter.default is not None:
            schema["default"] = parameter.default
        properties[pname] = schema
    unknown = sorted(set(documented) - set(properties))
    if unknown:
        raise AssistantError(f"{where}: the docstring describes {unknown} which the function does not take")
    return description, {"type": "object", "properties": properties, "required": required}


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its description and ``Args:`` entries."""
    lines = doc.splitlines()
    description: list[str] = []
    args: dict[str, str] = {}
    section = ""
    current = ""
    for line in lines:
        heading = _SECTION.match(line.strip())
        if heading and not line.startswith(" "):
            section = heading.group(1)
            continue
        if not section:
            description.append(line)
        elif section in ("Args", "Arguments", "Parameters") and line.strip():
            entry = re.match(r"^\s{0,8}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
            if entry and (len(line) - len(line.lstrip())) <= 4:
                current = entry.group(1)
                args[current] = entry.group(2).strip()
            elif current:
                args[current] = f"{args[current]} {line.strip()}".strip()
    paragraphs = "\n".join(description).strip().split("\n\n")
    return " ".join(paragraphs[0].split()), args


_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _json_type(hint: Any, where: str) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    if origin is Literal:
        values = list(typing.get_args(hint))
        kinds = {_SCALARS.get(type(v)) for v in values}
        if None in kinds or len(kinds) != 1:
            raise AssistantError(f"{where}: Literal values must all be str, int, float or bool")
        return {"type": kinds.pop(), "enum": values}
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) == 1:
            return _json_type(options[0], where)  # optional: not in "required"
        raise AssistantError(f"{where}: unions other than X | None are not supported")
    if origin in (list, tuple, set) or hint in (list, tuple, set):
        items = typing.get_args(hint)
        return {"type": "array", "items": _json_type(items[0], where)} if items else {"type": "array"}
    if origin is dict or hint is dict:
        return {"type": "object"}
    raise AssistantError(f"{where}: type {hint!r} is not supported; use str, int, float, bool, Literal, list or dict")


# --- validation -------------------------------------------------------------------------


def check_arguments(tool: Tool, arguments: Any) -> dict[str, Any]:
    """``arguments`` checked against the tool's schema, with lenient coercion ("5" for an integer).

    Raises:
        ToolError: unknown or missing arguments, or values of the wrong type.
    """
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ToolError(f"arguments must be a JSON object, got {type(arguments).__name__}")
    properties: dict[str, Any] = tool.parameters.get("properties", {})
    unknown = sorted(set(arguments) - set(properties))
    if unknown:
        raise ToolError(f"unknown argument(s) {unknown}; {tool.name} takes {sorted(properties) or 'none'}")
    out: dict[str, Any] = {}
    for key, value in arguments.items():
        if value is None and key not in tool.parameters.get("required", []):
            continue  # null for an optional argument: its default
        out[key] = _coerce(value, properties[key], key)
    missing = [k for k in tool.parameters.get("required", []) if k not in out]
    if missing:
        raise ToolError(f"missing required argument(s) {missing} for {tool.name}")
    return out


def _coerce(value: Any, schema: dict[str, Any], key: str) -> Any:
    kind = schema.get("type")
    bad = ToolError(f"argument {key!r} must be {kind}, got {value!r}"[:300])
    if kind == "string":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise bad
        value = str(value)
    elif kind == "integer":
        whole = isinstance(value, float) and value.is_integer()
        if whole or (isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value)):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
    elif kind == "number":
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
    elif kind == "boolean":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise bad
    elif kind == "array":
        if not isinstance(value, list):
            raise bad
        if "items" in schema:
            value = [_coerce(v, schema["items"], f"{key}[{i}]") for i, v in enumerate(value)]
    elif kind == "object" and not isinstance(value, dict):
        raise bad
    if "enum" in schema and value not in schema["enum"]:
        raise ToolError(f"argument {key!r} must be one of {schema['enum']}, got {value!r}"[:300])
    return value


# --- running ----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one tool call returned, or why it failed."""

    value: Any = None
    error: str | None = None
    seconds: float = 0.0


def execute(tool: Tool, arguments: Any, timeout: float) -> Outcome:
    """Run ``tool`` on checked ``arguments`` in a worker thread, never raising.

    A tool still running after ``timeout`` seconds is abandoned (Python cannot stop
    a thread), so tools should bound their own work; the shipped ones do.
    """
    started = time.perf_counter()
    try:
        checked = check_arguments(tool, arguments)
    except ToolError as e:
        return Outcome(error=f"bad arguments: {e}")
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = tool(**checked)
        except (ToolError, AssistantError) as e:  # a request the tool refuses, in its own words
            box["error"] = str(e)
        except Exception as e:  # a tool's bug is the model's tool error, not the chat's crash
            box["error"] = f"{type(e).__name__}: {e}"

    worker = threading.Thread(target=work, name=f"tool-{tool.name}", daemon=True)
    worker.start()
    limit = tool.timeout if tool.timeout is not None else timeout
    worker.join(limit)
    seconds = time.perf_counter() - started
    if worker.is_alive():
        return Outcome(error=f"timed out after {limit:g} s", seconds=seconds)
    if "error" in box:
        return Outcome(error=box["error"], seconds=seconds)
    return Outcome(value=box.get("value"), seconds=seconds)


class ToolRegistry:
    """The tools the agent may call, by name. Nothing outside it can be called."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.add(t)

    def add(self, t: Tool) -> None:
        if not isinstance(t, Tool):
            raise AssistantError(f"{t!r} is not a tool: decorate the function with @assistant.tools.tool")
        if t.name in self._tools:
            raise AssistantError(
                f"two tools are named {t.name!r} (from {self._tools[t.name].origin} and {t.origin}): rename one"
            )
        self._tools[t.name] = t

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema() for t in self._tools.values()]

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools


# --- loading user tools -----------------------------------------------------------------


def _tools_in(obj: Any, origin: str) -> list[Tool]:
    """Tools from an entry point's or a config entry's target: a Tool, a function, a list, or a module."""
    if isinstance(obj, Tool):
        return [dataclasses.replace(obj, origin=origin)]
    if isinstance(obj, types.ModuleType):
        found = [v for v in vars(obj).values() if isinstance(v, Tool)]
        if not found:
            raise AssistantError(f"{origin} defines no tools: decorate its functions with @assistant.tools.tool")
        return [t for v in found for t in _tools_in(v, origin)]
    if isinstance(obj, list | tuple):
        return [t for item in obj for t in _tools_in(item, origin)]
    if callable(obj):
        return _tools_in(tool(obj), origin)
    raise AssistantError(f"{origin} is not a tool, a function, a list of them or a module")


def load_user_tools(entries: Iterable[str] = (), entry_points: bool = True) -> list[Tool]:
    """Tools from the ``ragtune.tools`` entry-point group and from ``module``, ``module:name`` or ``file.py`` entries.

    Raises:
        AssistantError: an entry cannot be imported or holds no valid tool.
    """
    from importlib.metadata import entry_points as installed

    found: list[Tool] = []
    if entry_points:
        for ep in installed(group=ENTRY_POINT_GROUP):
            origin = f"entry point {ep.name!r} ({ep.value})"
            try:
                target = ep.load()
            except Exception as e:
                problem = f"{type(e).__name__}: {e}"
                raise AssistantError(f"{origin} failed to load ({problem}): fix or uninstall it") from None
            found.extend(_tools_in(target, origin))
    for entry in entries:
        found.extend(_tools_in(_import_entry(entry), f"tools entry {entry!r}"))
    return found


def _import_entry(entry: str) -> Any:
    module_name, _, attribute = entry.partition(":")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser()
            spec = importlib.util.spec_from_file_location(f"ragtune_user_tools_{path.stem}", path)
            if spec is None or spec.loader is None or not path.is_file():
                raise FileNotFoundError(f"no file {path}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        return getattr(module, attribute) if attribute else module
    except AssistantError:
        raise
    except Exception as e:
        raise AssistantError(
            f"tools entry {entry!r} could not be loaded ({type(e).__name__}: {e}): "
            "give `module`, `module:function` or a .py file in the `tools` config key"
        ) from None


def build_registry(
    ingest_config: IngestConfig | None,
    retriever: Callable[[], Retriever] | None,
    entries: Iterable[str] = (),
    entry_points: bool = True,
) -> ToolRegistry:
    """The built-in tools (document tools when a collection is given) plus the user's tools."""
    tools = [calculator, current_datetime]
    if ingest_config is not None and retriever is not None:
        tools = [*document_tools(ingest_config, retriever), *tools]
    return ToolRegistry([*tools, *load_user_tools(entries, entry_points)])


# --- built-in tools ---------------------------------------------------------------------

EXCERPT_CHARS = 1500  # read_document's bound
LIST_LIMIT = 50  # list_documents' bound


def document_tools(ingest_config: IngestConfig, retriever: Callable[[], Retriever]) -> list[Tool]:
    """``search_documents``, ``read_document`` and ``list_documents`` over one collection (read-only)."""

    @tool
    def search_documents(query: str, k: int = 3) -> list[Hit] | str:
        """Search the user's documents and return the most relevant passages, numbered for citation.

        Args:
            query: What to look for: a question or a few keywords.
            k: How many passages to return, 1 to 8.
        """
        if not 1 <= k <= 8:
            raise ToolError("k must be between 1 and 8")
        if not query.strip():
            raise ToolError("the query is empty: give keywords or a question")
        result = retriever().search(query, k)
        return result.hits or "No passage of the documents is relevant to this query."

    @tool
    def read_document(source: str, page: int | None = None) -> Hit:
        """Read an excerpt of one document: a given page, or its beginning.

        Args:
            source: The document's file name (as list_documents shows it) or path.
            page: The 1-based page, slide or chapter to read; omit it for the beginning.
        """
        record = _find_document(pipeline.list_documents(ingest_config), source)
        text = pipeline.extracted_text(ingest_config, record.sha256)
        metadatas: Any = retriever().collection.get(ids=list(record.chunk_ids), include=["metadatas"])["metadatas"]
        start, end = 0, len(text)
        if page is not None:
            spans = [(m["start_char"], m["end_char"]) for m in metadatas if m.get("page") == page]
            if not spans:
                pages = sorted({m["page"] for m in metadatas if m.get("page") is not None})
                raise ToolError(
                    f"{Path(record.path).name} has no page {page}"
                    + (f"; its pages run {pages[0]} to {pages[-1]}" if pages else "; it has no pages, omit page")
                )
            start, end = min(s for s, _ in spans), max(e for _, e in spans)
        excerpt = text[start : min(end, start + EXCERPT_CHARS)]
        if end - start > EXCERPT_CHARS:
            excerpt += f"\n[excerpt: first {EXCERPT_CHARS} of {end - start} characters; search for specifics]"
        meta = {"source": record.path, "file_name": Path(record.path).name, "start_char": start, "end_char": end}
        if page is not None:
            meta["page"] = page
        return Hit(f"{record.sha256[:16]}:{page or 0}", excerpt, meta, 0.0, 0.0, None, None)

    @tool
    def list_documents() -> str:
        """List the documents that have been ingested, with their type and size in passages."""
        records = sorted(pipeline.list_documents(ingest_config), key=lambda r: Path(r.path).name.lower())
        if not records:
            return "No documents have been ingested."
        lines = [
            f"{Path(r.path).name} ({Path(r.path).suffix.lstrip('.') or 'text'}, {len(r.chunk_ids)} passages)"
            for r in records[:LIST_LIMIT]
        ]
        if len(records) > LIST_LIMIT:
            lines.append(f"... and {len(records) - LIST_LIMIT} more")
        return f"{len(records)} documents:\n" + "\n".join(lines)

    return [search_documents, read_document, list_documents]


def _find_document(records: list[Any], source: str) -> Any:
    wanted = source.strip()
    for match in (
        lambda r: r.path == wanted,
        lambda r: Path(r.path).name == wanted,
        lambda r: Path(r.path).name.lower() == wanted.lower(),
        lambda r: Path(r.path).stem.lower() == wanted.lower(),
    ):
        found = [r for r in records if match(r)]
        if len(found) == 1:
            return found[0]
    partial = [r for r in records if wanted and wanted.lower() in Path(r.path).name.lower()]
    if len(partial) == 1:
        return partial[0]
    raise ToolError(f"no single document is named {source!r}: call list_documents for the names")


@tool
def current_datetime(timezone: str = "UTC") -> str:
    """The current date, time and weekday in a timezone.

    Args:
        timezone: An IANA timezone name such as "Europe/Paris" or "America/New_York".
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = timezone.strip() or "UTC"
    unknown = ToolError(f"unknown timezone {name[:60]!r}: use an IANA name such as Europe/Paris or UTC")
    if len(name) > 64 or not _TIMEZONE.match(name):
        raise unknown
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # never the path of the zone database
        raise unknown from None
    now = datetime.now(zone)
    offset = f"{now:%z}"
    return f"{now:%A}, {now:%Y-%m-%d %H:%M:%S} {now.tzname()} (UTC{offset[:3]}:{offset[3:]}) in {zone.key}"


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly, e.g. "(1250 - 300) / 5" or "sqrt(2) * 10^3".

    Args:
        expression: Numbers with + - * / // % ^ (or **), parentheses, !, and the functions sqrt, abs, round,
            floor, ceil, log, log10, log2, exp, sin, cos, tan, min, max and the constants pi and e.
    """
    return f"{expression.strip()} = {format_number(evaluate(expression))}"
