"""What the browser app's sessions share: the documents, one loaded model with its adapters, feedback, training.

Every operation here is the one the CLI runs (ingest, remove, ask, the agent,
dataset build, finetune, the adapter registry); the app only shows them. The
model is loaded once and each adapter is switched in per reply, so a newly
activated adapter answers the next question without a restart.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assistant.config import AppConfig, AssistantConfig
from assistant.errors import AssistantError
from assistant.jobs import TrainingJob
from assistant.tuning import FEEDBACK_FILE, activate_adapter, rollback_adapter
from finetune.config import FinetuneConfig
from ingest.config import IngestConfig
from ingest.pipeline import FileReport, IngestReport

REJECTED_FILE = "feedback-rejected.jsonl"  # thumbs-down answers without a correction: kept for review, never trained on
UPLOADS = "uploads"
BASE = "base"  # the adapter choice that means: no adapter
ACTIVE = "active"

_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+-]+")


def safe_name(name: str) -> str:
    """An uploaded file's name reduced to a plain file name: no folders, no leading dots, no odd characters."""
    base = re.split(r"[\\/]", name)[-1]
    base = _UNSAFE.sub("_", base).strip(" .")
    return base[:200] or "upload"


@dataclass
class Upload:
    """A file the browser sent: its name as the user had it, and where the server keeps it for now."""

    name: str
    path: str


class Workspace:
    """The app's shared state over one data home.

    Args:
        ingest: Where the documents are.
        config: Retrieval and generation settings.
        tune: Fine-tuning settings (dataset name and build options).
        app: Serving settings (upload limit, history length).
        options: The common command-line options, passed on to training runs.
        model: A model already loaded (a :class:`~assistant.model.ChatModel` with ``with_adapter``);
            None: the configured one, loaded on first use.
    """

    def __init__(
        self,
        ingest: IngestConfig,
        config: AssistantConfig,
        tune: FinetuneConfig,
        app: AppConfig,
        options: list[str] | None = None,
        model: Any = None,
    ) -> None:
        self.ingest, self.config, self.tune, self.app = ingest, config, tune, app
        self.home = ingest.home_path
        self.job = TrainingJob(self.home, options or [])
        self._model: Any = model
        self._retriever: tuple[str, Any] | None = None
        self._registry: Any = None
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()

    # models ------------------------------------------------------------------------------

    def base_model(self) -> Any:
        """The base model, loaded on first use and kept."""
        with self._lock:
            if self._model is None:
                from assistant.model import load_model

                self._model = load_model(self.config, self.home, "")
            return self._model

    def model(self, adapter: str = ACTIVE) -> Any:
        """The model answering with ``adapter``: ``active``, ``base`` or a registered adapter's name.

        ``active`` is looked up on every call, so activation takes effect on the next question.
        """
        from finetune.adapters import Registry

        folder = Registry(self.home).resolve("none" if adapter == BASE else adapter)
        return self.base_model().with_adapter(folder)

    def adapter_label(self, adapter: str) -> str:
        """What ``adapter`` stands for now, e.g. ``active (squad)`` or ``base``."""
        from finetune.adapters import Registry

        if adapter == ACTIVE:
            name = Registry(self.home).active()
            return f"active ({name})" if name else "active (none: base model)"
        return adapter

    def adapter_names(self) -> list[str]:
        from finetune.adapters import Registry

        return [a.name for a in Registry(self.home).list()]

    # retrieval ---------------------------------------------------------------------------

    def retriever(self) -> Any:
        """The retriever over the current documents, rebuilt when they changed (here or from the CLI).

        Raises:
            AssistantError: the collection is empty.
        """
        from assistant.retrieval import Retriever
        from ingest.lexical import fingerprint
        from ingest.pipeline import list_documents

        key = fingerprint(i for r in list_documents(self.ingest) for i in r.chunk_ids)
        with self._lock:
            if self._retriever is None or self._retriever[0] != key:
                c = self.config
                retriever = Retriever(
                    self.ingest, candidates=c.candidates, rrf_k=c.rrf_k, min_score=c.min_score, device=c.device
                )
                self._retriever = (key, retriever)
            return self._retriever[1]

    def registry(self) -> Any:
        """The agent's tools; their document search uses the current retriever."""
        if self._registry is None:
            from assistant.tools import build_registry

            self._registry = build_registry(self.ingest, self.retriever, self.config.tools)
        return self._registry

    # documents ---------------------------------------------------------------------------

    def add_documents(
        self, uploads: list[Upload], on_file: Callable[[int, int, str], None] | None = None
    ) -> IngestReport:
        """Keep uploaded files under ``HOME/uploads`` (a same-named file is replaced) and ingest them.

        Names are reduced to plain file names; files over the upload limit are
        refused and reported, the rest are ingested as ``ragtune ingest`` would. An
        upload that cannot be ingested is not kept; one that replaced an ingested
        file puts the earlier version back, so its file and its chunks still match.
        """
        folder = self.home / UPLOADS
        folder.mkdir(parents=True, exist_ok=True)
        limit = int(self.app.max_upload_mb * 2**20)
        refused: list[FileReport] = []
        kept: list[Path] = []
        for upload in uploads:
            name = safe_name(upload.name)
            source = Path(upload.path)
            try:
                size = source.stat().st_size
            except OSError:
                refused.append(FileReport(name, "failed", "the upload did not arrive: send it again"))
                continue
            if size > limit:
                refused.append(
                    FileReport(
                        name, "skipped", f"{size / 2**20:.1f} MB is over the {self.app.max_upload_mb:g} MB limit"
                    )
                )
                continue
            target = folder / name
            partial = target.with_name(f".{name}.part")
            shutil.copyfile(source, partial)
            if target.exists():  # the version already ingested stays until the new one is
                target.replace(target.with_name(f".{name}.previous"))
            partial.replace(target)
            kept.append(target)
        report = self.reingest(kept, on_file) if kept else IngestReport(self.ingest.collection)
        for f in report.files:  # a rejected upload leaves uploads/ as it was
            target = Path(f.path)
            previous = target.with_name(f".{target.name}.previous")
            if f.status in ("skipped", "failed"):
                if previous.exists():
                    previous.replace(target)
                else:
                    target.unlink(missing_ok=True)
            else:
                previous.unlink(missing_ok=True)
        report.files = refused + report.files
        return report

    def reingest(
        self, paths: list[Path] | list[str], on_file: Callable[[int, int, str], None] | None = None
    ) -> IngestReport:
        """Ingest ``paths`` again: changed files are re-read, unchanged ones cost nothing."""
        from ingest.pipeline import ingest

        with self._write_lock:
            return ingest(paths, self.ingest, progress=False, on_file=on_file)

    def remove_documents(self, paths: list[str]) -> IngestReport:
        """Remove documents (and their uploaded copies) from the collection."""
        from ingest.pipeline import remove_documents

        with self._write_lock:
            report = remove_documents(paths, self.ingest)
        uploads = (self.home / UPLOADS).resolve()
        for f in report.files:
            path = Path(f.path)
            if path.parent == uploads:
                path.unlink(missing_ok=True)
        return report

    def documents(self) -> list[Any]:
        from ingest.pipeline import list_documents

        return list_documents(self.ingest)

    # feedback ----------------------------------------------------------------------------

    def save_feedback(self, turn: dict[str, Any], liked: bool, correction: str = "") -> Path:
        """Record a rating of one answer.

        A thumbs-up, or a correction, becomes a training example in ``HOME/feedback.jsonl``
        (the prompt as the model saw it, sources included, and the answer to learn),
        which ``ragtune dataset build`` uses. A thumbs-down without a correction goes to
        ``feedback-rejected.jsonl`` for review.

        Args:
            turn: The answered turn: ``question``, ``answer``, ``sources`` (Hit dicts) and ``adapter``.
            liked: Thumbs up (True) or down.
            correction: The answer the user wants instead; makes a thumbs-down an example.
        """
        from assistant.prompt import pack
        from assistant.retrieval import Hit

        hits = [Hit(s["id"], s["text"], s["metadata"], 0.0, 1.0, None, None) for s in turn.get("sources", [])]
        prompt = pack(turn["question"], hits, [], lambda _messages: 0, 1).messages
        answer = correction.strip() or turn["answer"]
        useful = liked or bool(correction.strip())
        row = {
            "messages": [*prompt, {"role": "assistant", "content": answer}],
            "rating": "up" if liked else "down",
            "corrected": bool(correction.strip()),
            "original": turn["answer"],
            "adapter": turn.get("adapter", ""),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        path = self.home / (FEEDBACK_FILE if useful else REJECTED_FILE)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._write_lock, open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path

    # fine-tuning -------------------------------------------------------------------------

    def dataset_folder(self) -> Path:
        from assistant.tuning import dataset_folder

        return dataset_folder(self.tune, self.home)

    def build_dataset(self, feedback: bool = True) -> tuple[Path, dict[str, Any]]:
        from assistant.tuning import build

        if self.job.status().running:
            raise AssistantError("a training run is in progress: build the dataset when it has finished")
        return build(self.ingest, self.config, self.tune, feedback=feedback, progress=False)

    def activate(self, name: str) -> str:
        """Make ``name`` the active adapter (``base`` / ``none``: the base model); returns what is active."""
        from finetune.adapters import Registry

        registry = Registry(self.home)
        if name in (BASE, "none", ""):
            registry.deactivate()
            return "base model"
        return activate_adapter(self.config, self.home, name)

    def rollback(self) -> str:
        return rollback_adapter(self.config, self.home) or "base model"

    def remove_adapter(self, name: str) -> None:
        from finetune.adapters import Registry

        if self.job.name == name and self.job.status().running:
            raise AssistantError(f"adapter {name!r} is being trained: cancel the run first")
        Registry(self.home).remove(name)
