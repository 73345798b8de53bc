"""The Compare tab: one question to the base model and an adapter, closed-book and with the same sources."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from assistant.app.common import UserError, bind, render_sources
from assistant.events import Answer, Token
from assistant.workspace import ACTIVE, NO_ADAPTER, Workspace

ARMS = (("base", False), ("tuned", False), ("base", True), ("tuned", True))


def compare(ws: Workspace, question: str, adapter: str) -> Iterator[tuple[str, str, str, str, str, str]]:
    """The same question to the base model and the adapter, closed-book and with the same retrieved sources.

    Yields:
        The four answers (base, tuned, base+RAG, tuned+RAG) as they stream, the shared sources, and progress.
    """
    question = (question or "").strip()
    if not question:
        raise UserError("type a question to compare")
    names = ws.adapter_names()
    tuned = adapter if adapter and adapter not in (NO_ADAPTER, "base") else ""
    if tuned == ACTIVE:
        tuned = ws.active_adapter() or ""
    if tuned and tuned not in names:
        raise UserError(f"adapter {tuned!r} is not registered: pick one from the list")
    hits = ws.search(question).hits
    sources = ""
    if hits:
        probe = Answer(question, question, "", hits, relevant=True)
        sources = "**Retrieved for both** (the same sources go to each RAG answer)\n\n" + render_sources(probe)
    else:
        sources = "⚠️ Nothing relevant was retrieved: the RAG answers below are given no sources."
    heads = [
        f"**{'base model' if who == 'base' else f'adapter {tuned}' if tuned else 'adapter'}"
        f" · {'with the retrieved sources' if rag else 'no retrieval'}**\n\n"
        for who, rag in ARMS
    ]
    outputs = list(heads)
    started = time.perf_counter()
    for n, (who, rag) in enumerate(ARMS):
        progress = f"Answering {n + 1} of {len(ARMS)}…"
        if who == "tuned" and not tuned:
            outputs[n] += "*No adapter: train one in the Fine-tune tab, or pick one above.*"
            continue
        for event in ws.answer_with(question, tuned if who == "tuned" else NO_ADAPTER, hits if rag else []):
            if isinstance(event, Token):
                outputs[n] += event.text
                yield (*outputs, sources, progress)  # type: ignore[misc]
    answered = sum(1 for who, _ in ARMS if who == "base" or tuned)
    yield (*outputs, sources, f"Done: {answered} answers in {time.perf_counter() - started:.1f} s.")  # type: ignore[misc]


def _choices(ws: Workspace) -> Any:
    import gradio as gr

    names = ws.adapter_names()
    active = ws.active_adapter()
    return gr.update(choices=names, value=active or (names[0] if names else None))


def build(ws: Workspace, tab: Any) -> None:
    """The tab's components and events."""
    import gradio as gr

    gr.Markdown(
        "One question to the base model and to an adapter, without retrieval and with the same retrieved sources."
    )
    with gr.Row():
        question = gr.Textbox(label="Question", scale=4, elem_id="compare-question")
        adapter = gr.Dropdown(ws.adapter_names(), label="Adapter", scale=1)
    button = gr.Button("Compare", variant="primary", elem_id="compare")
    with gr.Row():
        base_closed = gr.Markdown(
            label="base", elem_id="base-closed", container=True, value="*base model · no retrieval*"
        )
        tuned_closed = gr.Markdown(
            label="tuned", elem_id="tuned-closed", container=True, value="*adapter · no retrieval*"
        )
    with gr.Row():
        base_rag = gr.Markdown(
            label="base + RAG", elem_id="base-rag", container=True, value="*base model · with the retrieved sources*"
        )
        tuned_rag = gr.Markdown(
            label="tuned + RAG", elem_id="tuned-rag", container=True, value="*adapter · with the retrieved sources*"
        )
    status = gr.Markdown(elem_id="compare-status")
    sources = gr.Markdown(elem_id="compare-sources")
    button.click(
        bind(compare, ws, 5, 6),
        [question, adapter],
        [base_closed, tuned_closed, base_rag, tuned_rag, sources, status],
        api_name="compare",
        concurrency_id="model",
    )
    tab.select(bind(_choices, ws, 0, 1), None, [adapter], api_visibility="private")
