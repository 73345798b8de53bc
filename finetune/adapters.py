"""The adapter registry: trained adapters by name, one of them active, activation history for rollback.

Layout under the data home::

    adapters/
      <name>/adapter_config.json, adapter_model.safetensors   what PeftModel.from_pretrained and vLLM load
      <name>/adapter.json     base model and its hash, dataset, hyperparameters, metrics, date, version
      <name>/metrics.jsonl, loss.png
      active.json             {"active": "<name>" or null, "history": [earlier actives, newest last]}

Every change is one atomic rename: an adapter appears whole or not at all, and
``active.json`` is replaced, never edited in place.

Every registry also holds ``starter``, the adapter shipped in the package
(``finetune/starter/``) for the bundled model: listed, activated and rolled back
to like any other, never removed. Until the user activates or deactivates
anything (no ``active.json`` yet), it is the active adapter of a registry whose
model is the one it was trained for; any other model starts from the base.
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
STARTER = "starter"
STARTER_DIR = Path(__file__).parent / "starter"  # the shipped adapter's files
MAX_NAME = 100  # characters of an adapter name (a folder name, with room for temporary names)
NO_ADAPTER = ("none", "base", "")  # settings that mean the base model; "none" is the documented one


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
    """Adapters under ``home/adapters``, and the shipped ``starter``.

    Args:
        home: The data home.
        model: The base model the assistant runs (its setting); with the model the
            starter was trained for, the starter is active until the user chooses.
    """

    def __init__(self, home: Path, model: str | None = None) -> None:
        self.root = Path(home) / "adapters"
        self.root.mkdir(parents=True, exist_ok=True)
        self.model = model

    def path(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise FinetuneError(f"{name!r} is not an adapter name: use `ragtune adapters list` for the names")
        if len(name) > MAX_NAME or not name.isprintable():
            shown = f"{name[:40]!r}..." if len(name) > 40 else repr(name)
            raise FinetuneError(
                f"adapter name {shown} is not usable: use at most {MAX_NAME} printable characters, e.g. v2-handbook"
            )
        if name == STARTER:
            return STARTER_DIR
        return self.root / name

    def _exists(self, name: str) -> bool:
        return (self.path(name) / ADAPTER_FILE).exists()

    def starter_default(self) -> bool:
        """Whether the starter is active by default: no choice made yet, and the model it was trained for."""
        if self.model is None or (self.root / ACTIVE_FILE).exists() or not self._exists(STARTER):
            return False
        return starter_fits(self.model)

    def _state(self) -> dict[str, Any]:
        file = self.root / ACTIVE_FILE
        if not file.exists():
            return {"active": None, "history": []}
        state = _read_json(
            file, f"delete {file} to use the base model, then `ragtune adapters activate NAME` to choose one"
        )
        active, history = state.get("active"), state.get("history", [])
        if not isinstance(active, str | None) or not isinstance(history, list):
            raise FinetuneError(
                f"{file} does not hold an active adapter and its history: delete it to use the base model, "
                "then `ragtune adapters activate NAME`"
            )
        return {"active": active, "history": [n for n in history if isinstance(n, str)]}

    def active(self) -> str | None:
        """The active adapter's name, or None for the base model."""
        if self.starter_default():
            return STARTER
        name = self._state().get("active")
        return name if name and self._exists(name) else None

    def list(self) -> list[AdapterInfo]:
        """Every complete adapter, newest first; the starter last."""
        active = self.active()
        out = []
        for folder in self.root.iterdir():
            file = folder / ADAPTER_FILE
            if folder.name.startswith(".") or folder.name == STARTER or not file.exists():
                continue  # a temporary folder of a run still writing (or killed while writing)
            try:
                metadata = self.get(folder.name).metadata
            except FinetuneError as e:  # listed, so that it can be seen and removed
                metadata = {"error": str(e)}
            out.append(AdapterInfo(folder.name, folder, metadata, folder.name == active))
        out.sort(key=lambda a: str(a.metadata.get("created", "")), reverse=True)
        if self._exists(STARTER):
            out.append(self.get(STARTER))
        return out

    def get(self, name: str) -> AdapterInfo:
        """The adapter called ``name``.

        Raises:
            FinetuneError: there is none.
        """
        folder = self.path(name)
        if not (folder / ADAPTER_FILE).exists():
            names = ", ".join(a.name for a in self.list()) or "none yet"
            raise FinetuneError(f"no adapter named {name!r}; registered: {names}")
        metadata = _read_json(folder / ADAPTER_FILE, f"remove the adapter with `ragtune adapters remove {name}`")
        return AdapterInfo(name, folder, metadata, name == self.active())

    def add(self, name: str, folder: Path) -> Path:
        """Move a finished adapter folder (holding ``adapter.json``) into the registry under ``name``."""
        if name == STARTER:
            raise FinetuneError(f"{STARTER!r} is the name of the shipped adapter: choose another name")
        target = self.path(name)
        if target.exists():
            raise FinetuneError(f"an adapter named {name!r} exists: choose another name, or remove it first")
        os.replace(folder, target)
        return target

    def update_metadata(self, name: str, **fields: Any) -> None:
        """Merge ``fields`` into an adapter's ``adapter.json`` (atomically); the shipped starter is read-only."""
        if name == STARTER:
            raise FinetuneError(f"{STARTER!r} ships with ragtune and is not changed")
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
        state, current = self._state(), self.active()
        if current != name or not (self.root / ACTIVE_FILE).exists():
            history = [n for n in state.get("history", []) if n != name]
            if current and current != name:
                history.append(current)
            write_json(self.root / ACTIVE_FILE, {"active": name, "history": history[-20:]})
        return self.get(name)

    def deactivate(self) -> None:
        """Use the base model; the adapter that was active can be rolled back to."""
        state, current = self._state(), self.active()
        if current or not (self.root / ACTIVE_FILE).exists():
            history = [*state["history"], *([current] if current else [])]
            write_json(self.root / ACTIVE_FILE, {"active": None, "history": history[-20:]})

    def previous(self) -> str | None:
        """The adapter :meth:`rollback` would re-activate (None: the base model).

        Raises:
            FinetuneError: there is nothing to roll back to.
        """
        state = self._state()
        history = [n for n in state.get("history", []) if self._usable(n)]
        if not history and not state.get("active"):
            raise FinetuneError("nothing to roll back to: no adapter was ever activated")
        return history[-1] if history else None

    def _usable(self, name: str) -> bool:
        try:
            return self._exists(name)
        except FinetuneError:
            return False

    def rollback(self) -> str | None:
        """Re-activate the previously active adapter (None: the base model); returns the new active name.

        Adapters removed since are skipped.
        """
        previous = self.previous()
        history = [n for n in self._state().get("history", []) if self._usable(n)]
        if history:
            history.pop()
        write_json(self.root / ACTIVE_FILE, {"active": previous, "history": history})
        return previous

    def remove(self, name: str) -> None:
        """Delete an adapter that is not active.

        Raises:
            FinetuneError: unknown, or active (roll back or activate another first).
        """
        folder = self.path(name)
        if not (folder / ADAPTER_FILE).exists():
            self.get(name)  # says which names there are
        if name == STARTER:
            raise FinetuneError(
                f"{STARTER!r} ships with ragtune and cannot be removed: `ragtune adapters activate none` "
                "uses the base model"
            )
        if self.active() == name:
            raise FinetuneError(
                f"adapter {name!r} is active: `ragtune adapters rollback` or activate another before removing it"
            )
        trash = self.root / f".{name}.removed{os.getpid()}"
        os.replace(folder, trash)  # gone from the registry in one step (a damaged one too); then deleted
        shutil.rmtree(trash, ignore_errors=True)

    def resolve(self, value: str) -> str:
        """The adapter folder a setting names: ``active`` (the active one, or none), a registered name, or a folder.

        Returns "" for the base model (``none``, also written ``base`` or ``""``, or ``active`` with nothing active).
        """
        if value in NO_ADAPTER:
            return ""
        if value == "active":
            name = self.active()
            if name:
                check_complete(self.path(name), name)
            return str(self.path(name)) if name else ""
        registered = "/" not in value and "\\" not in value and not value.startswith(".")
        if registered and (self.path(value) / ADAPTER_FILE).exists():
            check_complete(self.path(value), value)
            return str(self.path(value))
        if Path(value).is_dir():
            return value
        names = ", ".join(a.name for a in self.list()) or "none yet"
        raise FinetuneError(f"adapter {value!r} is neither a registered name ({names}) nor a folder")


def starter_fits(model: str) -> bool:
    """Whether the shipped starter adapter was trained for ``model``."""
    file = STARTER_DIR / ADAPTER_FILE
    if not file.exists():
        return False
    try:
        base = str(json.loads(file.read_text(encoding="utf-8")).get("base_model", ""))
    except (OSError, ValueError):
        return False
    return bool(base) and same_model(base, model)


def check_complete(folder: Path, name: str) -> None:
    """Check that an adapter folder holds what PEFT loads: a readable ``adapter_config.json`` and the weights.

    Raises:
        FinetuneError: a file is missing or damaged; the message says what to do.
    """
    advice = (
        f"remove it with `ragtune adapters remove {name}` and train it again"
        if folder.parent.name == "adapters"
        else "train it again, or give the folder of a complete adapter"
    )
    config = folder / "adapter_config.json"
    if not config.exists():
        raise FinetuneError(f"adapter {name!r} has no adapter_config.json: {advice}")
    _read_json(config, advice)
    if not any((folder / f).is_file() for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise FinetuneError(f"adapter {name!r} has lost its weights (adapter_model.safetensors): {advice}")


def _read_json(file: Path, advice: str) -> dict[str, Any]:
    """A JSON object from ``file``; a damaged file is a FinetuneError that ends with ``advice``."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        detail = getattr(e, "strerror", None) or str(e).splitlines()[0][:80] if str(e) else type(e).__name__
        raise FinetuneError(f"{file} is damaged ({detail}): {advice}") from None
    if not isinstance(data, dict):
        raise FinetuneError(f"{file} is damaged (not a JSON object): {advice}")
    return data


def check_fits(folder: str | Path, model: str, model_path: str = "") -> None:
    """Check that the adapter in ``folder`` was trained for ``model`` (files at ``model_path``).

    The one rule every backend and the registry use: the base model named in ``adapter.json``
    (else PEFT's ``base_model_name_or_path``) must be the same model by :func:`same_model`.

    Raises:
        FinetuneError: no adapter there, or one trained for another base model.
    """
    folder = Path(folder)
    config_file = folder / "adapter_config.json"
    if not config_file.exists():
        raise FinetuneError(f"adapter {str(folder)!r} not found: give a folder holding adapter_config.json")
    try:
        peft = json.loads(config_file.read_text(encoding="utf-8"))
        meta = (
            json.loads((folder / ADAPTER_FILE).read_text(encoding="utf-8")) if (folder / ADAPTER_FILE).exists() else {}
        )
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise FinetuneError(
            f"adapter {str(folder)!r} has an unreadable configuration ({type(e).__name__}): retrain or remove it"
        ) from None
    base = str((meta if isinstance(meta, dict) else {}).get("base_model") or "")
    base = base or str((peft if isinstance(peft, dict) else {}).get("base_model_name_or_path") or "")
    if base and not (same_model(base, model) or (model_path and same_model(base, model_path))):
        raise FinetuneError(
            f"adapter {str(folder)!r} was trained for base model {base!r}, not {model!r}: use that model"
        )


def same_model(a: str, b: str) -> bool:
    """Whether two names denote the same base model (an id and a folder named after it count as the same)."""

    def forms(name: str) -> set[str]:
        name = name.rstrip("/")
        return {name, Path(name).name, name.split("/")[-1], name.replace("/", "--"), Path(name).name.split("--")[-1]}

    return bool(forms(a) & forms(b))
