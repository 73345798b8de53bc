"""The one service every front end uses: a data home's documents, one model with its adapters, tools, training.

The CLI, the browser app and the API each parse their input, call a
:class:`Workspace` and render what it returns. It owns one chat model (adapters
switched per reply, so a newly activated adapter answers the next question
without a restart), one embedder per embedding model (shared by ingest and
retrieval), one retriever over the current documents (reopened when the store
changes, here or from another process: one ``stat`` per question, see
:class:`ingest.store.StoreWatcher`), and one tool registry.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assistant.agent import Event, run_agent
from assistant.answer import ask
from assistant.backends import load_model
from assistant.compute import streamed
from assistant.conversations import CONVERSATIONS_FILE, Conversations
from assistant.errors import AssistantError
from assistant.jobs import TrainingJob
from assistant.model import Message
from assistant.prompt import check_question, pack
from assistant.retrieval import Hit, Retriever
from assistant.settings import Settings
from assistant.tools import ToolRegistry, build_registry
from assistant.training import (
    FEEDBACK_FILE,
    DatasetBuild,
    activate_adapter,
    build,
    dataset_folder,
    rollback_adapter,
)
from finetune.adapters import AdapterInfo, Registry
from finetune.estimate import Estimate, estimate_training
from ingest.embedding import load_embedder
from ingest.manifest import FileRecord
from ingest.pipeline import FileReport, IngestReport, file_sha256, ingest, list_documents, remove_documents
from ingest.store import StoreWatcher

REJECTED_FILE = "feedback-rejected.jsonl"  # thumbs-down answers without a correction: kept for review, never trained on
UPLOADS = "uploads"
NO_ADAPTER = "none"  # the adapter choice that means: the base model
ACTIVE = "active"
MODES = ("rag", "agent", "plain")

_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+-]+")


def safe_name(name: str) -> str:
    """An uploaded file's name reduced to a plain file name: no folders, no leading dots, no odd characters."""
    base = re.split(r"[\\/]", name)[-1]
    base = _UNSAFE.sub("_", base).strip(" .")
    return base[:200] or "upload"


def _put_back(target: Path) -> None:
    """Undo an upload: the earlier version of the file comes back, or the file goes."""
    previous = target.with_name(f".{target.name}.previous")
    if previous.exists():
        previous.replace(target)
    else:
        target.unlink(missing_ok=True)


@dataclass
class Upload:
    """A file the browser sent: its name as the user had it, and where the server keeps it for now."""

    name: str
    path: str


class Workspace:
    """The assistant over one data home, as every front end uses it.

    Args:
        settings: Every section of the configuration.
        model: A model already loaded (a :class:`~assistant.model.ChatModel` with ``with_adapter``);
            None: the configured one, loaded on first use.
    """

    def __init__(self, settings: Settings, model: Any = None) -> None:
        self.settings = settings
        self.home = settings.home
        self.job = TrainingJob(self.home)
        self._model: Any = model
        self._embedders: dict[tuple[str, str], Any] = {}
        self._watcher = StoreWatcher(self.home)  # before any client is opened
        self._retriever: Retriever | None = None
        self._registry: ToolRegistry | None = None
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()
        self._conversations: Conversations | None = None

    @property
    def ingest(self) -> Any:
        return self.settings.ingest

    @property
    def config(self) -> Any:
        return self.settings.assistant

    @property
    def tune(self) -> Any:
        return self.settings.finetune

    @property
    def app(self) -> Any:
        return self.settings.app

    @property
    def conversations(self) -> Conversations:
        """The kept conversations (``HOME/conversations.sqlite``), opened on first use."""
        with self._lock:
            if self._conversations is None:
                self._conversations = Conversations(self.home / CONVERSATIONS_FILE)
            return self._conversations

    # models ------------------------------------------------------------------------------

    def base_model(self) -> Any:
        """The base model, loaded on first use and kept."""
        with self._lock:
            if self._model is None:
                self._model = load_model(self.config, self.home, "")
            return self._model

    def model(self, adapter: str = ACTIVE) -> Any:
        """The model answering with ``adapter``: ``active``, ``none`` (or ``base``) or a registered adapter's name.

        ``active`` is looked up on every call, so activation takes effect on the next question.
        """
        folder = self.registry().resolve(adapter)
        return self.base_model().with_adapter(folder)

    def adapter_label(self, adapter: str) -> str:
        """What ``adapter`` stands for now, e.g. ``active (squad)`` or ``none (base model)``."""
        return self.pin(adapter)[1]

    def pin(self, adapter: str) -> tuple[str, str]:
        """``adapter`` with ``active`` looked up once: (the adapter to answer with, what to call it).

        Answering with the first value reads the registry's active adapter no second time.
        """
        if adapter == ACTIVE:
            name = self.registry().active()
            return (name, f"active ({name})") if name else (NO_ADAPTER, "active (none: base model)")
        if adapter in ("", NO_ADAPTER, "base"):
            return NO_ADAPTER, "none (base model)"
        return adapter, adapter

    def registry(self) -> Registry:
        """The adapter registry as this workspace's model sees it (the starter is active by default for its model)."""
        return Registry(self.home, self.config.model)

    def adapters(self) -> list[AdapterInfo]:
        return self.registry().list()

    def adapter_names(self) -> list[str]:
        return [a.name for a in self.adapters()]

    def active_adapter(self) -> str | None:
        return self.registry().active()

    # embedding and retrieval ---------------------------------------------------------------

    def embedder(self, name: str, device: str = "auto") -> Any:
        """The embedding model ``name``, loaded once and shared by ingest and retrieval."""
        with self._lock:
            key = (name, device)
            if key not in self._embedders:
                c = self.ingest
                self._embedders[key] = load_embedder(
                    name, device, c.home_path, c.query_prompt, c.passage_prompt, c.embedding_dtype
                )
            return self._embedders[key]

    def retriever(self) -> Retriever:
        """The retriever over the current documents, reopened when they changed (here or from the CLI).

        Raises:
            AssistantError: the collection is empty.
        """
        with self._lock:
            changed = self._watcher.changed()
            if self._retriever is None or changed:
                # after a write by another process, Chroma's cached client in this one is stale: open a fresh one
                self._retriever = Retriever.from_config(self.ingest, self.config, self.embedder, fresh=changed)
            return self._retriever

    def tools(self) -> ToolRegistry:
        """The agent's tools; their document search uses the current retriever."""
        with self._lock:
            if self._registry is None:
                self._registry = build_registry(self.ingest, self.retriever, self.config.tools)
            return self._registry

    def search(self, query: str, *, k: int | None = None, source: str | None = None, mmr: bool | None = None) -> Any:
        """Hybrid search over the documents with the configured settings."""
        c = self.config
        use_mmr = c.mmr if mmr is None else mmr
        return self.retriever().search(query, k or c.k, source=source, mmr=use_mmr, mmr_lambda=c.mmr_lambda)

    # answering -----------------------------------------------------------------------------

    def respond(
        self,
        question: str,
        *,
        mode: str = "rag",
        adapter: str | None = None,
        history: list[Message] | None = None,
        source: str | None = None,
        model: Any = None,
        **overrides: Any,
    ) -> Generator[Event, None, None]:
        """The one door for answers: the events answering ``question``.

        While ``ragtune chat`` serves, the events are produced on its main thread and
        streamed to the caller's (:mod:`assistant.compute`).

        Args:
            question: The user's message.
            mode: ``rag`` (retrieve, then answer with citations), ``agent`` (tools) or ``plain`` (closed-book).
            adapter: ``active``, ``none`` or a registered name; None: the configured adapter.
            history: Earlier turns, oldest first.
            source: Search only this file (rag).
            model: A model view to answer with instead of ``adapter`` (the API's runtime adapters).
            **overrides: ``[assistant]`` keys for this answer only (``answer_tokens``, ``temperature``, ``mmr``).
        """
        if mode not in MODES:
            raise AssistantError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        c = dataclasses.replace(self.config, **overrides) if overrides else self.config
        check_question(question, c.max_question_chars)  # before anything is tokenised
        retriever = self.retriever() if mode == "rag" else None  # an empty collection says so before a model loads
        registry = self.tools() if mode == "agent" else None
        chosen = model if model is not None else self.model(c.adapter if adapter is None else adapter)
        if registry is not None:
            return streamed(
                run_agent(
                    question,
                    chosen,
                    registry,
                    history=history,
                    max_steps=c.max_steps,
                    answer_tokens=c.answer_tokens,
                    temperature=c.temperature,
                    tool_timeout=c.tool_timeout,
                    tool_output_chars=c.tool_output_chars,
                    loop_guard=c.loop_guard,
                    citations=c.check_citations,
                )
            )
        return streamed(
            ask(
                question,
                chosen,
                retriever,
                history=history,
                k=c.k,
                answer_tokens=c.answer_tokens,
                temperature=c.temperature,
                source=source,
                mmr=c.mmr,
                mmr_lambda=c.mmr_lambda,
                rewrite=c.rewrite,
                loop_guard=c.loop_guard,
                citations=c.check_citations,
            )
        )

    def answer_with(self, question: str, adapter: str, hits: list[Hit]) -> Generator[Event, None, None]:
        """``adapter``'s answer given exactly ``hits`` as sources (none: closed-book); Compare uses it."""
        c = self.config
        return streamed(
            ask(
                question,
                self.model(adapter),
                context=hits,
                answer_tokens=c.answer_tokens,
                loop_guard=c.loop_guard,
                citations=c.check_citations,
            )
        )

    # documents ---------------------------------------------------------------------------

    def add_documents(
        self,
        uploads: list[Upload],
        on_file: Callable[[int, int, str], None] | None = None,
        on_chunks: Callable[[int, int], None] | None = None,
    ) -> IngestReport:
        """Keep uploaded files under ``HOME/uploads`` (a same-named file is replaced) and ingest them.

        Names are reduced to plain file names; files over the upload limit are
        refused and reported, the rest are ingested as ``ragtune ingest`` would. An
        upload that cannot be ingested is not kept; one that replaced an ingested
        file puts the earlier version back, so its file and its chunks still match. An
        upload whose content is already ingested under another name is reported, not kept.
        """
        folder = self.home / UPLOADS
        folder.mkdir(parents=True, exist_ok=True)
        limit = int(self.app.max_upload_mb * 2**20)
        refused: list[FileReport] = []
        kept: list[Path] = []
        known = {r.sha256: r.path for r in self.documents()}
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
            same = known.get(file_sha256(source))
            if same is not None and Path(same) != target.resolve():
                reason = f"the same content is already ingested as {Path(same).name}"
                refused.append(FileReport(name, "skipped", reason))
                continue
            partial = target.with_name(f".{name}.part")
            shutil.copyfile(source, partial)
            if target.exists():  # the version already ingested stays until the new one is
                target.replace(target.with_name(f".{name}.previous"))
            partial.replace(target)
            kept.append(target)
        try:
            report = self.reingest(kept, on_file, on_chunks) if kept else IngestReport(self.ingest.collection)
        except Exception:  # nothing was ingested (another process holds the store, say): uploads/ as it was
            for target in kept:
                _put_back(target)
            raise
        for f in report.files:  # a rejected upload leaves uploads/ as it was
            if f.status in ("skipped", "failed"):
                _put_back(Path(f.path))
            else:
                Path(f.path).with_name(f".{Path(f.path).name}.previous").unlink(missing_ok=True)
        report.files = refused + report.files
        return report

    def reingest(
        self,
        paths: list[Path] | list[str],
        on_file: Callable[[int, int, str], None] | None = None,
        on_chunks: Callable[[int, int], None] | None = None,
    ) -> IngestReport:
        """Ingest ``paths`` again: changed files are re-read, unchanged ones cost nothing."""
        with self._write_lock:
            return ingest(
                paths, self.ingest, progress=False, on_file=on_file, embedder=self.embedder, on_chunks=on_chunks
            )

    def remove_documents(self, paths: list[str]) -> IngestReport:
        """Remove documents (and their uploaded copies) from the collection."""
        with self._write_lock:
            report = remove_documents(paths, self.ingest)
        uploads = (self.home / UPLOADS).resolve()
        for f in report.files:
            path = Path(f.path)
            if path.parent == uploads:
                path.unlink(missing_ok=True)
        return report

    def documents(self) -> list[FileRecord]:
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
        return dataset_folder(self.tune, self.home)

    def build_dataset(self, feedback: bool = True, progress: bool = False) -> DatasetBuild:
        """Build the training data from the documents, the tools and (with ``feedback``) rated answers."""
        if self.job.status().running:
            raise AssistantError("a training run is in progress: build the dataset when it has finished")
        model = self.base_model() if self.tune.synthetic == "llm" else None
        registry = self.tools() if self.tune.tool_examples > 0 else None
        return build(self.settings, registry, model=model, feedback=feedback, progress=progress)

    def start_training(self, name: str, *, resume: bool = False, activate: bool = False, **finetune: Any) -> None:
        """Train adapter ``name`` in the background with these settings plus ``finetune`` keys (epochs, steps…)."""
        tune = dataclasses.replace(self.tune, name=name, **finetune)
        self.job.start(dataclasses.replace(self.settings, finetune=tune), resume=resume, activate=activate)

    def estimate_training(self, **finetune: Any) -> Estimate:
        """How long training with these settings plus ``finetune`` keys would take here, from a few timed steps."""
        if self.job.status().running:
            raise AssistantError("a training run is in progress: estimate when it has finished")
        tune = dataclasses.replace(self.tune, **finetune)
        return estimate_training(tune, self.config.model, self.home, self.dataset_folder())

    def activate(self, name: str) -> str:
        """Make ``name`` the active adapter (``none``/``base``: the base model); returns what is active."""
        if name in (NO_ADAPTER, "base", ""):
            self.registry().deactivate()
            return "base model"
        return activate_adapter(self.config, self.home, name)

    def rollback(self) -> str:
        return rollback_adapter(self.config, self.home) or "base model"

    def remove_adapter(self, name: str) -> None:
        if self.job.name == name and self.job.status().running:
            raise AssistantError(f"adapter {name!r} is being trained: cancel the run first")
        self.registry().remove(name)
