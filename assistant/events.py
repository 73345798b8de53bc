"""What answering yields, as dataclasses: the CLI, the browser app and the evals render the same events.

``ask`` (retrieve, then answer) yields :class:`Token` events, then one
:class:`Answer`. The agent also yields a :class:`ToolCall` and a
:class:`ToolResult` for each tool it uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from assistant.prompt import source_label
from assistant.retrieval import Hit


@dataclass
class Token:
    """A piece of the answer as it streams."""

    text: str


@dataclass
class ToolCall:
    """The model asked for a tool."""

    id: str  # call_<step>_<n>
    name: str
    arguments: Any  # as the model wrote them; checked against the schema when run
    step: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments, "step": self.step}

    def __str__(self) -> str:
        return f"{self.name}({json.dumps(self.arguments, ensure_ascii=False)})"


@dataclass
class ToolResult:
    """What the tool returned (``content``, as the model reads it), or why it failed (``error``)."""

    id: str
    name: str
    content: str
    error: str | None = None
    seconds: float = 0.0
    sources: list[int] = field(default_factory=list)  # citation numbers of the passages it returned

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "ok": self.ok,
            "content": self.content,
            "error": self.error,
            "seconds": round(self.seconds, 4),
            "sources": self.sources,
        }


@dataclass
class Answer:
    """The finished answer with its sources and numbers."""

    question: str
    query: str  # what was searched: the question, or its standalone rewrite
    text: str
    sources: list[Hit] = field(default_factory=list)  # [n] in the text is sources[n - 1]
    dropped: list[Hit] = field(default_factory=list)
    relevant: bool = True  # False: retrieval found nothing relevant
    cited: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    calls: list[ToolCall] = field(default_factory=list)  # agent mode: the tool calls made, in order
    stopped: str = ""  # agent mode: "answer", "step_limit", "unreadable_call" or "empty_reply"

    def to_dict(self) -> dict[str, Any]:
        out = {
            "question": self.question,
            "query": self.query,
            "answer": self.text,
            "relevant": self.relevant,
            "cited": self.cited,
            "sources": [{"n": n, "label": source_label(h), **h.to_dict()} for n, h in enumerate(self.sources, 1)],
            "dropped": [h.to_dict() for h in self.dropped],
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }
        if self.stopped:
            out["calls"] = [c.to_dict() for c in self.calls]
            out["stopped"] = self.stopped
        return out
