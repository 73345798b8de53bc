"""What answering yields, as dataclasses: the CLI, the browser app and the evals render the same events.

``ask`` (retrieve, then answer) yields :class:`Token` events, then one
:class:`Answer`. The agent also yields a :class:`ToolCall` and a
:class:`ToolResult` for each tool it uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from assistant.citations import CitedAnswer
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
    checked: CitedAnswer | None = None  # each sentence checked against the sources; None: not checked
    looped: str = ""  # the kind of loop the reply was stopped at ("": none)

    def cited_text(self, unsupported_mark: str = "") -> str:
        """The answer with its checked ``[n]`` citations (and ``unsupported_mark`` after unsupported claims)."""
        return self.checked.render(unsupported_mark) if self.checked is not None else self.text

    def warnings(self) -> list[str]:
        """What a reader should know about this answer: unsupported claims, unknown numbers and names, a cut loop."""
        out = []
        if self.checked is not None:
            if self.checked.unsupported:
                count = len(self.checked.unsupported)
                out.append(f"{count} sentence{'s' if count > 1 else ''} not supported by the sources (marked ⚠)")
            if self.checked.corrected:
                out.append(f"{len(self.checked.corrected)} citation(s) of the model corrected")
            if self.checked.unknown_terms:
                out.append("not in any source: " + ", ".join(self.checked.unknown_terms[:8]))
        if self.looped:
            out.append(f"the reply began to repeat itself ({self.looped.replace('_', ' ')}) and was cut there")
        return out

    def stopped_note(self) -> str:
        """Why the agent stopped, when it did not simply answer (e.g. "the agent stopped calling tools: step limit")."""
        if self.stopped and self.stopped != "answer":
            return f"the agent stopped calling tools: {self.stopped.replace('_', ' ')}"
        return ""

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
        if self.checked is not None:
            out["checked"] = self.checked.to_dict()
        if self.looped:
            out["looped"] = self.looped
        if self.stopped:
            out["calls"] = [c.to_dict() for c in self.calls]
            out["stopped"] = self.stopped
        return out
