"""Grounded answers: retrieve, pack, stream, cite. Yields events the CLI and the app render."""

from __future__ import annotations

import re
import time
from collections.abc import Generator

from assistant.events import Answer, Token
from assistant.model import ChatModel, Message, complete
from assistant.prompt import (
    NOTHING_RELEVANT,
    Packed,
    check_question,
    clean_rewrite,
    pack,
    rewrite_messages,
)
from assistant.retrieval import Hit, Retriever

__all__ = ["Answer", "Token", "ask", "cited_numbers"]

_CITATION = re.compile(r"\[(\d{1,3})\]")


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
) -> Generator[Token | Answer, None, None]:
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
    cited = cited_numbers(text, len(packed.sources))
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


def cited_numbers(text: str, count: int) -> list[int]:
    """The source numbers ``[n]`` that ``text`` cites, among ``1..count``."""
    return sorted({int(n) for n in _CITATION.findall(text) if 1 <= int(n) <= count})
