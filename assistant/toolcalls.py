"""Tool calls as text: the prompt format that offers tools, and the tolerant parser of the model's calls.

Tool schemas reach the model through its chat template when the template renders
tools; otherwise through this system-prompt format (documented in the README)::

    <tools>
    {"name": "calculator", "description": "...", "parameters": {...}}
    </tools>
    To call a tool, reply with only:
    <tool_call>{"name": "<tool name>", "arguments": {<arguments as JSON>}}</tool_call>

and each result comes back in a user turn inside ``<tool_response>`` tags. The
agent, the ``openai`` backend and the API all read and write calls through here.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]
Schema = dict[str, Any]

TOOL_FORMAT = (
    "You can call these tools:\n<tools>\n{tools}\n</tools>\n"
    "To call a tool, reply with only:\n"
    '<tool_call>{{"name": "<tool name>", "arguments": {{<arguments as JSON>}}}}</tool_call>\n'
    "Each result comes back inside <tool_response></tool_response>."
)
OPENERS = ("<tool_call", "{", "[", "```")  # a reply that starts like this may be a call
TAG = "<tool_call"
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCED = re.compile(r"```[a-zA-Z_]*\s*\n?(.*?)```", re.S)
_PROTOCOL_TAGS = re.compile(r"</?\s*(tool_call|tool_response|tools)\s*>", re.I)


@dataclass
class Parsed:
    """A reply split into tool calls and text; ``error`` when it tried to call a tool and failed."""

    calls: list[tuple[str, Any]] = field(default_factory=list)  # (name, arguments)
    text: str = ""
    error: str | None = None


def parse_tool_calls(reply: str) -> Parsed:
    """Find tool calls in a reply: tagged JSON, fenced JSON or bare JSON, one call or a list.

    Accepts ``{"name", "arguments"}`` (or ``parameters``/``args``, arguments as an
    object or a JSON string), OpenAI's ``{"function": {...}}`` and ``{"tool_calls": [...]}``.
    A reply without a call is text; one that tries and fails gets ``error``.
    """
    if "<tool_call>" in reply:
        preamble = reply[: reply.index("<tool_call>")].strip()
        calls: list[tuple[str, Any]] = []
        for block in _TAGGED.findall(reply):
            fenced = _FENCED.search(block)
            value = _loads(fenced.group(1) if fenced else block)
            if value is _BAD:
                return Parsed([], preamble, "the text inside <tool_call> is not valid JSON")
            found = _calls_in(value)
            if found is None:
                return Parsed([], preamble, 'expected {"name": ..., "arguments": {...}} inside <tool_call>')
            calls.extend(found)
        return Parsed(calls, preamble)
    for match in _FENCED.finditer(reply):
        value = _loads(match.group(1))
        found = _calls_in(value) if value is not _BAD else None
        if found:
            return Parsed(found, reply[: match.start()].strip())
    stripped = reply.strip()
    if stripped.startswith(("{", "[")):
        value = _loads(stripped)
        if value is not _BAD:
            found = _calls_in(value)
            return Parsed(found, "") if found is not None else Parsed([], reply)
        if re.search(r'"(name|function)"\s*:', stripped):
            return Parsed([], "", "the tool call is not valid JSON")
        return Parsed([], reply)
    start = stripped.find('{"name"')
    if start > 0:
        try:
            value, _ = json.JSONDecoder().raw_decode(stripped[start:])
        except json.JSONDecodeError:
            return Parsed([], stripped[:start].strip(), "the tool call is not valid JSON")
        found = _calls_in(value)
        if found:
            return Parsed(found, stripped[:start].strip())
    return Parsed([], reply)


_BAD = object()


def arguments_object(arguments: Any) -> Any:
    """Tool call arguments as an object when they are JSON text (chat templates expect objects)."""
    if not isinstance(arguments, str):
        return arguments
    value = _loads(arguments or "{}")
    return arguments if value is _BAD else value


def _loads(text: str) -> Any:
    """JSON, leniently: trailing commas, Python-style quotes and literals, missing closing brackets."""
    text = text.strip()
    if not text or len(text) > 20_000:
        return _BAD
    candidates = [text, re.sub(r",\s*([}\]])", r"\1", text)]
    missing = text.count("{") - text.count("}"), text.count("[") - text.count("]")
    if missing[0] > 0 or missing[1] > 0:
        candidates.append(text + "]" * max(missing[1], 0) + "}" * max(missing[0], 0))
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            pass
    try:  # {'name': 'x', 'arguments': {'a': True}}: a literal, never evaluated as code
        value = ast.literal_eval(text)
        return json.loads(json.dumps(value, default=_plain))  # tuples, sets, bytes: plain JSON values
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return _BAD


def _plain(value: Any) -> Any:
    return sorted(value, key=str) if isinstance(value, set | frozenset) else str(value)


def _calls_in(value: Any) -> list[tuple[str, Any]] | None:
    """The calls in a parsed JSON value, [] for an empty list, None when it is not call-shaped."""
    if isinstance(value, list):
        calls = [_call(v) for v in value]
        return None if any(c is None for c in calls) else [c for c in calls if c is not None]
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        return _calls_in(value["tool_calls"])
    call = _call(value)
    return None if call is None else [call]


def _call(value: Any) -> tuple[str, Any] | None:
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):
        value = value["function"]
    name = value.get("name") or value.get("tool")
    if not isinstance(name, str) or not name.strip():
        return None
    arguments: Any = {}
    for key in ("arguments", "parameters", "args", "input"):
        if key in value:
            arguments = value[key]
            break
    if isinstance(arguments, str):
        parsed = _loads(arguments)
        arguments = parsed if parsed is not _BAD else arguments
    return name.strip(), arguments


def tool_prompt(
    system: str, transcript: list[Message], schemas: list[Schema] | None, native: bool
) -> tuple[list[Message], list[Schema] | None]:
    """The messages and tool schemas a model is given for ``transcript`` (OpenAI-style messages).

    With ``native`` the chat template renders the schemas, calls and ``tool`` messages
    itself; otherwise the schemas go into the system prompt in this module's format,
    calls become ``<tool_call>`` text and results ``<tool_response>`` user turns.
    ``schemas`` None: no tools offered this turn. ``system`` "" adds no system prompt of its own.
    """
    if schemas and not native:
        specs = "\n".join(json.dumps(s["function"], ensure_ascii=False) for s in schemas)
        system = (system + "\n\n" if system else "") + TOOL_FORMAT.format(tools=specs)
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    names = {c.get("id"): c["function"]["name"] for m in transcript for c in m.get("tool_calls") or []}
    for m in transcript:
        if native:
            messages.append(m)
        elif m.get("tool_calls"):
            calls = [
                json.dumps({"name": c["function"]["name"], "arguments": c["function"]["arguments"]})
                for c in m["tool_calls"]
            ]
            tagged = [f"<tool_call>{c}</tool_call>" for c in calls]
            text = "\n".join([m["content"], *tagged] if m["content"] else tagged)
            messages.append({"role": "assistant", "content": text})
        elif m["role"] == "tool":
            name = m.get("name") or names.get(m.get("tool_call_id"), "")
            response = json.dumps({"name": name, "content": m["content"]}, ensure_ascii=False)
            messages = with_user(messages, f"<tool_response>\n{response}\n</tool_response>")
        else:
            messages.append({"role": m["role"], "content": m["content"]})
    return messages, (schemas if schemas and native else None)


def with_user(messages: list[Message], text: str) -> list[Message]:
    """``messages`` plus a user turn, merged into the last one if it is already the user's."""
    if messages and messages[-1]["role"] == "user":
        return [*messages[:-1], {"role": "user", "content": f"{messages[-1]['content']}\n\n{text}"}]
    return [*messages, {"role": "user", "content": text}]


def defuse_tags(text: str) -> str:
    """Tool output cannot open or close protocol tags: ``<tool_call>`` in a document stays text."""
    return _PROTOCOL_TAGS.sub(lambda m: m.group(0).replace("<", "&lt;").replace(">", "&gt;"), text)
