"""Background training for the browser app: one ``ragtune finetune`` child process at a time.

The app runs the very command a user would type, so the browser and the CLI
train the same way. The run is handed the app's resolved settings as one TOML
file (``HOME/jobs/NAME.toml``), so a workspace built in Python trains with
exactly its own settings. Progress is read from the run's ``metrics.jsonl`` and
the adapter registry, and cancelling sends Ctrl-C, which makes the run save a
checkpoint that ``--resume`` (or the Resume button) continues from.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import AssistantError
from assistant.settings import Settings
from finetune.adapters import Registry

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class JobStatus:
    """Where the current (or last) training run stands."""

    name: str = ""
    state: str = "idle"  # idle | training | evaluating | completed | failed | cancelled
    step: int = 0
    total_steps: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl, oldest first
    message: str = ""  # the run's last output lines (its one-line error when it failed)
    adapter: dict[str, Any] | None = None  # adapter.json once registered

    @property
    def running(self) -> bool:
        return self.state in ("training", "evaluating")


class TrainingJob:
    """Start, watch and cancel ``ragtune finetune`` runs for one data home.

    Args:
        home: The data home.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.process: subprocess.Popen[bytes] | None = None
        self.name = ""
        self.cancelled = False
        self.lock = threading.Lock()

    def start(self, settings: Settings, *, resume: bool = False, activate: bool = False) -> None:
        """Start training adapter ``settings.finetune.name`` with exactly ``settings``.

        Raises:
            AssistantError: a run is in progress, the name is unusable or taken.
        """
        name = settings.finetune.name
        with self.lock:
            if self.process is not None and self.process.poll() is None:
                raise AssistantError(f"training {self.name!r} is still running: wait for it, or cancel it first")
            if not _NAME.match(name):
                raise AssistantError(
                    f"adapter name {name!r} is not usable: letters, digits, '.', '_' and '-', up to 64 characters"
                )
            if not resume and Registry(self.home).path(name).exists():
                raise AssistantError(f"an adapter named {name!r} exists: choose another name, or delete it first")
            resolved = self.home / "jobs" / f"{name}.toml"
            if not (resume and resolved.exists()):  # a resumed run keeps the settings it started with
                settings.write(resolved)
            command = [sys.executable, "-m", "assistant", "finetune", "--config", str(resolved)]
            command += ["--resume", name] if resume else ["--name", name]
            if activate:
                command.append("--activate")
            log = self.log_path(name)
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "wb") as out:
                self.process = subprocess.Popen(
                    command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "TQDM_DISABLE": "1"}
                )
            self.name, self.cancelled = name, False

    def log_path(self, name: str) -> Path:
        return self.home / "jobs" / f"{name}.log"

    def cancel(self) -> bool:
        """Ask the running training to stop after saving a checkpoint; False when nothing runs."""
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                return False
            self.cancelled = True
            self.process.send_signal(signal.SIGINT)
            return True

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the current run to end; its exit code (None when there is no run)."""
        return None if self.process is None else self.process.wait(timeout)

    def status(self) -> JobStatus:
        """The current run's state, its metrics so far and, when finished, its adapter's metadata."""
        if not self.name:
            return JobStatus()
        rows = _read_rows(self.home / "runs" / self.name / "metrics.jsonl")
        training = [r for r in rows if "loss" in r]
        status = JobStatus(self.name, rows=rows)
        if training:
            status.step, status.total_steps = training[-1]["step"], training[-1].get("total_steps", 0)
        registry = Registry(self.home)
        registered = registry.path(self.name).exists()
        code = self.process.poll() if self.process is not None else None
        if code is None:
            status.state = "evaluating" if registered else "training"
            return status
        if registered:
            status.adapter = registry.get(self.name).metadata
        status.state = "completed" if code == 0 and registered else "cancelled" if self.cancelled else "failed"
        status.message = _tail(self.log_path(self.name))
        return status


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            continue
    return rows


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip() and "Warning" not in line]
    return "\n".join(kept[-lines:])
