"""The Adapters tab: every adapter with its metrics; activate, use the base model, roll back, delete."""

from __future__ import annotations

from typing import Any

from assistant.app.chat import active_state, adapter_choices
from assistant.app.common import UserError, bind
from assistant.training import Evaluation
from assistant.workspace import NO_ADAPTER, Workspace


def _or_dash(value: Any) -> Any:
    return "—" if value is None or value == "" else value


def adapter_rows(ws: Workspace) -> list[list[Any]]:
    rows = []
    for a in ws.adapters():
        meta = a.metadata
        metrics = meta.get("metrics", {})
        evaluation = Evaluation(meta.get("evaluation") or {})
        ppl = evaluation.data.get("perplexity", {})
        rows.append(
            [
                ("● " if a.active else "") + a.name,
                str(meta.get("created", ""))[:16].replace("T", " "),
                a.base_model,
                _or_dash(metrics.get("steps")),
                _or_dash(metrics.get("val_loss")),
                evaluation.rag_f1_change() or "not evaluated",
                f"×{ppl['ratio']:.3f}" if ppl.get("ratio") else "—",
            ]
        )
    return rows


def adapter_warning(ws: Workspace, name: str) -> str:
    """Why activating ``name`` needs a second thought ("" when it scored at least as well as the base model)."""
    meta = next((a.metadata for a in ws.adapters() if a.name == name), None)
    below = Evaluation((meta or {}).get("evaluation") or {}).below_base()
    if below:
        return (
            f"⚠️ **{name}** scored below the base model on the test split: RAG F1 {below[0]:.1f} against "
            f"{below[1]:.1f} for the base model. Answers may get worse. Press **Activate anyway** to use it."
        )
    return ""


def _after(ws: Workspace, message: str, confirm: bool = False) -> Any:
    import gradio as gr

    names = ws.adapter_names()
    return (
        message,
        adapter_rows(ws),
        gr.update(choices=names) if confirm else gr.update(choices=names, value=None),
        gr.update(choices=adapter_choices(ws)),
        active_state(ws),
        gr.update(visible=confirm),
    )


def refresh(ws: Workspace) -> Any:
    return _after(ws, "")


def activate(ws: Workspace, name: str | None, confirmed: bool = False) -> Any:
    """Activate ``name``; one that scored below the base model is activated only once ``confirmed``."""
    if not name:
        raise UserError("pick an adapter first")
    warning = adapter_warning(ws, name)
    if warning and not confirmed:
        return _after(ws, warning, confirm=True)
    return _after(ws, f"Active adapter: **{ws.activate(name)}**.")


def use_base(ws: Workspace) -> Any:
    ws.activate(NO_ADAPTER)
    return _after(ws, "The assistant uses the base model.")


def roll_back(ws: Workspace) -> Any:
    return _after(ws, f"Rolled back; active: **{ws.rollback()}**.")


def delete(ws: Workspace, name: str | None) -> Any:
    if not name:
        raise UserError("pick an adapter first")
    ws.remove_adapter(name)
    return _after(ws, f"Deleted **{name}**.")


def build(ws: Workspace, tab: Any, model_picker: Any, active: Any) -> None:
    """The tab's components and events.

    ``model_picker`` and ``active`` are the Chat tab's, refreshed after each change that succeeded;
    an error shows in this tab's notice only.
    """
    import gradio as gr

    table = gr.Dataframe(
        headers=["adapter (● active)", "created (UTC)", "base model", "steps", "val loss", "RAG F1", "perplexity"],
        value=lambda: adapter_rows(ws),
        interactive=False,
        wrap=True,
        elem_id="adapters",
    )
    with gr.Row():
        picked = gr.Dropdown(ws.adapter_names(), label="Adapter", scale=3, elem_id="adapter-pick")
        activate_button = gr.Button("Activate", scale=1, elem_id="activate")
        base_button = gr.Button("Use base model", scale=1)
        rollback_button = gr.Button("Roll back", scale=1)
        delete_button = gr.Button("Delete", variant="stop", scale=1, elem_id="delete-adapter")
    confirm_button = gr.Button("Activate anyway", variant="stop", visible=False, elem_id="activate-anyway")
    notice = gr.Markdown(elem_id="adapters-notice")
    outputs = [notice, table, picked, model_picker, active, confirm_button]
    n = len(outputs)
    activate_button.click(
        bind(activate, ws, 0, n), [picked], outputs, api_visibility="private", show_progress_on=[notice]
    )
    confirm_button.click(
        bind(lambda w, name: activate(w, name, True), ws, 0, n),
        [picked],
        outputs,
        api_visibility="private",
        show_progress_on=[notice],
    )
    base_button.click(bind(use_base, ws, 0, n), None, outputs, api_visibility="private", show_progress_on=[notice])
    rollback_button.click(bind(roll_back, ws, 0, n), None, outputs, api_visibility="private", show_progress_on=[notice])
    delete_button.click(bind(delete, ws, 0, n), [picked], outputs, api_visibility="private", show_progress_on=[notice])
    tab.select(bind(refresh, ws, 0, n), None, outputs, api_visibility="private", show_progress_on=[notice])
