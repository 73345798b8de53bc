"""Grounded answers: retrieve, pack, stream, cite. Yields events the CLI and the app render."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from assistant.model import ChatModel, Message, complete
from assistant.prompt import (
    NOTHING_RELEVANT,
    Packed,
    check_question,
    clean_rewrite,
    pack,
    rewrite_messages,
    source_label,
)
from assistant.retrieval import Hit, Retriever

_CITATION = re.compile(r"\[(\d{1,3})\]")


@dataclass
class Token:
    """A piece of the answer as it streams."""

    text: str


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

    def to_dict(self) -> dict[str, Any]:
        return {
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


def ask(
    question: str,
    model: ChatModel,
    retriever: Retriever | None = None,
    *,
    history: list[Message] | None = None,
    k: int = 5,
    answer_tokens: int = 256,
    temperature: float = 0.0,
    source: str | None = None,
    mmr: bool = False,
    mmr_lambda: float = 0.7,
    context: list[Hit] | None = None,
) -> Iterator[Token | Answer]:
    """Answer ``question``, streaming :class:`Token` events, then one :class:`Answer`.

    With a retriever, a follow-up is first rewritten into a standalone query, the
    top ``k`` chunks are packed as numbered sources and the answer cites them;
    when nothing relevant is found the answer says so without calling the model.
    With ``context``, those chunks are used instead of retrieval (oracle context).
    Without either, the model answers closed-book.
    """
    check_question(question)
    started = time.perf_counter()
    history = list(history or [])
    timings: dict[str, float] = {}
    query = question
    hits: list[Hit] = list(context or [])
    if retriever is not None and context is None:
        if history:
            query = clean_rewrite(complete(model, rewrite_messages(question, history), max_new_tokens=64), question)
            timings["rewrite_s"] = time.perf_counter() - started
        result = retriever.search(query, k, source=source, mmr=mmr, mmr_lambda=mmr_lambda)
        timings["retrieval_s"] = result.seconds
        if not result.relevant:
            yield Token(NOTHING_RELEVANT)
            timings["total_s"] = time.perf_counter() - started
            yield Answer(question, query, NOTHING_RELEVANT, relevant=False, timings=timings)
            return
        hits = result.hits
    packed: Packed = pack(question, hits, history, model.count_tokens, model.context_window - answer_tokens)
    pieces: list[str] = []
    generation_started = time.perf_counter()
    for piece in model.stream(packed.messages, max_new_tokens=answer_tokens, temperature=temperature):
        if not pieces:
            timings["first_token_s"] = time.perf_counter() - started
        pieces.append(piece)
        yield Token(piece)
    timings["generation_s"] = time.perf_counter() - generation_started
    timings["total_s"] = time.perf_counter() - started
    text = "".join(pieces).strip()
    cited = sorted({int(n) for n in _CITATION.findall(text) if 1 <= int(n) <= len(packed.sources)})
    yield Answer(
        question,
        query,
        text,
        packed.sources,
        packed.dropped,
        True,
        cited,
        packed.prompt_tokens,
        model.count_text(text),
        timings,
    )
