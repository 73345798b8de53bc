"""The adapter registry: trained adapters by name, one of them active, activation history for rollback.

Layout under the data home::

    adapters/
      <name>/adapter_config.json, adapter_model.safetensors   what PeftModel.from_pretrained and vLLM load
      <name>/adapter.json     base model and its hash, dataset, hyperparameters, metrics, date, version
      <name>/metrics.jsonl, loss.png
      active.json             {"active": "<name>" or null, "history": [earlier actives, newest last]}

Every change is one atomic rename: an adapter appears whole or not at all, and
``active.json`` is replaced, never edited in place.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError

ADAPTER_FILE = "adapter.json"
ACTIVE_FILE = "active.json"


def write_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class AdapterInfo:
    """One registered adapter and its ``adapter.json``."""

    name: str
    path: Path
    metadata: dict[str, Any]
    active: bool

    @property
    def base_model(self) -> str:
        return str(self.metadata.get("base_model", ""))


class Registry:
    """Adapters under ``home/adapters``.

    Args:
        home: The data home.
    """

    def __init__(self, home: Path) -> None:
        self.root = Path(home) / "adapters"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise FinetuneError(f"{name!r} is not an adapter name: use `ragtune adapters list` for the names")
        return self.root / name

    def _state(self) -> dict[str, Any]:
        file = self.root / ACTIVE_FILE
        if not file.exists():
            return {"active": None, "history": []}
        return dict(json.loads(file.read_text()))

    def active(self) -> str | None:
        """The active adapter's name, or None for the base model."""
        name = self._state().get("active")
        return name if name and (self.root / name / ADAPTER_FILE).exists() else None

    def list(self) -> list[AdapterInfo]:
        """Every complete adapter, newest first."""
        active = self.active()
        out = []
        for folder in self.root.iterdir():
            file = folder / ADAPTER_FILE
            if folder.name.startswith(".") or not file.exists():
                continue  # a temporary folder of a run still writing (or killed while writing)
            out.append(AdapterInfo(folder.name, folder, json.loads(file.read_text()), folder.name == active))
        return sorted(out, key=lambda a: str(a.metadata.get("created", "")), reverse=True)

    def get(self, name: str) -> AdapterInfo:
        """The adapter called ``name``.

        Raises:
            FinetuneError: there is none.
        """
        folder = self.path(name)
        if not (folder / ADAPTER_FILE).exists():
            names = ", ".join(a.name for a in self.list()) or "none yet"
            raise FinetuneError(f"no adapter named {name!r}; registered: {names}")
        return AdapterInfo(name, folder, json.loads((folder / ADAPTER_FILE).read_text()), name == self.active())

    def add(self, name: str, folder: Path) -> Path:
        """Move a finished adapter folder (holding ``adapter.json``) into the registry under ``name``."""
        target = self.path(name)
        if target.exists():
            raise FinetuneError(f"an adapter named {name!r} exists: choose another name, or remove it first")
        os.replace(folder, target)
        return target

    def update_metadata(self, name: str, **fields: Any) -> None:
        """Merge ``fields`` into an adapter's ``adapter.json`` (atomically)."""
        info = self.get(name)
        write_json(info.path / ADAPTER_FILE, {**info.metadata, **fields})

    def activate(self, name: str, base_model: str | None = None) -> AdapterInfo:
        """Make ``name`` the adapter the assistant uses; the previous one can be rolled back to.

        Args:
            name: A registered adapter.
            base_model: The model the assistant runs; an adapter trained on another is refused.

        Raises:
            FinetuneError: unknown name, or an adapter for another base model.
        """
        info = self.get(name)
        if base_model is not None and not same_model(info.base_model, base_model):
            raise FinetuneError(
                f"adapter {name!r} was trained on {info.base_model!r}, but the assistant runs {base_model!r}: "
                f"set model={info.base_model} or activate an adapter for {base_model}"
            )
        state = self._state()
        if state.get("active") != name:
            history = [n for n in state.get("history", []) if n != name]
            if state.get("active"):
                history.append(state["active"])
            write_json(self.root / ACTIVE_FILE, {"active": name, "history": history[-20:]})
        return self.get(name)

    def deactivate(self) -> None:
        """Use the base model; the adapter that was active can be rolled back to."""
        state = self._state()
        if state.get("active"):
            write_json(self.root / ACTIVE_FILE, {"active": None, "history": [*state["history"], state["active"]][-20:]})

    def previous(self) -> str | None:
        """The adapter :meth:`rollback` would re-activate (None: the base model).

        Raises:
            FinetuneError: there is nothing to roll back to.
        """
        state = self._state()
        history = [n for n in state.get("history", []) if (self.root / n / ADAPTER_FILE).exists()]
        if not history and not state.get("active"):
            raise FinetuneError("nothing to roll back to: no adapter was ever activated")
        return history[-1] if history else None

    def rollback(self) -> str | None:
        """Re-activate the previously active adapter (None: the base model); returns the new active name.

        Adapters removed since are skipped.
        """
        previous = self.previous()
        history = [n for n in self._state().get("history", []) if (self.root / n / ADAPTER_FILE).exists()]
        if history:
            history.pop()
        write_json(self.root / ACTIVE_FILE, {"active": previous, "history": history})
        return previous

    def remove(self, name: str) -> None:
        """Delete an adapter that is not active.

        Raises:
            FinetuneError: unknown, or active (roll back or activate another first).
        """
        info = self.get(name)
        if info.active:
            raise FinetuneError(
                f"adapter {name!r} is active: `ragtune adapters rollback` or activate another before removing it"
            )
        trash = self.root / f".{name}.removed{os.getpid()}"
        os.replace(info.path, trash)  # gone from the registry in one step; then deleted
        shutil.rmtree(trash, ignore_errors=True)

    def resolve(self, value: str) -> str:
        """The adapter folder a setting names: ``active`` (the active one, or none), a registered name, or a folder.

        Returns "" for the base model (``""``, ``none``, or ``active`` with nothing active).
        """
        if value in ("", "none"):
            return ""
        if value == "active":
            name = self.active()
            return str(self.root / name) if name else ""
        if (self.root / value / ADAPTER_FILE).exists() and "/" not in value:
            return str(self.root / value)
        if Path(value).is_dir():
            return value
        names = ", ".join(a.name for a in self.list()) or "none yet"
        raise FinetuneError(f"adapter {value!r} is neither a registered name ({names}) nor a folder")


def same_model(a: str, b: str) -> bool:
    """Whether two names denote the same base model (an id and a folder named after it count as the same)."""

    def forms(name: str) -> set[str]:
        name = name.rstrip("/")
        return {name, Path(name).name, name.split("/")[-1], name.replace("/", "--"), Path(name).name.split("--")[-1]}

    return bool(forms(a) & forms(b))
