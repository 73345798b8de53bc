"""The browser app: Chat, Documents, Fine-tune, Compare and Adapters tabs over one :class:`Workspace`.

Each handler is a plain function of the workspace, the session and the inputs,
calling what the CLI calls (``ask``, ``run_agent``, ``ingest``, ``dataset build``,
``finetune``, the adapter registry) and turning the events into what Gradio shows.
``create_app`` builds the Blocks without starting a server; ``launch`` serves it.
Gradio is imported only here, and only when the app is built.
"""

from __future__ import annotations

import functools
import html
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from assistant.events import Answer, Token, ToolCall, ToolResult
from assistant.workspace import ACTIVE, BASE, Upload, Workspace

log = logging.getLogger("ragtune.app")

MODES = ("RAG", "Agent")
STATES = {
    "idle": "No training has run in this app yet.",
    "training": "Training",
    "evaluating": "Training done; evaluating before/after",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Cancelled (a checkpoint was kept: Resume continues it)",
}


class Session:
    """One browser session's chat: what it shows, what the model remembers, and its stop switch."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []  # the chatbot's messages
        self.history: list[dict[str, str]] = []  # question/answer turns for the model
        self.turns: dict[int, dict[str, Any]] = {}  # chatbot index of an answer -> its turn
        self.stop = threading.Event()
        self.rating: int | None = None  # the answer a correction is being written for

    def __deepcopy__(self, memo: dict[int, Any]) -> Session:  # Gradio may copy state; the stop switch is shared
        import copy

        clone = Session()
        clone.messages, clone.history = copy.deepcopy(self.messages), copy.deepcopy(self.history)
        clone.turns, clone.stop, clone.rating = copy.deepcopy(self.turns), self.stop, self.rating
        return clone


class UserError(Exception):
    """A message for the person at the browser (shown as a notice, never a traceback)."""


def _user_errors() -> tuple[type[Exception], ...]:
    from assistant.errors import AssistantError
    from finetune.errors import FinetuneError
    from ingest.errors import IngestError

    return (IngestError, AssistantError, FinetuneError, UserError)


def _explain(error: Exception) -> str:
    if isinstance(error, _user_errors()):
        return str(error)
    log.exception("handler failed")
    return f"unexpected error ({type(error).__name__}: {error}); the server log has the details"


# rendering ------------------------------------------------------------------------------


def render_sources(answer: Answer) -> str:
    """The numbered sources under an answer, each expanding to its snippet (file, page, scores)."""
    from assistant.prompt import source_label

    parts = []
    for n, hit in enumerate(answer.sources, start=1):
        cited = " · cited" if n in answer.cited else ""
        snippet = html.escape(" ".join(hit.text.split())[:700])
        summary = html.escape(
            f"[{n}] {source_label(hit)} · score {hit.score:.3f} · similarity {hit.similarity:.2f}{cited}"
        )
        parts.append(
            f'<details class="source"><summary>{summary}</summary><p>{snippet}</p>'
            f"<p><small>{html.escape(hit.source)}</small></p></details>"
        )
    return "\n".join(parts)


def relevance_warning(answer: Answer, min_score: float) -> str:
    """A warning when retrieval found nothing relevant, or only weak matches."""
    if not answer.relevant:
        return (
            f"⚠️ Nothing in the documents reaches the relevance threshold ({min_score:g}); the answer is not grounded."
        )
    if answer.sources and max(h.similarity for h in answer.sources) < min_score + 0.1:
        best = max(h.similarity for h in answer.sources)
        return f"⚠️ Low relevance: the best source matches weakly (similarity {best:.2f}); check the sources."
    return ""


def render_answer(answer: Answer, min_score: float) -> str:
    """The answer as the chat shows it: the text, a relevance warning, then the expandable sources."""
    parts = [answer.text or "(no answer)"]
    warning = relevance_warning(answer, min_score)
    if warning:
        parts.append(f"*{warning}*")
    if answer.stopped and answer.stopped != "answer":
        parts.append(f"*(the agent stopped calling tools: {answer.stopped.replace('_', ' ')})*")
    sources = render_sources(answer)
    if sources:
        parts.append(sources)
    return "\n\n".join(parts)


def render_status(answer: Answer, budget: int, adapter: str) -> str:
    """One line under the chat: the context budget, the search, the speed, the model."""
    bits = [f"context {answer.prompt_tokens:,} of {budget:,} prompt tokens"]
    if answer.sources or answer.dropped:
        bits.append(f"{len(answer.sources)} sources, {len(answer.dropped)} dropped for room")
    if answer.query != answer.question:
        bits.append(f"searched: “{answer.query}”")
    if "first_token_s" in answer.timings:
        bits.append(f"first token {answer.timings['first_token_s']:.2f} s")
    generation = answer.timings.get("generation_s")
    if generation and answer.completion_tokens:
        bits.append(f"{answer.completion_tokens / generation:.1f} tokens/s")
    if answer.calls:
        bits.append(f"{len(answer.calls)} tool calls")
    bits.append(f"model: {adapter}")
    return " · ".join(bits)


# chat -----------------------------------------------------------------------------------


def chat(
    ws: Workspace, session: Session, message: str, mode: str = "RAG", adapter: str = ACTIVE
) -> Iterator[tuple[list[dict[str, Any]], Session, str, str]]:
    """Answer ``message`` in this session, streaming.

    Yields:
        (the chat's messages, the session, the status line, the input box's new text).
    """
    message = (message or "").strip()
    if not message:
        yield session.messages, session, "Type a question first.", ""
        return
    session.stop.clear()
    session.messages.append({"role": "user", "content": message})
    reply: dict[str, Any] = {"role": "assistant", "content": ""}
    session.messages.append(reply)
    yield session.messages, session, "…", ""
    label = ws.adapter_label(adapter)
    try:
        events = _events(ws, session, message, mode, adapter)
        answer: Answer | None = None
        steps: dict[str, dict[str, Any]] = {}
        for event in events:
            if session.stop.is_set():
                events.close()  # ends the generation
                break
            if isinstance(event, Token):
                reply["content"] += event.text
            elif isinstance(event, ToolCall):
                step: dict[str, Any] = {
                    "role": "assistant",
                    "content": "",
                    "metadata": {"title": f"🛠️ {event}", "status": "pending"},
                }
                steps[event.id] = step
                session.messages.insert(len(session.messages) - 1, step)
            elif isinstance(event, ToolResult):
                shown = event.content if event.ok else f"error: {event.error}"
                step = steps[event.id]
                step["content"] = shown[:1500] + ("…" if len(shown) > 1500 else "")
                step["metadata"].update(status="done", duration=round(event.seconds, 2))
            elif isinstance(event, Answer):
                answer = event
            yield session.messages, session, "…", ""
    except Exception as e:  # the chat stays usable: the error is the answer
        reply["content"] = f"⚠️ {_explain(e)}"
        yield session.messages, session, "", ""
        return
    if answer is None:  # stopped
        reply["content"] += " *(stopped)*"
        yield session.messages, session, "Stopped.", ""
        return
    reply["content"] = render_answer(answer, ws.config.min_score)
    session.turns[len(session.messages) - 1] = {
        "question": message,
        "answer": answer.text,
        "sources": [{"id": h.id, "text": h.text, "metadata": h.metadata} for h in answer.sources],
        "adapter": label,
    }
    session.history += [{"role": "user", "content": message}, {"role": "assistant", "content": answer.text}]
    session.history = session.history[-2 * ws.app.history_turns :]
    budget = ws.config.context_window - ws.config.answer_tokens
    yield session.messages, session, render_status(answer, budget, label), ""


def _events(ws: Workspace, session: Session, message: str, mode: str, adapter: str) -> Generator[Any, None, None]:
    from assistant.agent import respond

    model = ws.model(adapter)
    if mode == "Agent":
        return respond(message, model, ws.config, registry=ws.registry(), history=session.history)
    return respond(message, model, ws.config, retriever=ws.retriever(), history=session.history)


def stop(session: Session) -> None:
    """Stop this session's answer; the generation ends at the next token."""
    session.stop.set()


def clear(session: Session) -> tuple[list[dict[str, Any]], Session, str]:
    session.stop.set()
    fresh = Session()
    return fresh.messages, fresh, ""


def rate(ws: Workspace, session: Session, index: int, liked: bool) -> str:
    """Thumbs up saves the answer as a training example; thumbs down asks for a correction."""
    turn = session.turns.get(index)
    if turn is None:
        return "Only answers can be rated."
    if liked:
        ws.save_feedback(turn, True)
        session.rating = None
        return "Saved as a training example (used by the next dataset build)."
    session.rating = index
    return "Noted. Write the right answer below and save it to teach the model, or leave it."


def correct(ws: Workspace, session: Session, correction: str) -> tuple[str, str]:
    """Save the thumbs-down answer with the user's correction (or, without one, for review only)."""
    if session.rating is None or session.rating not in session.turns:
        return "Rate an answer with thumbs down first.", correction
    path = ws.save_feedback(session.turns[session.rating], False, correction)
    session.rating = None
    if correction.strip():
        return "Correction saved as a training example (used by the next dataset build).", ""
    return f"Saved for review in {path.name} (not used for training).", ""


# documents ------------------------------------------------------------------------------


def document_rows(ws: Workspace) -> list[list[Any]]:
    return [
        [Path(r.path).name, len(r.chunk_ids), round(r.size / 1024, 1), r.ingested_at, r.path] for r in ws.documents()
    ]


def report_rows(report: Any) -> list[list[Any]]:
    return [[Path(f.path).name, f.status, f.chunks, f.reason] for f in report.files]


def add_documents(
    ws: Workspace, files: list[Any] | None, progress: Callable[..., Any] | None = None
) -> tuple[list[list[Any]], str, list[list[Any]]]:
    """Ingest uploaded files; returns the per-file report, a summary and the document list."""
    if not files:
        return [], "Drop or choose files to add.", document_rows(ws)
    uploads = [_upload(f) for f in files]

    def on_file(done: int, total: int, path: str) -> None:
        if progress is not None:
            progress((done, total), desc=f"reading {Path(path).name}", unit="files")

    report = ws.add_documents(uploads, on_file)
    problems = report.count("skipped", "failed")
    summary = report.summary() + (f" — {problems} not ingested, see the reasons" if problems else "")
    return report_rows(report), summary, document_rows(ws)


def _upload(item: Any) -> Upload:
    """What Gradio hands a handler for a file: a path string, or an object with ``.name`` / ``orig_name``."""
    if isinstance(item, str | os.PathLike):
        return Upload(Path(item).name, str(item))
    path = getattr(item, "path", None) or getattr(item, "name", None) or item["path"]
    original = getattr(item, "orig_name", None) or (item.get("orig_name") if isinstance(item, dict) else None)
    return Upload(original or Path(path).name, str(path))


def remove_documents(ws: Workspace, paths: list[str] | None) -> tuple[str, list[list[Any]]]:
    if not paths:
        return "Choose documents to remove.", document_rows(ws)
    report = ws.remove_documents(paths)
    return report.summary(), document_rows(ws)


def reingest(ws: Workspace, paths: list[str] | None) -> tuple[list[list[Any]], str, list[list[Any]]]:
    """Re-read the chosen documents (all when none is chosen); changed files replace their chunks."""
    chosen = list(paths or []) or [r.path for r in ws.documents()]
    if not chosen:
        return [], "No documents yet.", document_rows(ws)
    present = [p for p in chosen if Path(p).exists()]
    missing = [p for p in chosen if not Path(p).exists()]
    report = ws.reingest(present) if present else None
    rows = report_rows(report) if report else []
    rows += [[Path(p).name, "missing", 0, "the file is gone: remove it from the collection"] for p in missing]
    summary = report.summary() if report else "Every chosen file is gone from disk."
    return rows, summary, document_rows(ws)


# fine-tuning ----------------------------------------------------------------------------


def build_dataset(ws: Workspace, feedback: bool) -> str:
    folder, report = ws.build_dataset(feedback)
    splits = report["splits"]
    lines = [
        f"**Dataset** `{folder}`",
        "- examples by source: " + ", ".join(f"{k} {v}" for k, v in sorted(report["sources"].items())),
        f"- {report['chunks']} chunks, {report['questions']} synthetic questions",
        f"- dropped: {report['duplicates']} duplicates, {report['too_long']} too long",
        f"- train {splits['train']}, val {splits['val']}, test {splits['test']} ({report['tokens']['train']:,} tokens)",
    ]
    if report["problems"]:
        lines.append(f"- {len(report['problems'])} rows skipped, e.g. {report['problems'][0]}")
    return "\n".join(lines)


def start_training(ws: Workspace, name: str, epochs: float, steps: float, learning_rate: float, activate: bool) -> str:
    name = (name or "").strip() or datetime.now().strftime("finetune-%Y%m%d-%H%M%S")
    if not (ws.dataset_folder() / "train.jsonl").exists():
        raise UserError("no dataset yet: press Build dataset first")
    settings = {"epochs": epochs, "steps": int(steps or 0), "learning_rate": learning_rate}
    ws.job.start(name, settings, activate=activate)
    return f"Started training **{name}**."


def resume_training(ws: Workspace) -> str:
    status = ws.job.status()
    if status.state != "cancelled":
        raise UserError("only a cancelled run can be resumed")
    ws.job.start(status.name, resume=True)
    return f"Resumed **{status.name}**."


def cancel_training(ws: Workspace) -> str:
    return "Cancelling: the run saves a checkpoint first." if ws.job.cancel() else "No training is running."


def training_view(ws: Workspace) -> tuple[str, str, Any, str, bool]:
    """The training panel: state, progress bar, loss curve, before/after metrics, and whether Activate shows."""
    status = ws.job.status()
    head = STATES[status.state] if not status.name else f"**{status.name}**: {STATES[status.state]}"
    if status.state in ("failed", "cancelled") and status.message:
        head += f"\n\n```\n{status.message}\n```"
    bar = ""
    if status.total_steps:
        percent = 100 * status.step / status.total_steps
        last: dict[str, Any] = next((r for r in reversed(status.rows) if "loss" in r), {})
        bar = (
            f'<progress value="{status.step}" max="{status.total_steps}" style="width:100%"></progress>'
            f"<div>step {status.step} of {status.total_steps} ({percent:.0f}%) · loss {last.get('loss', 0):.3f}"
            f" · {last.get('tokens_per_s', 0):.0f} tokens/s</div>"
        )
    result = ""
    if status.adapter:
        from assistant.tuning import format_evaluation

        evaluation = status.adapter.get("evaluation") or {}
        metrics = status.adapter.get("metrics") or {}
        result = f"val loss {metrics.get('val_loss')} · {metrics.get('steps')} steps\n"
        if evaluation:
            result += "\n" + format_evaluation(evaluation)
        result = f"```\n{result}\n```"
    can_activate = status.state == "completed"
    return head, bar, loss_frame(status.rows), result, can_activate


def loss_frame(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    points = [{"step": r["step"], "loss": r["loss"], "series": "train"} for r in rows if "loss" in r]
    points += [{"step": r["step"], "loss": r["val_loss"], "series": "validation"} for r in rows if "val_loss" in r]
    return pd.DataFrame(points, columns=["step", "loss", "series"])


def activate_trained(ws: Workspace) -> str:
    status = ws.job.status()
    if status.state != "completed":
        raise UserError("no finished training to activate")
    return f"Active adapter: **{ws.activate(status.name)}**. The chat uses it from the next question."


# compare --------------------------------------------------------------------------------

ARMS = (("base", False), ("tuned", False), ("base", True), ("tuned", True))


def compare(ws: Workspace, question: str, adapter: str) -> Iterator[tuple[str, str, str, str, str, str]]:
    """The same question to the base model and the adapter, closed-book and with the same retrieved sources.

    Yields:
        The four answers (base, tuned, base+RAG, tuned+RAG) as they stream, the shared sources, and progress.
    """
    from assistant.answer import ask

    question = (question or "").strip()
    if not question:
        raise UserError("type a question to compare")
    c = ws.config
    names = ws.adapter_names()
    tuned = adapter if adapter and adapter != BASE else ""
    if tuned == ACTIVE:
        from finetune.adapters import Registry

        tuned = Registry(ws.home).active() or ""
    if tuned and tuned not in names:
        raise UserError(f"adapter {tuned!r} is not registered: pick one from the list")
    result = ws.retriever().search(question, c.k, mmr=c.mmr, mmr_lambda=c.mmr_lambda)
    hits = result.hits
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
        model = ws.model(tuned if who == "tuned" else BASE)
        for event in ask(question, model, context=hits if rag else [], answer_tokens=c.answer_tokens):
            if isinstance(event, Token):
                outputs[n] += event.text
                yield (*outputs, sources, progress)  # type: ignore[misc]
    answered = sum(1 for who, _ in ARMS if who == "base" or tuned)
    yield (*outputs, sources, f"Done: {answered} answers in {time.perf_counter() - started:.1f} s.")  # type: ignore[misc]


# adapters -------------------------------------------------------------------------------


def adapter_rows(ws: Workspace) -> list[list[Any]]:
    from finetune.adapters import Registry

    rows = []
    for a in Registry(ws.home).list():
        meta = a.metadata
        metrics = meta.get("metrics", {})
        evaluation = meta.get("evaluation", {})
        answers = evaluation.get("answers", {})
        f1 = ""
        if "base/rag" in answers and "adapter/rag" in answers:
            f1 = f"{answers['base/rag']['f1']:.1f} → {answers['adapter/rag']['f1']:.1f}"
        ppl = evaluation.get("perplexity", {})
        rows.append(
            [
                ("● " if a.active else "") + a.name,
                meta.get("created", ""),
                a.base_model,
                metrics.get("steps"),
                metrics.get("val_loss"),
                f1,
                f"×{ppl['ratio']:.3f}" if ppl.get("ratio") else "",
            ]
        )
    return rows


def adapter_choices(ws: Workspace) -> list[str]:
    return [ACTIVE, BASE, *ws.adapter_names()]


# the Blocks -----------------------------------------------------------------------------


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A handler whose user errors become a notice in the browser, never a crash."""
    import inspect

    import gradio as gr

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def streaming(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:
                raise gr.Error(_explain(e)) from None

        return streaming

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise gr.Error(_explain(e)) from None

    return plain


CSS = """
details.source { margin: 0.2em 0; }
details.source summary { cursor: pointer; font-size: 0.9em; }
details.source p { font-size: 0.88em; margin: 0.3em 0 0.3em 1em; }
"""


def create_app(ws: Workspace) -> Any:
    """The Gradio Blocks of the app over ``ws``, not yet serving."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    def bound(fn: Callable[..., Any]) -> Callable[..., Any]:
        return _guard(functools.partial(fn, ws)) if not _is_gen(fn) else _guard(_partial_gen(fn, ws))

    with gr.Blocks(title="ragtune", analytics_enabled=False) as app:
        gr.Markdown(f"## ragtune · {html.escape(ws.config.model)} · collection `{ws.ingest.collection}`")
        session = gr.State(lambda: Session(), time_to_live=6 * 3600)
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                with gr.Row():
                    mode = gr.Radio(list(MODES), value="RAG", label="Mode", scale=1)
                    adapter = gr.Dropdown(adapter_choices(ws), value=ACTIVE, label="Model", scale=1)
                chatbot = gr.Chatbot(label="Chat", height=480, elem_id="chat", feedback_options=("Like", "Dislike"))
                question = gr.Textbox(placeholder="Ask about your documents…", show_label=False, elem_id="question")
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    stop_button = gr.Button("Stop", elem_id="stop")
                    clear_button = gr.Button("Clear", elem_id="clear")
                status = gr.Markdown(elem_id="chat-status")
                with gr.Row():
                    correction = gr.Textbox(label="Correction for the disliked answer", scale=4)
                    save_correction = gr.Button("Save correction", scale=1)
                notice = gr.Markdown(elem_id="feedback-notice")

                run = bound(chat)
                inputs = [session, question, mode, adapter]
                outputs = [chatbot, session, status, question]
                sent = send.click(run, inputs, outputs, api_name="chat", concurrency_id="model")
                submitted = question.submit(run, inputs, outputs, api_visibility="private", concurrency_id="model")
                stop_button.click(
                    stop, [session], None, cancels=[sent, submitted], queue=False, api_visibility="private"
                )
                clear_button.click(clear, [session], [chatbot, session, status], queue=False, api_visibility="private")
                chatbot.clear(clear, [session], [chatbot, session, status], queue=False, api_visibility="private")

                def on_like(state: Session, data: gr.LikeData) -> str:
                    index = data.index[0] if isinstance(data.index, list | tuple) else data.index
                    return rate(ws, state, int(index), bool(data.liked))

                on_like.__annotations__["data"] = gr.LikeData  # resolved here: Gradio finds LikeData by type
                chatbot.like(_guard(on_like), [session], [notice], api_visibility="private")
                save_correction.click(
                    bound(correct), [session, correction], [notice, correction], api_visibility="private"
                )

            with gr.Tab("Documents", id="documents") as documents_tab:
                files = gr.File(
                    file_count="multiple",
                    label="Drop documents here (pdf, docx, pptx, html, md, txt, csv, json, epub…)",
                    elem_id="documents-upload",
                )
                summary = gr.Markdown(elem_id="ingest-summary")
                report = gr.Dataframe(
                    headers=["file", "status", "chunks", "reason"],
                    label="Last ingest",
                    interactive=False,
                    elem_id="ingest-report",
                )
                documents = gr.Dataframe(
                    headers=["file", "chunks", "KiB", "ingested (UTC)", "path"],
                    value=lambda: document_rows(ws),
                    label="Documents",
                    interactive=False,
                    elem_id="documents",
                )
                with gr.Row():
                    chosen = gr.Dropdown([], multiselect=True, label="Choose documents", scale=4)
                    remove_button = gr.Button("Remove", scale=1)
                    reingest_button = gr.Button("Re-ingest (all when none chosen)", scale=1)

                def add(items: list[Any] | None, progress: gr.Progress = gr.Progress()) -> Any:  # noqa: B008
                    rows, text, docs = add_documents(ws, items, progress)
                    return rows, text, docs, gr.update(choices=_paths(ws), value=[]), None

                files.upload(
                    _guard(add),
                    [files],
                    [report, summary, documents, chosen, files],
                    api_name="add_documents",
                    concurrency_id="ingest",
                )

                def remove(paths: list[str] | None) -> Any:
                    text, docs = remove_documents(ws, paths)
                    return text, docs, gr.update(choices=_paths(ws), value=[])

                remove_button.click(_guard(remove), [chosen], [summary, documents, chosen], api_visibility="private")

                def again(paths: list[str] | None) -> Any:
                    rows, text, docs = reingest(ws, paths)
                    return rows, text, docs, gr.update(choices=_paths(ws), value=[])

                reingest_button.click(
                    _guard(again),
                    [chosen],
                    [report, summary, documents, chosen],
                    api_visibility="private",
                    concurrency_id="ingest",
                )
                documents_tab.select(
                    lambda: (document_rows(ws), gr.update(choices=_paths(ws))),
                    None,
                    [documents, chosen],
                    api_visibility="private",
                )

            with gr.Tab("Fine-tune", id="finetune") as finetune_tab:
                gr.Markdown(
                    "Build training data from the current documents (and your rated answers), train a LoRA "
                    "adapter in the background, compare before/after, then activate it."
                )
                with gr.Row():
                    use_feedback = gr.Checkbox(True, label="Include rated chat answers")
                    build_button = gr.Button("Build dataset")
                dataset_report = gr.Markdown()
                with gr.Row():
                    run_name = gr.Textbox(label="Adapter name", placeholder="finetune-DATE-TIME")
                    epochs = gr.Number(ws.tune.epochs, label="Epochs")
                    max_steps = gr.Number(ws.tune.steps, label="Steps (0: by epochs)", precision=0)
                    learning_rate = gr.Number(ws.tune.learning_rate, label="Learning rate")
                    activate_after = gr.Checkbox(False, label="Activate when done")
                with gr.Row():
                    train_button = gr.Button("Train", variant="primary")
                    cancel_button = gr.Button("Cancel")
                    resume_button = gr.Button("Resume")
                job_state = gr.Markdown(elem_id="job-state")
                job_bar = gr.HTML()
                loss_plot = gr.LinePlot(x="step", y="loss", color="series", label="Loss", height=260)
                job_result = gr.Markdown()
                activate_button = gr.Button("Activate this adapter", visible=False)
                job_notice = gr.Markdown()
                timer = gr.Timer(2.0, active=True)

                def view() -> Any:
                    head, bar, frame, result, can_activate = training_view(ws)
                    return head, bar, frame, result, gr.update(visible=can_activate)

                panel = [job_state, job_bar, loss_plot, job_result, activate_button]
                timer.tick(view, None, panel, api_visibility="private", show_progress="hidden", queue=False)
                finetune_tab.select(view, None, panel, api_visibility="private")
                build_button.click(bound(build_dataset), [use_feedback], [dataset_report], api_visibility="private")
                train_button.click(
                    bound(start_training),
                    [run_name, epochs, max_steps, learning_rate, activate_after],
                    [job_notice],
                    api_visibility="private",
                )
                cancel_button.click(bound(cancel_training), None, [job_notice], api_visibility="private")
                resume_button.click(bound(resume_training), None, [job_notice], api_visibility="private")
                activate_button.click(bound(activate_trained), None, [job_notice], api_visibility="private")

            with gr.Tab("Compare", id="compare") as compare_tab:
                gr.Markdown(
                    "One question to the base model and to an adapter, without retrieval and with the same "
                    "retrieved sources."
                )
                with gr.Row():
                    compare_question = gr.Textbox(label="Question", scale=4, elem_id="compare-question")
                    compare_adapter = gr.Dropdown(adapter_choices(ws)[2:] or [], label="Adapter", scale=1)
                compare_button = gr.Button("Compare", variant="primary", elem_id="compare")
                with gr.Row():
                    base_closed = gr.Markdown(label="base", elem_id="base-closed", container=True)
                    tuned_closed = gr.Markdown(label="tuned", elem_id="tuned-closed", container=True)
                with gr.Row():
                    base_rag = gr.Markdown(label="base + RAG", elem_id="base-rag", container=True)
                    tuned_rag = gr.Markdown(label="tuned + RAG", elem_id="tuned-rag", container=True)
                compare_status = gr.Markdown(elem_id="compare-status")
                compare_sources = gr.Markdown(elem_id="compare-sources")
                compare_button.click(
                    bound(compare),
                    [compare_question, compare_adapter],
                    [base_closed, tuned_closed, base_rag, tuned_rag, compare_sources, compare_status],
                    api_name="compare",
                    concurrency_id="model",
                )

                def compare_choices() -> Any:
                    from finetune.adapters import Registry

                    names = ws.adapter_names()
                    active = Registry(ws.home).active()
                    return gr.update(choices=names, value=active or (names[0] if names else None))

                compare_tab.select(compare_choices, None, [compare_adapter], api_visibility="private")

            with gr.Tab("Adapters", id="adapters") as adapters_tab:
                table = gr.Dataframe(
                    headers=[
                        "adapter (● active)",
                        "created",
                        "base model",
                        "steps",
                        "val loss",
                        "RAG F1",
                        "perplexity",
                    ],
                    value=lambda: adapter_rows(ws),
                    interactive=False,
                    elem_id="adapters",
                )
                with gr.Row():
                    picked = gr.Dropdown(ws.adapter_names(), label="Adapter", scale=3)
                    activate_picked = gr.Button("Activate", scale=1)
                    use_base = gr.Button("Use base model", scale=1)
                    roll_back = gr.Button("Roll back", scale=1)
                    delete = gr.Button("Delete", variant="stop", scale=1)
                adapters_notice = gr.Markdown()

                def after(message: str) -> Any:
                    names = ws.adapter_names()
                    return (
                        message,
                        adapter_rows(ws),
                        gr.update(choices=names, value=None),
                        gr.update(choices=[ACTIVE, BASE, *names]),
                    )

                registry_outputs = [adapters_notice, table, picked, adapter]

                def do_activate(name: str | None) -> Any:
                    if not name:
                        raise UserError("pick an adapter first")
                    return after(f"Active adapter: **{ws.activate(name)}**.")

                def do_base() -> Any:
                    ws.activate(BASE)
                    return after("The assistant uses the base model.")

                def do_rollback() -> Any:
                    return after(f"Rolled back; active: **{ws.rollback()}**.")

                def do_delete(name: str | None) -> Any:
                    if not name:
                        raise UserError("pick an adapter first")
                    ws.remove_adapter(name)
                    return after(f"Deleted **{name}**.")

                activate_picked.click(_guard(do_activate), [picked], registry_outputs, api_visibility="private")
                use_base.click(_guard(do_base), None, registry_outputs, api_visibility="private")
                roll_back.click(_guard(do_rollback), None, registry_outputs, api_visibility="private")
                delete.click(_guard(do_delete), [picked], registry_outputs, api_visibility="private")
                adapters_tab.select(lambda: after(""), None, registry_outputs, api_visibility="private")

        app.load(lambda: gr.update(choices=adapter_choices(ws)), None, [adapter], api_visibility="private")
    return app


def _paths(ws: Workspace) -> list[str]:
    return [r.path for r in ws.documents()]


def _is_gen(fn: Callable[..., Any]) -> bool:
    import inspect

    return inspect.isgeneratorfunction(fn)


def _partial_gen(fn: Callable[..., Iterator[Any]], ws: Workspace) -> Callable[..., Iterator[Any]]:
    """``functools.partial`` for a generator function, kept a generator function for Gradio."""

    @functools.wraps(fn)
    def gen(*args: Any, **kwargs: Any) -> Iterator[Any]:
        yield from fn(ws, *args, **kwargs)

    import inspect

    signature = inspect.signature(fn)
    gen.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])  # type: ignore[attr-defined]
    return gen


def launch(ws: Workspace, *, block: bool = True, quiet: bool = False) -> Any:
    """Serve the app on the configured host and port (share links off, login when configured).

    Returns:
        The Blocks (serving; with ``block`` the call returns only when the server stops).
    """
    import gradio as gr

    app = create_app(ws)
    app.queue(default_concurrency_limit=ws.app.concurrency)
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    app.launch(
        server_name=ws.app.host,
        server_port=ws.app.port,
        share=False,
        auth=ws.app.login(),
        max_file_size=f"{ws.app.max_upload_mb:g}mb",
        prevent_thread_lock=not block,
        quiet=quiet,
        ssr_mode=False,
        footer_links=["api"],
        theme=theme,
        css=CSS,
    )
    return app
