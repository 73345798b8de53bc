"""The Chat tab: streamed answers with sources, RAG or agent mode, a model picker, ratings that become training data."""

from __future__ import annotations

import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from assistant.app.common import UserError, bind, chips, explain, guard, render_sources
from assistant.conversations import Message
from assistant.events import Answer, Token, ToolCall, ToolResult
from assistant.training import Evaluation
from assistant.workspace import ACTIVE, NO_ADAPTER, Workspace
from ingest.pipeline import extracted_text

MODES = ("RAG", "Agent")


class Session:
    """One browser session's chat: what it shows, what the model remembers, and its stop switch."""

    def __init__(self, user: str = "", conversation: str | None = None) -> None:
        self.user = user  # the login user ("" without a login): whose conversations these are
        self.conversation = conversation  # the kept conversation's id; None until the first question
        self.messages: list[dict[str, Any]] = []  # the chatbot's messages
        self.history: list[dict[str, str]] = []  # question/answer turns for the model
        self.turns: dict[int, dict[str, Any]] = {}  # chatbot index of an answer -> its turn
        self.stop = threading.Event()
        self.rating: int | None = None  # the answer a correction is being written for

    def __deepcopy__(self, memo: dict[int, Any]) -> Session:  # Gradio may copy state; the stop switch is shared
        import copy

        clone = Session(self.user, self.conversation)
        clone.messages, clone.history = copy.deepcopy(self.messages), copy.deepcopy(self.history)
        clone.turns, clone.stop, clone.rating = copy.deepcopy(self.turns), self.stop, self.rating
        return clone


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
    parts = [chips(answer.cited_text(" ⚠"), len(answer.sources)) or "(no answer)"]
    parts += [f"*⚠️ {warning}*" for warning in answer.warnings()]
    warning = relevance_warning(answer, min_score)
    if warning:
        parts.append(f"*{warning}*")
    if answer.stopped_note():
        parts.append(f"*({answer.stopped_note()})*")
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
    """Answer ``message`` in this session, streaming, and keep the turn in the session's conversation.

    Yields:
        (the chat's messages, the session, the status line, the input box's new text).
    """
    message = (message or "").strip()
    if not message:
        yield session.messages, session, "Type a question first.", ""
        return
    limit = ws.config.max_question_chars
    if limit is not None and len(message) > limit:  # refused before it reaches the chat; the text stays to shorten
        yield (
            session.messages,
            session,
            f"⚠️ The question is {len(message):,} characters, over the {limit:,} limit: shorten it, "
            "or add long text as a document.",
            message,
        )
        return
    session.stop.clear()
    session.messages.append({"role": "user", "content": message})
    reply: dict[str, Any] = {"role": "assistant", "content": ""}
    session.messages.append(reply)
    yield session.messages, session, "…", ""
    pinned, label = ws.pin(adapter)  # the active adapter is read once per question
    try:
        events = ws.respond(message, mode=mode.lower(), adapter=pinned, history=session.history)
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
        reply["content"] = f"⚠️ {explain(e)}"
        yield session.messages, session, "", ""
        return
    if answer is None:  # stopped
        reply["content"] += " *(stopped)*"
        _keep(ws, session, message, reply["content"], reply["content"], {"stopped": True})
        yield session.messages, session, "Stopped: the answer above is incomplete.", ""
        return
    reply["content"] = render_answer(answer, ws.config.min_score)
    turn = {
        "question": message,
        "answer": answer.text,
        "sources": [{"id": h.id, "text": h.text, "metadata": h.metadata} for h in answer.sources],
        "adapter": label,
    }
    session.turns[len(session.messages) - 1] = turn
    session.history += [{"role": "user", "content": message}, {"role": "assistant", "content": answer.text}]
    session.history = session.history[-2 * ws.app.history_turns :]
    _keep(ws, session, message, answer.text, reply["content"], {"turn": turn})
    budget = ws.config.context_window - ws.config.answer_tokens
    yield session.messages, session, render_status(answer, budget, label), ""


def _keep(ws: Workspace, session: Session, question: str, answer: str, shown: str, data: dict[str, Any]) -> None:
    """Store one answered turn in the session's conversation (started with its first question)."""
    store = ws.conversations
    if session.conversation is None:
        session.conversation = store.create(session.user)
    store.append(
        session.user,
        session.conversation,
        [Message("user", question, question), Message("assistant", answer, shown, data)],
    )


# conversations --------------------------------------------------------------------------


def open_conversation(ws: Workspace, user: str, conversation: str) -> Session:
    """A session showing ``user``'s kept conversation, its last turns remembered by the model."""
    kept = ws.conversations.get(user, conversation)
    session = Session(user, conversation)
    for m in kept.messages:
        session.messages.append({"role": m.role, "content": m.shown or m.content})
        if m.role == "assistant" and "turn" in m.data:
            session.turns[len(session.messages) - 1] = m.data["turn"]
        if not m.data.get("stopped"):
            session.history.append({"role": m.role, "content": m.content})
    session.history = [m for m in session.history if m["content"]][-2 * ws.app.history_turns :]
    return session


def conversation_choices(ws: Workspace, user: str, search: str = "") -> list[tuple[str, str]]:
    """The sidebar's list: (title, id) of ``user``'s conversations, newest first, those matching ``search``."""
    return [(title, cid) for cid, title in ws.conversations.titles(user, search)]


def last_session(ws: Workspace, user: str, remembered: str | None = None) -> Session:
    """What a page load shows.

    The conversation this browser had open (``remembered``) when it is still ``user``'s; else, behind a
    login, the user's most recent one; else a new conversation (without a login, each browser starts its own).
    """
    titles = dict(ws.conversations.titles(user))
    if remembered and remembered in titles:
        return open_conversation(ws, user, remembered)
    last = ws.conversations.last(user) if user else None
    return open_conversation(ws, user, last) if last else Session(user)


def rename_conversation(ws: Workspace, session: Session, title: str) -> str:
    if session.conversation is None:
        raise UserError("ask a question first: a new conversation is kept from its first question")
    ws.conversations.rename(session.user, session.conversation, title)
    return f"Renamed to **{' '.join(title.split())}**."


def delete_conversation(ws: Workspace, session: Session) -> Session:
    """Delete the session's conversation; returns a new, empty session."""
    if session.conversation is not None:
        ws.conversations.delete(session.user, session.conversation)
    session.stop.set()
    return Session(session.user)


def export_conversation(ws: Workspace, session: Session, kind: str) -> str:
    """The session's conversation written as ``md`` or ``json`` to a temporary file; returns its path."""
    if session.conversation is None:
        raise UserError("nothing to export yet: ask a question first")
    kept = ws.conversations.get(session.user, session.conversation)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", kept.title).strip("-")[:60] or "conversation"
    path = Path(tempfile.mkdtemp(prefix="ragtune-export-")) / f"{name}.{kind}"
    path.write_text(kept.markdown() if kind == "md" else kept.as_json(), encoding="utf-8")
    return str(path)


def _drop_last_turn(ws: Workspace, session: Session) -> tuple[Session, str]:
    """The session without its last question and answer (also in the store), and that question."""
    if session.conversation is None:
        raise UserError("there is no question to redo yet")
    kept = ws.conversations.get(session.user, session.conversation)
    users = [n for n, m in enumerate(kept.messages) if m.role == "user"]
    if not users:
        raise UserError("there is no question to redo yet")
    question = kept.messages[users[-1]].content
    ws.conversations.truncate(session.user, session.conversation, users[-1])
    session.stop.set()
    return open_conversation(ws, session.user, session.conversation), question


def regenerate(
    ws: Workspace, session: Session, mode: str = "RAG", adapter: str = ACTIVE
) -> Iterator[tuple[list[dict[str, Any]], Session, str, str]]:
    """Answer the last question again, in place of its answer."""
    fresh, question = _drop_last_turn(ws, session)
    yield from chat(ws, fresh, question, mode, adapter)


def edit_last(ws: Workspace, session: Session) -> tuple[list[dict[str, Any]], Session, str, str]:
    """Take the last question back into the input box (its answer removed) to edit and send again."""
    fresh, question = _drop_last_turn(ws, session)
    return fresh.messages, fresh, "Edit the question and send it again.", question


_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def example_questions(ws: Workspace, count: int = 3) -> list[str]:
    """Questions for an empty chat, from the collection's own documents: their first headings or sentences."""
    out: list[str] = []
    for record in ws.documents()[:12]:
        if Path(record.path).stem.upper() in ("LICENSE", "COPYING", "NOTICE"):
            continue
        try:
            text = extracted_text(ws.ingest, record.sha256)
        except Exception:  # a document whose text is not kept: no example from it
            continue
        stem = Path(record.path).stem.lower()
        headings = [h.strip() for h in _HEADING.findall(text) if h.strip().lower() != stem]
        if headings:
            topic = headings[0]
        else:
            body = " ".join(line for line in text.splitlines() if not _HEADING.match(line))
            first = re.split(r"(?<=[.!?])\s", " ".join(body.split()), maxsplit=1)[0]
            topic = " ".join(first.split()[:8]).rstrip(".,;:!?")
        if 3 <= len(topic) <= 80 and "|" not in topic:
            question = f"What does {Path(record.path).name} say about “{topic}”?"
            if question not in out:
                out.append(question)
        if len(out) == count:
            break
    return out


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


def adapter_choices(ws: Workspace) -> list[tuple[str, str]]:
    """The model picker's choices: the active adapter, the base model, every registered adapter."""
    return [
        (ws.adapter_label(ACTIVE), ACTIVE),
        ("none (base model)", NO_ADAPTER),
        *((n, n) for n in ws.adapter_names()),
    ]


def active_state(ws: Workspace) -> str:
    """The line beside the model picker: which adapter is active and its before/after RAG F1."""
    name = ws.active_adapter()
    if not name:
        return "Active: **base model** (no adapter)"
    try:
        meta = next(a.metadata for a in ws.adapters() if a.name == name)
    except StopIteration:
        return f"Active: **{name}**"
    change = Evaluation(meta.get("evaluation") or {}).rag_f1_change()
    return f"Active: **{name}**" + (f" · RAG F1 base → tuned: {change}" if change else " · not evaluated")


def on_like(ws: Workspace, state: Session, data: Any) -> str:
    index = data.index[0] if isinstance(data.index, list | tuple) else data.index
    return rate(ws, state, int(index), bool(data.liked))


def _user(request: Any) -> str:
    return (getattr(request, "username", None) or "") if request is not None else ""


def build(ws: Workspace) -> tuple[Any, Any, Any]:
    """The tab's components and events.

    Returns:
        The model picker and the active-adapter line (other tabs refresh both), and the page-load
        event as (handler, inputs, outputs).
    """
    import gradio as gr

    session = gr.State(lambda: Session(), time_to_live=6 * 3600)
    # the conversation this browser has open, kept in the browser so a reload (or a restart) reopens it
    remembered = gr.BrowserState("", storage_key="ragtune-conversation", secret=f"ragtune:{ws.home.resolve()}")
    with gr.Row():
        with gr.Column(scale=1, min_width=220, elem_id="conversations-panel"):
            new_button = gr.Button("+ New conversation", elem_id="new-conversation", size="sm")
            search = gr.Textbox(placeholder="Search conversations…", show_label=False, elem_id="conversation-search")
            listing = gr.Radio([], label="Conversations", elem_id="conversations")
            title = gr.Textbox(placeholder="New title", show_label=False, elem_id="conversation-title")
            with gr.Row():
                rename_button = gr.Button("Rename", size="sm", elem_id="rename-conversation")
                delete_button = gr.Button("Delete", size="sm", variant="stop", elem_id="delete-conversation")
            confirm_delete = gr.Button(
                "Really delete this conversation", size="sm", variant="stop", visible=False, elem_id="confirm-delete"
            )
            with gr.Row():
                export_md = gr.Button("Export .md", size="sm", elem_id="export-md")
                export_json = gr.Button("Export .json", size="sm", elem_id="export-json")
            exported = gr.File(label="Export", visible=False, elem_id="exported")
            side_notice = gr.Markdown(elem_id="conversation-notice")
        with gr.Column(scale=4):
            with gr.Row():
                mode = gr.Radio(list(MODES), value="RAG", label="Mode", scale=1)
                adapter = gr.Dropdown(adapter_choices(ws), value=ACTIVE, label="Model", scale=1, elem_id="model")
                active = gr.Markdown(active_state(ws), elem_id="active-adapter")
            chatbot = gr.Chatbot(label="Chat", height=480, elem_id="chat", feedback_options=("Like", "Dislike"))
            examples = gr.Dataset(components=[gr.Textbox(visible=False)], samples=[], label="Try", elem_id="examples")
            question = gr.Textbox(placeholder="Ask about your documents…", show_label=False, elem_id="question")
            with gr.Row():
                send = gr.Button("Send", variant="primary", elem_id="send")
                stop_button = gr.Button("Stop", elem_id="stop")
                regenerate_button = gr.Button("Regenerate", elem_id="regenerate")
                edit_button = gr.Button("Edit last question", elem_id="edit-last")
            status = gr.Markdown(elem_id="chat-status")
            with gr.Row():
                correction = gr.Textbox(label="Correction for the disliked answer", scale=4)
                save_correction = gr.Button("Save correction", scale=1)
            notice = gr.Markdown(elem_id="feedback-notice")

    def examples_update(state: Session) -> Any:
        found = example_questions(ws) if not state.messages else []
        return gr.Dataset(samples=[[q] for q in found], visible=bool(found))

    def listing_update(state: Session, text: str = "") -> Any:
        choices = conversation_choices(ws, state.user, text)
        empty = "No match." if text.strip() else "None yet: your first question starts one."
        return gr.update(choices=choices, value=state.conversation, info="" if choices else empty)

    def sidebar(state: Session, text: str = "") -> Any:
        return listing_update(state, text), state.conversation or "", gr.Dataset(visible=not state.messages)

    def load(kept: str, request: gr.Request) -> Any:
        state = last_session(ws, _user(request), kept)
        return state.messages, state, listing_update(state), examples_update(state), state.conversation or ""

    def pick(cid: str | None, state: Session, request: gr.Request) -> Any:
        if not cid or cid == state.conversation:
            return gr.skip(), gr.skip(), "", gr.skip(), gr.skip()
        state.stop.set()
        opened = open_conversation(ws, _user(request), cid)
        return opened.messages, opened, "", cid, gr.Dataset(visible=not opened.messages)

    def new(state: Session, request: gr.Request) -> Any:
        state.stop.set()
        fresh = Session(_user(request))
        return fresh.messages, fresh, listing_update(fresh), "", "", examples_update(fresh)

    def ask(state: Session, text: str, chosen_mode: str, chosen: str, request: gr.Request) -> Iterator[Any]:
        state.user = _user(request)
        yield from chat(ws, state, text, chosen_mode, chosen)

    def again(state: Session, chosen_mode: str, chosen: str, request: gr.Request) -> Iterator[Any]:
        state.user = _user(request)
        yield from regenerate(ws, state, chosen_mode, chosen)

    def edit(state: Session, request: gr.Request) -> Any:
        state.user = _user(request)
        return edit_last(ws, state)

    def rename(state: Session, text: str) -> Any:
        return rename_conversation(ws, state, text), listing_update(state), ""

    def delete(state: Session) -> Any:
        fresh = delete_conversation(ws, state)
        return (
            fresh.messages,
            fresh,
            listing_update(fresh),
            "Deleted.",
            gr.update(visible=False),
            "",
            examples_update(fresh),
        )

    def export(state: Session, kind: str) -> Any:
        return gr.update(value=export_conversation(ws, state, kind), visible=True), ""

    for handler in (load, pick, new, ask, again, edit):  # Gradio finds gr.Request by its annotation, resolved here
        handler.__annotations__["request"] = gr.Request
    run = guard(ask, 2, 4)
    inputs = [session, question, mode, adapter]
    outputs = [chatbot, session, status, question]
    sent = send.click(run, inputs, outputs, api_name="chat", concurrency_id="model", show_progress="minimal")
    submitted = question.submit(
        run, inputs, outputs, api_visibility="private", concurrency_id="model", show_progress="minimal"
    )
    redone = regenerate_button.click(
        guard(again, 2, 4),
        [session, mode, adapter],
        outputs,
        api_visibility="private",
        concurrency_id="model",
        show_progress="minimal",
    )
    for event in (sent, submitted, redone):
        event.then(sidebar, [session, search], [listing, remembered, examples], api_visibility="private", queue=False)
    stop_button.click(stop, [session], None, cancels=[sent, submitted, redone], queue=False, api_visibility="private")
    edit_button.click(guard(edit, 2, 4), [session], outputs, api_visibility="private", queue=False)
    fresh_outputs = [chatbot, session, listing, status, remembered, examples]
    chatbot.clear(new, [session], fresh_outputs, queue=False, api_visibility="private")
    new_button.click(new, [session], fresh_outputs, queue=False, api_visibility="private")
    listing.input(
        guard(pick, 2, 5),
        [listing, session],
        [chatbot, session, side_notice, remembered, examples],
        api_visibility="private",
    )
    search.change(listing_update, [session, search], [listing], api_visibility="private", queue=False)
    rename_button.click(guard(rename, 0, 3), [session, title], [side_notice, listing, title], api_visibility="private")
    delete_button.click(lambda: gr.update(visible=True), None, [confirm_delete], api_visibility="private", queue=False)
    confirm_delete.click(
        guard(delete, 3, 7),
        [session],
        [chatbot, session, listing, side_notice, confirm_delete, remembered, examples],
        api_visibility="private",
    )
    export_md.click(
        guard(lambda state: export(state, "md"), 1, 2), [session], [exported, side_notice], api_visibility="private"
    )
    export_json.click(
        guard(lambda state: export(state, "json"), 1, 2), [session], [exported, side_notice], api_visibility="private"
    )
    examples.click(lambda sample: sample[0], [examples], [question], api_visibility="private", queue=False)

    def liked(state: Session, data: Any) -> str:
        return on_like(ws, state, data)

    liked.__annotations__["data"] = gr.LikeData  # Gradio finds LikeData by its annotation, resolved here

    chatbot.like(guard(liked), [session], [notice], api_visibility="private")
    save_correction.click(
        bind(correct, ws, 0, 2), [session, correction], [notice, correction], api_visibility="private"
    )
    page_load = (load, [remembered], [chatbot, session, listing, examples, remembered])
    return adapter, active, page_load
