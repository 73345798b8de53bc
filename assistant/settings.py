"""``Settings``: every section of the configuration, loaded once, with qualified overrides.

One TOML file holds a table per section (``[ingest]``, ``[assistant]``,
``[finetune]``, ``[app]``, ``[serve]``). Overrides name a section and a key,
``assistant.k=3``; a bare key is accepted when exactly one section has it, and
an ambiguous one (``api_key`` is both the upstream server's key and the API's
own) is an error that lists the qualified choices. Explicit command-line flags
come last. The resolved settings can be written back as one TOML file, which is
how a background training run receives them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.config import AppConfig, AssistantConfig, ServeConfig
from assistant.errors import AssistantError
from finetune.config import FinetuneConfig
from finetune.errors import FinetuneError
from ingest.config import IngestConfig, load_config, parse_assignments, resolve_home
from ingest.errors import IngestError

CONFIG_NAME = "config.toml"  # read from the data home when no file is given

SECTIONS: dict[str, tuple[type, type[Exception]]] = {
    "ingest": (IngestConfig, IngestError),
    "assistant": (AssistantConfig, AssistantError),
    "finetune": (FinetuneConfig, FinetuneError),
    "app": (AppConfig, AssistantError),
    "serve": (ServeConfig, AssistantError),
}


@dataclass(frozen=True)
class Settings:
    """The whole configuration: one frozen dataclass per section."""

    ingest: IngestConfig = field(default_factory=IngestConfig)
    assistant: AssistantConfig = field(default_factory=AssistantConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    app: AppConfig = field(default_factory=AppConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    @property
    def home(self) -> Path:
        """The data home."""
        return self.ingest.home_path

    def to_toml(self) -> str:
        """Every value of every section as TOML that :func:`load_settings` reads back unchanged.

        The data home is written as an absolute path, so the file means the same from any folder.
        """
        lines: list[str] = []
        for name in SECTIONS:
            section = getattr(self, name)
            lines.append(f"[{name}]")
            for f in dataclasses.fields(section):
                value = getattr(section, f.name)
                if name == "ingest" and f.name == "home":
                    value = str(self.home.resolve())
                lines.append(f"{f.name} = {_toml_value(value)}")
            lines.append("")
        return "\n".join(lines)

    def write(self, path: Path) -> Path:
        """Write :meth:`to_toml` to ``path`` atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(self.to_toml(), encoding="utf-8")
        os.replace(tmp, path)
        return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def config_file(home: str | os.PathLike[str] | None, path: str | os.PathLike[str] | None) -> Path | None:
    """The config file to read: ``path`` when given, else ``HOME/config.toml`` when it exists."""
    if path is not None:
        return Path(path)
    default = resolve_home(home) / CONFIG_NAME
    return default if default.exists() else None


def qualify(assignments: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Sort ``key=value`` overrides into sections.

    ``section.key`` goes to that section; a bare ``key`` to the one section that has it.

    Raises:
        AssistantError: an unknown section or key, or a bare key that several sections have.
    """
    owners: dict[str, list[str]] = {}
    for section, (cls, _error) in SECTIONS.items():
        for f in dataclasses.fields(cls):
            owners.setdefault(f.name, []).append(section)
    out: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in assignments.items():
        section, dot, name = key.rpartition(".")
        if dot:
            if section not in SECTIONS:
                raise AssistantError(f"unknown config section {section!r} in {key!r}: use one of {', '.join(SECTIONS)}")
            if section not in owners.get(name, []):
                known = ", ".join(sorted(f.name for f in dataclasses.fields(SECTIONS[section][0])))
                raise AssistantError(f"unknown config key {name!r} in [{section}]; known keys: {known}")
            out[section][name] = value
            continue
        sections = owners.get(key, [])
        if not sections:
            raise AssistantError(
                f"unknown config key {key!r}: see configs/ragtune.toml for every key, or write it as section.key"
            )
        if len(sections) > 1:
            choices = ", ".join(f"{s}.{key}" for s in sections)
            raise AssistantError(f"config key {key!r} is in several sections: write one of {choices}")
        out[sections[0]][key] = value
    return out


def load_settings(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | Iterable[str] = (),
    flags: Mapping[str, Any] | None = None,
    home: str | None = None,
) -> Settings:
    """Read every section: the TOML file, then ``overrides``, then ``flags``.

    Args:
        path: A TOML file; None reads ``HOME/config.toml`` when it exists.
        overrides: ``key=value`` strings or a mapping (keys bare or ``section.key``).
        flags: Command-line flags by qualified key (``"assistant.k": 3``); None values are ignored.
        home: The data home (``--home``); wins over the file's ``ingest.home``.

    Raises:
        IngestError, AssistantError, FinetuneError: a bad file, key or value, from the section it belongs to.
    """
    given = dict(overrides) if isinstance(overrides, Mapping) else parse_assignments(list(overrides))
    sections = qualify(given)
    for key, value in (flags or {}).items():
        if value is not None:
            section, _, name = key.partition(".")
            sections[section][name] = value
    if home:
        sections["ingest"]["home"] = home
    file = config_file(home, path)
    values: dict[str, Any] = {
        name: load_config(cls, name, file, sections[name], error=error) for name, (cls, error) in SECTIONS.items()
    }
    return Settings(**values)
