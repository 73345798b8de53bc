"""What the tabs share: user errors shown as notices, the guard around handlers, rendering of answers."""

from __future__ import annotations

import functools
import html
import inspect
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

from assistant.errors import AssistantError
from assistant.events import Answer
from assistant.prompt import source_label
from assistant.workspace import Workspace
from finetune.errors import FinetuneError
from ingest.errors import IngestError

log = logging.getLogger("ragtune.app")


class UserError(Exception):
    """A message for the person at the browser (shown as a notice, never a traceback)."""


USER_ERRORS = (IngestError, AssistantError, FinetuneError, UserError)


def explain(error: Exception) -> str:
    """The one line the browser shows for ``error``.

    An ordinary user error is one line in the server log; an unexpected one is logged with its traceback.
    """
    if isinstance(error, USER_ERRORS):
        log.warning("refused: %s", error)
        return str(error)
    log.exception("handler failed")
    return f"unexpected error ({type(error).__name__}: {error}); the server log has the details"


def failed(error: Exception, notice: int, outputs: int) -> Any:
    """The outputs of a handler that failed: ``⚠️ message`` in its notice, no change to any other component."""
    import gradio as gr

    message = f"⚠️ {explain(error)}"
    if outputs == 1:
        return message
    return tuple(message if n == notice else gr.skip() for n in range(outputs))


def guard(fn: Callable[..., Any], notice: int = 0, outputs: int = 1) -> Callable[..., Any]:
    """A handler whose errors become a message in its own tab's notice (output ``notice`` of ``outputs``).

    No other component changes on an error, so one tab's failure never reaches another tab.
    """
    if inspect.isgeneratorfunction(fn) or inspect.isgeneratorfunction(getattr(fn, "func", None)):

        @functools.wraps(fn)
        def streaming(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:
                yield failed(e, notice, outputs)

        return streaming

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            return failed(e, notice, outputs)

    return plain


def bind(fn: Callable[..., Any], ws: Workspace, notice: int = 0, outputs: int = 1) -> Callable[..., Any]:
    """``fn`` with the workspace as its first argument, guarded; a generator function stays one for Gradio."""
    if not inspect.isgeneratorfunction(fn):
        return guard(functools.partial(fn, ws), notice, outputs)

    @functools.wraps(fn)
    def gen(*args: Any, **kwargs: Any) -> Iterator[Any]:
        yield from fn(ws, *args, **kwargs)

    signature = inspect.signature(fn)
    gen.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])  # type: ignore[attr-defined]
    return guard(gen, notice, outputs)


def snippet(text: str, limit: int = 700) -> str:
    """``text`` on one line, cut at a word boundary when longer than ``limit`` characters."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0]
    return cut + " …"


_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+")


def supporting(text: str, claims: list[str]) -> tuple[int, int] | None:
    """The span of the sentence of ``text`` that shares the most words with ``claims`` (None: no shared word)."""
    wanted = {w.lower() for claim in claims for w in _WORD.findall(claim) if len(w) > 2}
    best, span, at = 0, None, 0
    for sentence in _SENTENCE.split(text):
        start = text.index(sentence, at)
        at = start + len(sentence)
        shared = len(wanted & {w.lower() for w in _WORD.findall(sentence)})
        if shared > best:
            lead = len(sentence) - len(sentence.lstrip("|-*#> "))  # a table cell's or list item's marker
            best, span = shared, (start + lead, at)
    return span


def render_sources(answer: Answer) -> str:
    """The numbered sources under an answer, each expanding to its text with the cited sentence highlighted.

    A ``[n]`` chip in the answer opens source n (see :func:`chips`).
    """
    parts = []
    for n, hit in enumerate(answer.sources, start=1):
        cited = " · cited" if n in answer.cited else ""
        text = snippet(hit.text)
        claims = [s.text for s in answer.checked.sentences if n in s.cited] if answer.checked is not None else []
        span = supporting(text, claims) if claims else None
        if span:
            body = (
                html.escape(text[: span[0]])
                + f"<mark>{html.escape(text[span[0] : span[1]])}</mark>"
                + html.escape(text[span[1] :])
            )
        else:
            body = html.escape(text)
        summary = html.escape(f"[{n}] {source_label(hit)} · {max(hit.similarity, 0.0):.0%} similar{cited}")
        parts.append(
            f'<details class="source source-{n}"><summary>{summary}</summary><p>{body}</p>'
            f"<p><small>{html.escape(hit.source)}</small></p></details>"
        )
    return "\n".join(parts)


_CITE = re.compile(r"\[(\d+)\]")


def chips(text: str, count: int) -> str:
    """``text`` with each ``[n]`` (1 ≤ n ≤ ``count``) as a chip that opens source n below the answer."""

    def chip(match: re.Match[str]) -> str:
        n = int(match.group(1))
        return f'<a class="cite" href="#source-{n}">[{n}]</a>' if 1 <= n <= count else match.group(0)

    return _CITE.sub(chip, text)
