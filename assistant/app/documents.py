"""The Documents tab: drop files to ingest them, see the collection, remove or re-ingest files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assistant.app.common import UserError, bind, guard
from assistant.workspace import Upload, Workspace


def _shown_path(ws: Workspace, path: str) -> str:
    """``path`` as the list shows it: relative to the data home when inside it (uploads/NAME), else as it is."""
    try:
        return str(Path(path).resolve().relative_to(ws.home.resolve()))
    except ValueError:
        return path


def document_rows(ws: Workspace) -> list[list[Any]]:
    return [
        [
            Path(r.path).name,
            len(r.chunk_ids),
            round(r.size / 1024, 1),
            r.ingested_at[:16].replace("T", " "),
            _shown_path(ws, r.path),
        ]
        for r in ws.documents()
    ]


def report_rows(report: Any) -> list[list[Any]]:
    return [[Path(f.path).name, f.status, f.chunks, f.reason] for f in report.files]


def add_documents(
    ws: Workspace, files: list[Any] | None, progress: Callable[..., Any] | None = None
) -> tuple[list[list[Any]], str, list[list[Any]]]:
    """Ingest uploaded files; returns the per-file report, a summary and the document list.

    ``progress`` (Gradio's) is told at once, before each file is read, and after each batch of chunks is embedded.
    """
    if not files:
        return [], "Drop or choose files to add.", document_rows(ws)
    uploads = [_upload(f) for f in files]
    where = {"file": 0, "files": len(uploads), "name": ""}

    def tell(fraction: float, text: str) -> None:
        if progress is not None:
            progress(fraction, desc=text)

    def on_file(done: int, total: int, path: str) -> None:
        where.update(file=done, files=max(total, 1), name=Path(path).name)
        tell((done + 0.02) / max(total, 1), f"file {done + 1} of {total}: reading {Path(path).name}")

    def on_chunks(done: int, total: int) -> None:
        files_done = where["file"] / where["files"]  # type: ignore[operator]
        share = (done / max(total, 1)) / where["files"]  # type: ignore[operator]
        tell(
            min(files_done + share, 1.0),
            f"file {where['file'] + 1} of {where['files']}: {where['name']} · "  # type: ignore[operator]
            f"embedded {done} of {total} chunks",
        )

    tell(0.01, f"receiving {len(uploads)} file(s)")
    report = ws.add_documents(uploads, on_file, on_chunks)
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


def confirm_removal(ws: Workspace, paths: list[str] | None) -> str:
    """What Remove asks before anything is removed."""
    if not paths:
        raise UserError("choose documents to remove first")
    names = ", ".join(Path(p).name for p in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return (
        f"Remove **{names}** from the collection? Its chunks go; an uploaded copy is deleted. Press **Really remove**."
    )


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


def _paths(ws: Workspace) -> list[str]:
    return [r.path for r in ws.documents()]


def _add(ws: Workspace, items: list[Any] | None, progress: Any = None) -> Any:
    import gradio as gr

    rows, text, docs = add_documents(ws, items, progress)
    return rows, text, docs, gr.update(choices=_paths(ws), value=[]), None


def _ask_removal(ws: Workspace, paths: list[str] | None) -> Any:
    import gradio as gr

    return confirm_removal(ws, paths), gr.update(visible=True)


def _remove(ws: Workspace, paths: list[str] | None) -> Any:
    import gradio as gr

    text, docs = remove_documents(ws, paths)
    return text, docs, gr.update(choices=_paths(ws), value=[]), gr.update(visible=False)


def _again(ws: Workspace, paths: list[str] | None) -> Any:
    import gradio as gr

    rows, text, docs = reingest(ws, paths)
    return rows, text, docs, gr.update(choices=_paths(ws), value=[])


def _listing(ws: Workspace) -> Any:
    import gradio as gr

    return gr.skip(), document_rows(ws), gr.update(choices=_paths(ws))


def build(ws: Workspace, tab: Any) -> None:
    """The tab's components and events."""
    import gradio as gr

    files = gr.File(
        file_count="multiple",
        label="Drop documents here (pdf, docx, pptx, html, md, txt, csv, json, epub…)",
        elem_id="documents-upload",
    )
    summary = gr.Markdown("Drop files above to add them to the collection.", elem_id="ingest-summary", min_height=60)
    report = gr.Dataframe(
        headers=["file", "status", "chunks", "reason"],
        label="Last ingest",
        interactive=False,
        wrap=True,
        column_widths=["25%", "12%", "10%", "53%"],
        elem_id="ingest-report",
    )
    documents = gr.Dataframe(
        headers=["file", "chunks", "KiB", "ingested (UTC)", "path (uploads: in the data home)"],
        value=lambda: document_rows(ws),
        label="Documents",
        interactive=False,
        wrap=True,
        column_widths=["22%", "8%", "8%", "16%", "46%"],
        elem_id="documents",
    )
    with gr.Row():
        chosen = gr.Dropdown([], multiselect=True, label="Choose documents", scale=4)
        remove_button = gr.Button("Remove", scale=1, elem_id="remove")
        reingest_button = gr.Button("Re-ingest (all when none chosen)", scale=1)
    really = gr.Button("Really remove", variant="stop", visible=False, elem_id="really-remove")

    def add(items: list[Any] | None, progress: gr.Progress = gr.Progress()) -> Any:  # noqa: B008  (Gradio's idiom)
        return _add(ws, items, progress)

    files.upload(
        guard(add, 1, 5),
        [files],
        [report, summary, documents, chosen, files],
        api_name="add_documents",
        concurrency_id="ingest",
        show_progress_on=[summary],
    )
    remove_button.click(bind(_ask_removal, ws, 0, 2), [chosen], [summary, really], api_visibility="private")
    really.click(bind(_remove, ws, 0, 4), [chosen], [summary, documents, chosen, really], api_visibility="private")
    reingest_button.click(
        bind(_again, ws, 1, 4),
        [chosen],
        [report, summary, documents, chosen],
        api_visibility="private",
        concurrency_id="ingest",
    )
    tab.select(bind(_listing, ws, 0, 3), None, [summary, documents, chosen], api_visibility="private")
