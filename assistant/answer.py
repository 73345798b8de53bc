"""Grounded answers: retrieve, pack, stream, stop loops, check citations. Yields events the front ends render.

What reaches the user is guarded three ways, whatever the backend:

- the query that retrieval sees is made only of the conversation's own words: a
  self-contained question is searched as asked; a follow-up's model rewrite is kept
  only when it adds no content word of its own (:mod:`assistant.rewrite`), else the
  question and the question joined with the previous user turn are searched and
  fused by reciprocal rank;
- the reply stops at the first sign of a loop (:mod:`assistant.repetition`);
- each sentence of the answer is checked against the numbered sources: a missing
  citation is attached, a wrong one corrected, and an unsupported claim or a number
  or name found in no source is flagged (:mod:`assistant.citations`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Generator
from typing import Any

from assistant.citations import CitedAnswer, check_citations
from assistant.events import Answer, Token
from assistant.model import ChatModel, Message, complete
from assistant.prompt import Packed, check_question, clean_rewrite, pack, question_language, rewrite_messages
from assistant.repetition import LoopGuard, guard_stream
from assistant.retrieval import Hit, Retriever, SearchResult
from assistant.rewrite import fuse, fused_queries, guard_rewrite, is_self_contained
from ingest.languages import nothing_relevant

__all__ = ["REWRITES", "Answer", "Token", "ask", "check_sources", "cited_numbers", "search_queries"]

REWRITES = ("guarded", "fused", "off")  # how a follow-up becomes the query retrieval sees
_CITATION = re.compile(r"\[(\d{1,3})\]")


def search_queries(question: str, history: list[Message], model: ChatModel | None, rewrite: str = "fused") -> list[str]:
    """The queries retrieval runs for ``question`` after ``history`` (several are fused by rank).

    Args:
        question: The user's question.
        history: Earlier turns, oldest first.
        model: Writes the standalone rewrite (``guarded``); None: no rewrite.
        rewrite: ``guarded`` (the model's rewrite when it invents nothing, else ``fused``),
            ``fused`` (the question, and the question joined with the previous user turn) or ``off``.
    """
    if rewrite == "off" or not history or is_self_contained(question, history):
        return [question]
    if rewrite == "guarded" and model is not None:
        written = clean_rewrite(complete(model, rewrite_messages(question, history), max_new_tokens=64), question)
        kept = guard_rewrite(question, history, written)
        if kept:
            return [kept]
    return fused_queries(question, history)


def _search(retriever: Retriever, queries: list[str], k: int, **options: Any) -> SearchResult:
    if len(queries) == 1:
        return retriever.search(queries[0], k, **options)
    results = [retriever.search(q, k, **options) for q in queries]
    hits = fuse([r.hits for r in results], key=lambda h: h.id)[:k]
    below = fuse([r.below_threshold for r in results], key=lambda h: h.id)[:k]
    return SearchResult(" | ".join(queries), hits, sum(r.seconds for r in results), below)


def check_sources(
    text: str, sources: list[Hit], question: str, embed: Callable[[list[str]], Any] | None = None
) -> CitedAnswer:
    """``text`` checked sentence by sentence against the numbered ``sources`` (``[n]`` is ``sources[n - 1]``)."""
    return check_citations(text, [(n, h.text) for n, h in enumerate(sources, 1)], question=question, embed=embed)


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
    rewrite: str = "fused",
    loop_guard: bool = True,
    citations: bool = True,
    embed: Callable[[list[str]], Any] | None = None,
) -> Generator[Token | Answer, None, None]:
    """Answer ``question``, streaming :class:`Token` events, then one :class:`Answer`.

    With a retriever, a follow-up is searched as :func:`search_queries` says, the
    top ``k`` chunks are packed as numbered sources and the answer cites them;
    when nothing relevant is found the answer says so without calling the model.
    With ``context``, those chunks are used instead of retrieval (oracle context).
    Without either, the model answers closed-book.

    Args:
        question: The user's question.
        model: The chat model.
        retriever: Searches the documents; None answers closed-book.
        history: Earlier turns, oldest first.
        k: Chunks handed to the model.
        answer_tokens: Tokens the answer may use.
        temperature: Sampling temperature; 0 is greedy.
        source: Search only this file.
        mmr: Diversify the retrieved chunks.
        mmr_lambda: Relevance against diversity for MMR.
        context: Use these chunks as the sources (no retrieval).
        rewrite: How a follow-up becomes the search query: ``guarded``, ``fused`` or ``off``.
        loop_guard: Stop the reply at the first loop.
        citations: Check each sentence against the sources, attaching and correcting ``[n]``.
        embed: Embeds texts for the citation check (e.g. the retriever's embedder); None: words only.
    """
    check_question(question)
    started = time.perf_counter()
    history = list(history or [])
    timings: dict[str, float] = {}
    query = question
    hits: list[Hit] = list(context or [])
    if retriever is not None and context is None:
        queries = search_queries(question, history, model, rewrite)
        query = " | ".join(queries)
        if history:
            timings["rewrite_s"] = time.perf_counter() - started
        result = _search(retriever, queries, k, source=source, mmr=mmr, mmr_lambda=mmr_lambda)
        timings["retrieval_s"] = result.seconds
        if not result.relevant:
            refusal = nothing_relevant(question_language(question))
            yield Token(refusal)
            timings["total_s"] = time.perf_counter() - started
            yield Answer(question, query, refusal, relevant=False, timings=timings)
            return
        hits = result.hits
    packed: Packed = pack(question, hits, history, model.count_tokens, model.context_window - answer_tokens)
    guard = LoopGuard() if loop_guard else None
    stream = model.stream(packed.messages, max_new_tokens=answer_tokens, temperature=temperature)
    pieces: list[str] = []
    generation_started = time.perf_counter()
    for piece in guard_stream(stream, guard) if guard is not None else stream:
        if not pieces:
            timings["first_token_s"] = time.perf_counter() - started
        pieces.append(piece)
        yield Token(piece)
    timings["generation_s"] = time.perf_counter() - generation_started
    text = (guard.text if guard is not None else "".join(pieces)).strip()
    checked = check_sources(text, packed.sources, question, embed) if citations and packed.sources else None
    timings["total_s"] = time.perf_counter() - started
    yield Answer(
        question,
        query,
        text,
        packed.sources,
        packed.dropped,
        True,
        checked.cited if checked is not None else cited_numbers(text, len(packed.sources)),
        packed.prompt_tokens,
        model.count_text("".join(pieces)),
        timings,
        checked=checked,
        looped=guard.loop.kind if guard is not None and guard.loop is not None else "",
    )


def cited_numbers(text: str, count: int) -> list[int]:
    """The source numbers ``[n]`` that ``text`` cites, among ``1..count``."""
    return sorted({int(n) for n in _CITATION.findall(text) if 1 <= int(n) <= count})
