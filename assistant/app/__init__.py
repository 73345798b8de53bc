"""The browser app: Chat, Documents, Fine-tune, Compare and Adapters tabs over one :class:`Workspace`.

One module per tab; each holds plain handler functions of the workspace (what
the tests call) and a ``build`` that lays out its components. ``create_app``
builds the Blocks without starting a server; ``launch`` serves it. Gradio is
imported only when the app is built.
"""

from __future__ import annotations

import asyncio
import html
import os
from collections.abc import Awaitable, Callable
from typing import Any

from assistant.app.adapters import activate, adapter_rows, adapter_warning
from assistant.app.adapters import build as build_adapters
from assistant.app.chat import (
    Session,
    active_state,
    adapter_choices,
    chat,
    clear,
    conversation_choices,
    correct,
    delete_conversation,
    edit_last,
    example_questions,
    export_conversation,
    last_session,
    open_conversation,
    rate,
    regenerate,
    rename_conversation,
    render_answer,
    render_status,
    stop,
)
from assistant.app.chat import build as build_chat
from assistant.app.common import UserError, render_sources
from assistant.app.compare import ARMS, compare
from assistant.app.compare import build as build_compare
from assistant.app.documents import add_documents, confirm_removal, document_rows, reingest, remove_documents
from assistant.app.documents import build as build_documents
from assistant.app.finetune import (
    activate_trained,
    build_dataset,
    cancel_training,
    loss_frame,
    measure_training,
    render_estimate,
    resume_training,
    start_training,
    training_estimate,
    training_view,
)
from assistant.app.finetune import build as build_finetune
from assistant.app.logins import USERS_FILE, Logins, add_user, remove_user
from assistant.workspace import Workspace

__all__ = [
    "ARMS",
    "USERS_FILE",
    "Logins",
    "Session",
    "UserError",
    "activate",
    "activate_trained",
    "active_state",
    "adapter_choices",
    "adapter_rows",
    "adapter_warning",
    "add_documents",
    "add_user",
    "build_dataset",
    "cancel_training",
    "chat",
    "clear",
    "compare",
    "confirm_removal",
    "conversation_choices",
    "correct",
    "create_app",
    "delete_conversation",
    "document_rows",
    "edit_last",
    "example_questions",
    "export_conversation",
    "last_session",
    "launch",
    "logins",
    "loss_frame",
    "measure_training",
    "open_conversation",
    "rate",
    "regenerate",
    "reingest",
    "remove_documents",
    "remove_user",
    "rename_conversation",
    "render_answer",
    "render_estimate",
    "render_sources",
    "render_status",
    "resume_training",
    "slowed_login",
    "start_training",
    "stop",
    "training_estimate",
    "training_view",
]

CSS = """
details.source { margin: 0.2em 0; }
details.source summary { cursor: pointer; font-size: 0.9em; }
details.source p { font-size: 0.88em; margin: 0.3em 0 0.3em 1em; }
details.source mark { background: #fde68a; padding: 0 0.1em; }
a.cite { display: inline-block; padding: 0 0.35em; margin: 0 0.1em; border-radius: 0.6em; font-size: 0.8em;
  background: #e0e7ff; color: #3730a3; text-decoration: none; cursor: pointer; }
"""

# a [n] chip opens source n of its own answer and scrolls to it
JS = """
() => {
  document.addEventListener("click", (event) => {
    const chip = event.target.closest("a.cite");
    if (!chip) return;
    event.preventDefault();
    const n = (chip.getAttribute("href") || "").split("-").pop();
    let box = chip.parentElement;
    while (box && !box.querySelector("details.source-" + n)) box = box.parentElement;
    const source = box && box.querySelector("details.source-" + n);
    if (source) { source.open = true; source.scrollIntoView({block: "nearest"}); }
  }, true);
}
"""


def create_app(ws: Workspace) -> Any:
    """The Gradio Blocks of the app over ``ws``, not yet serving."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    # uploads Gradio keeps in its cache are deleted after an hour, and when the app stops
    with gr.Blocks(title="ragtune", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(f"## ragtune · {html.escape(ws.config.model)} · collection `{ws.ingest.collection}`")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                model_picker, active, (load, remembered, loaded) = build_chat(ws)
            with gr.Tab("Documents", id="documents") as documents_tab:
                build_documents(ws, documents_tab)
            with gr.Tab("Fine-tune", id="finetune") as finetune_tab:
                build_finetune(ws, finetune_tab, model_picker, active)
            with gr.Tab("Compare", id="compare") as compare_tab:
                build_compare(ws, compare_tab)
            with gr.Tab("Adapters", id="adapters") as adapters_tab:
                build_adapters(ws, adapters_tab, model_picker, active)
        app.load(load, remembered, loaded, api_visibility="private")
        app.load(
            lambda: (gr.update(choices=adapter_choices(ws)), active_state(ws)),
            None,
            [model_picker, active],
            api_visibility="private",
        )
    return app


def slowed_login(
    login: tuple[str, str] | Callable[[str, str], bool], base_delay: float = 0.5, max_delay: float = 8.0
) -> Callable[..., Any]:
    """The app's login check: each failed attempt in a row waits twice as long as the last (up to ``max_delay`` s).

    Args:
        login: The one (username, password) pair, or a check of several (:meth:`Logins.check`).
        base_delay: Seconds the first failure waits.
        max_delay: The longest wait.

    Guessing passwords gets slow; a right password resets the count. The check and the wait run off
    the event loop, so other users of the app are not held up.
    """
    failures = [0]
    quick = isinstance(login, tuple)  # one plain pair; else hashed passwords (~50 ms each): checked in a thread
    accepts = Logins(None, login).check if isinstance(login, tuple) else login

    async def check(username: str, password: str) -> bool:
        good = accepts(username, password) if quick else await asyncio.to_thread(accepts, username, password)
        if good:
            failures[0] = 0
            return True
        failures[0] += 1
        await asyncio.sleep(min(base_delay * 2 ** (failures[0] - 1), max_delay))
        return False

    return check


def logins(ws: Workspace) -> Logins:
    """Who may log in to the app over ``ws``: ``HOME/users.txt`` and the configured username/password."""
    return Logins(ws.home / USERS_FILE, ws.app.login())


def _auth(ws: Workspace) -> Callable[[str, str], Awaitable[bool]] | None:
    allowed = logins(ws)
    return slowed_login(allowed.check) if allowed else None


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
        auth=_auth(ws),
        max_file_size=f"{ws.app.max_upload_mb:g}mb",
        prevent_thread_lock=not block,
        quiet=quiet,
        ssr_mode=False,
        footer_links=["api"],
        theme=theme,
        css=CSS,
        js=JS,
    )
    return app
