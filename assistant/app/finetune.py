"""The Fine-tune tab: build the dataset, estimate and train in the background with live progress, activate."""

from __future__ import annotations

import dataclasses
import json
import statistics
import threading
import time
from datetime import datetime
from typing import Any

from assistant.app.adapters import adapter_warning
from assistant.app.chat import active_state, adapter_choices
from assistant.app.common import UserError, bind
from assistant.training import Evaluation
from assistant.workspace import Workspace
from finetune.estimate import Estimate, duration
from finetune.train import dataset_hash

STATES = {
    "idle": "No training has run in this app yet.",
    "training": "Training",
    "evaluating": "Training done; evaluating before/after",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Cancelled (a checkpoint was kept: Resume continues it)",
}


def build_dataset(ws: Workspace, feedback: bool) -> str:
    built = ws.build_dataset(feedback)
    return "\n".join([f"**Dataset** `{built.folder}`", *(f"- {line}" for line in built.lines(ws.tune.max_tokens))])


def measured_speed(ws: Workspace) -> float | None:
    """Training tokens/s measured on this machine: the median of the latest runs' steps (None: no run yet)."""
    speeds: list[float] = []
    runs = sorted((ws.home / "runs").glob("*/metrics.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in runs[:3]:
        for line in path.read_text(encoding="utf-8").splitlines()[-50:]:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("tokens_per_s"):
                speeds.append(float(row["tokens_per_s"]))
    return statistics.median(speeds) if speeds else None


_duration = duration

_MEASURED: dict[tuple[Any, ...], Estimate] = {}  # the last measured estimate per dataset and settings
_MEASURING = threading.Lock()


def _measured_key(ws: Workspace) -> tuple[Any, ...] | None:
    """What a measured speed holds for: the dataset's content, the base model, every setting but the run's length."""
    folder = ws.dataset_folder()
    if not (folder / "train.jsonl").exists():
        return None
    tune = dataclasses.replace(ws.tune, epochs=1.0, steps=0, learning_rate=1e-3, name="")
    return (str(folder.resolve()), dataset_hash(folder), ws.config.model, tune)


def render_estimate(estimate: Estimate) -> str:
    """A measured estimate as the tab shows it: one fact a line, the warning apart and in bold."""
    lines = estimate.lines()
    warning = lines.pop() if estimate.over_an_hour else ""
    text = "**Estimate** (measured on this machine):\n" + "\n".join(f"- {line}" for line in lines)
    return text + (f"\n\n**{warning}**" if warning else "")


def measure_training(ws: Workspace, epochs: float, steps: float) -> str:
    """Time a few training steps of the base model on the dataset, then estimate the run (kept for the settings)."""
    key = _measured_key(ws)
    if key is None:
        raise UserError("no dataset yet: press Build dataset first")
    if not _MEASURING.acquire(blocking=False):
        raise UserError("an estimate is being measured already: it shows here when done")
    try:
        estimate = ws.estimate_training(epochs=float(epochs or ws.tune.epochs), steps=int(steps or 0))
    finally:
        _MEASURING.release()
    _MEASURED[key] = estimate
    return render_estimate(estimate)


def training_estimate(ws: Workspace, epochs: float, steps: float) -> str:
    """How long training with these settings would take here, from the dataset and this machine's measured speed.

    Over an hour comes with a warning and what to change.
    """
    report_path = ws.dataset_folder() / "report.json"
    if not report_path.exists():
        return "No dataset yet: press **Build dataset**; the estimate follows."
    report = json.loads(report_path.read_text(encoding="utf-8"))
    examples, tokens = report["splits"]["train"], report["tokens"]["train"]
    if not examples:
        return "The dataset has no training examples."
    measured = _MEASURED.get(_measured_key(ws) or ())
    if measured is not None:
        return render_estimate(measured.scheduled(float(epochs or 0) or ws.tune.epochs, int(steps or 0)))
    tune = ws.tune
    if steps and int(steps) > 0:
        seen = int(steps) * tune.batch_size * tune.grad_accum
        passes = seen / examples
        what = f"{int(steps)} steps × {tune.batch_size * tune.grad_accum} examples = {seen:,} examples"
    else:
        passes = float(epochs or 0)
        what = f"{examples:,} examples × {passes:g} epochs"
    total = tokens * passes
    line = f"**Estimate:** {what}, about {total:,.0f} tokens"
    speed = measured_speed(ws)
    if speed is None:
        return line + (
            ". No run has been measured on this machine yet: press **Estimate time** to time a few training steps here."
        )
    seconds = total / speed
    line += (
        f"; at {speed:,.0f} tokens/s (earlier runs here) about **{_duration(seconds)}**, plus loading and "
        "evaluation. **Estimate time** measures the current settings."
    )
    if seconds > 3600:
        line += "\n\n**⚠️ Over an hour: lower Epochs, or set Steps, for a quicker first adapter.**"
    return line


def start_training(ws: Workspace, name: str, epochs: float, steps: float, learning_rate: float, activate: bool) -> str:
    name = (name or "").strip() or datetime.now().strftime("finetune-%Y%m%d-%H%M%S")
    if not (ws.dataset_folder() / "train.jsonl").exists():
        raise UserError("no dataset yet: press Build dataset first")
    ws.start_training(name, activate=activate, epochs=float(epochs), steps=int(steps or 0), learning_rate=learning_rate)
    _SEEN.pop(name, None)
    return f"Started training **{name}**: loading the model, the first step follows."


def resume_training(ws: Workspace) -> str:
    status = ws.job.status()
    if status.state != "cancelled":
        raise UserError("only a cancelled run can be resumed")
    ws.start_training(status.name, resume=True)
    return f"Resumed **{status.name}**."


def cancel_training(ws: Workspace) -> str:
    return "Cancelling: the run saves a checkpoint first." if ws.job.cancel() else "No training is running."


STALE = ("Started training", "Resumed", "Cancelling")


def clear_stale(ws: Workspace, notice: str) -> Any:
    """The notice under the buttons: one about a job that has since ended is cleared."""
    import gradio as gr

    if notice and notice.startswith(STALE) and not ws.job.status().running:
        return ""
    return gr.skip()


_SEEN: dict[str, dict[str, tuple[int, float]]] = {}  # run -> first step / evaluation seen by the app, with its time


def _eta(name: str, step: int, total: int) -> str:
    """Time left, from the steps this app has watched the run take."""
    seen = _SEEN.setdefault(name, {})
    first = seen.setdefault("step", (step, time.monotonic()))
    done, elapsed = step - first[0], time.monotonic() - first[1]
    if done <= 0 or elapsed <= 0:
        return "time left: measuring…"
    return f"about {_duration((total - step) * elapsed / done)} left"


def training_view(ws: Workspace) -> tuple[str, str, Any, str, bool]:
    """The training panel: state, progress bar, loss curve, before/after metrics, and whether Activate shows."""
    status = ws.job.status()
    head = STATES[status.state] if not status.name else f"**{status.name}**: {STATES[status.state]}"
    if status.state == "cancelled":
        head = f"**{status.name}**: cancelled at step {status.step} of {status.total_steps}, resumable (press Resume)."
    elif status.state == "failed" and status.message:
        head += f"\n\n```\n{status.message}\n```"
    elif status.state == "training" and not status.total_steps:
        head += ": loading the model and data, the first step follows…"
    bar = ""
    if status.state == "evaluating":
        since = _SEEN.setdefault(status.name, {}).setdefault("evaluating", (0, time.monotonic()))[1]
        bar = (
            '<progress style="width:100%"></progress>'
            f"<div>evaluating base and adapter on the test split · {_duration(time.monotonic() - since)} so far</div>"
        )
    elif status.total_steps:
        percent = 100 * status.step / status.total_steps
        last: dict[str, Any] = next((r for r in reversed(status.rows) if "loss" in r), {})
        left = _eta(status.name, status.step, status.total_steps) if status.state == "training" else ""
        bar = (
            f'<progress value="{status.step}" max="{status.total_steps}" style="width:100%"></progress>'
            f"<div>step {status.step} of {status.total_steps} ({percent:.0f}%) · loss {last.get('loss', 0):.3f}"
            f" · {last.get('tokens_per_s', 0):.0f} tokens/s" + (f" · {left}" if left else "") + "</div>"
        )
    result = ""
    if status.adapter:
        evaluation = Evaluation(status.adapter.get("evaluation") or {})
        metrics = status.adapter.get("metrics") or {}
        result = f"val loss {metrics.get('val_loss')} · {metrics.get('steps')} steps\n"
        if evaluation.data:
            result += "\n" + "\n".join(evaluation.lines())
        result = f"```\n{result}\n```"
    can_activate = status.state == "completed"
    return head, bar, loss_frame(status.rows), result, can_activate


def loss_frame(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    points = [{"step": int(r["step"]), "loss": float(r["loss"]), "series": "train"} for r in rows if "loss" in r]
    points += [
        {"step": int(r["step"]), "loss": float(r["val_loss"]), "series": "validation"} for r in rows if "val_loss" in r
    ]
    frame = pd.DataFrame(points, columns=["step", "loss", "series"]).astype({"step": "int64", "loss": "float64"})
    return frame.sort_values(["series", "step"], kind="stable").reset_index(drop=True)


def activate_trained(ws: Workspace, confirmed: bool = False) -> tuple[str, Any, str, Any]:
    """Activate the adapter the finished run made; one that scored below the base model only once ``confirmed``.

    Returns:
        This tab's notice, the Chat tab's model picker and active-adapter line, the "Activate anyway" button.
    """
    import gradio as gr

    status = ws.job.status()
    if status.state != "completed":
        raise UserError("no finished training to activate")
    warning = adapter_warning(ws, status.name)
    if warning and not confirmed:
        message = warning
    else:
        message = f"Active adapter: **{ws.activate(status.name)}**. The chat uses it from the next question."
    ask = bool(warning) and not confirmed
    return message, gr.update(choices=adapter_choices(ws)), active_state(ws), gr.update(visible=ask)


def _view(ws: Workspace, notice: str = "") -> Any:
    import gradio as gr

    head, bar, frame, result, can_activate = training_view(ws)
    confirm = gr.skip() if can_activate else gr.update(visible=False)  # "Activate anyway" only for a finished run
    plot = gr.update(value=frame, visible=not frame.empty)  # no empty axes before a run has logged a step
    return head, bar, plot, result, gr.update(visible=can_activate), confirm, clear_stale(ws, notice)


def build(ws: Workspace, tab: Any, model_picker: Any, active: Any) -> None:
    """The tab's components and events.

    ``model_picker`` and ``active`` are the Chat tab's, refreshed when an adapter is activated here.
    """
    import gradio as gr

    gr.Markdown(
        "Build training data from the current documents (and your rated answers), train a LoRA "
        "adapter in the background, compare before/after, then activate it."
    )
    with gr.Row():
        use_feedback = gr.Checkbox(True, label="Include rated chat answers")
        build_button = gr.Button("Build dataset")
    dataset_report = gr.Markdown(elem_id="dataset-report")
    with gr.Row():
        run_name = gr.Textbox(label="Adapter name", placeholder="finetune-DATE-TIME")
        epochs = gr.Number(ws.tune.epochs, label="Epochs")
        max_steps = gr.Number(ws.tune.steps, label="Steps (0: by epochs)", precision=0)
        learning_rate = gr.Number(ws.tune.learning_rate, label="Learning rate")
        activate_after = gr.Checkbox(False, label="Activate when done")
    estimate = gr.Markdown(elem_id="training-estimate")
    with gr.Row():
        estimate_button = gr.Button("Estimate time", elem_id="estimate-training")
        train_button = gr.Button("Train", variant="primary")
        cancel_button = gr.Button("Cancel")
        resume_button = gr.Button("Resume")
    job_state = gr.Markdown(elem_id="job-state")
    job_bar = gr.HTML()
    loss_plot = gr.ScatterPlot(
        x="step", y="loss", color="series", label="Loss (train and validation)", height=260, visible=False
    )
    job_result = gr.Markdown()
    with gr.Row():
        activate_button = gr.Button("Activate this adapter", visible=False, elem_id="activate-trained")
        confirm_button = gr.Button("Activate anyway", variant="stop", visible=False, elem_id="activate-trained-anyway")
    job_notice = gr.Markdown(elem_id="job-notice")
    timer = gr.Timer(2.0, active=True)

    panel = [job_state, job_bar, loss_plot, job_result, activate_button, confirm_button, job_notice]
    view = bind(_view, ws, 6, len(panel))
    timer.tick(view, [job_notice], panel, api_visibility="private", show_progress="hidden", queue=False)
    tab.select(view, [job_notice], panel, api_visibility="private")
    guess = bind(training_estimate, ws)
    tab.select(guess, [epochs, max_steps], [estimate], api_visibility="private")
    for field in (epochs, max_steps):
        field.change(guess, [epochs, max_steps], [estimate], api_visibility="private", queue=False)
    build_button.click(bind(build_dataset, ws), [use_feedback], [dataset_report], api_visibility="private").then(
        guess, [epochs, max_steps], [estimate], api_visibility="private"
    )
    estimate_button.click(bind(measure_training, ws), [epochs, max_steps], [estimate], api_visibility="private")
    train_button.click(
        bind(start_training, ws),
        [run_name, epochs, max_steps, learning_rate, activate_after],
        [job_notice],
        api_visibility="private",
    )
    cancel_button.click(bind(cancel_training, ws), None, [job_notice], api_visibility="private")
    resume_button.click(bind(resume_training, ws), None, [job_notice], api_visibility="private")
    activated = [job_notice, model_picker, active, confirm_button]
    activate_button.click(bind(activate_trained, ws, 0, 4), None, activated, api_visibility="private")
    confirm_button.click(bind(lambda w: activate_trained(w, True), ws, 0, 4), None, activated, api_visibility="private")
