"""Configuration: one frozen dataclass per entry point, read from TOML plus overrides.

A config file is TOML with one table per entry point::

    [ingest]
    collection = "handbook"
    chunk_tokens = 200

Unknown keys are errors that name the key, so a typo never silently falls back
to a default.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from ingest.errors import IngestError

DEFAULT_HOME = Path(".ragtune")
# "auto": a new collection gets all-MiniLM-L6-v2 for English documents, multilingual-e5-small otherwise.
DEFAULT_EMBEDDING_MODEL = "auto"

# Chroma's own rule for collection names, checked early for a clearer message.
_COLLECTION_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """Return the data home: ``home`` if given, else ``$RAGTUNE_HOME``, else ``./.ragtune``."""
    if home:
        return Path(home).expanduser()
    env = os.environ.get("RAGTUNE_HOME")
    return Path(env).expanduser() if env else DEFAULT_HOME


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    """Settings of ``ragtune ingest`` and ``ragtune docs``; defaults run on a laptop CPU."""

    home: str = ""  # empty: $RAGTUNE_HOME or ./.ragtune
    collection: str = "documents"
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    query_prompt: str = ""  # put before each query when the embedder names no query prompt of its own
    passage_prompt: str = ""  # put before each chunk when the embedder names no passage prompt of its own
    chunk_tokens: int = 200  # tokens of the embedder's tokenizer, special tokens excluded
    chunk_overlap: int = 32
    max_file_mb: float = 64.0
    batch_size: int = 0  # chunks per embedding batch; 0: auto (512 on a GPU; on CPU 64, at most 4096 padded tokens)
    group_chunks: int = 2048  # chunks embedded and written per crash-safe step (a large file takes several)
    max_unzipped_mb: float = 256.0  # docx/pptx/xlsx/odt/epub whose members unpack to more are skipped
    file_timeout_s: float = 300.0  # parsing one file longer than this is stopped; 0: parse in this process
    follow_symlinks: bool = False  # also read links that point outside the folders being ingested
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    embedding_dtype: str = "auto"  # auto | fp32 | bf16; auto: bf16 on a GPU that has it or a CPU with bf16 in hardware
    chroma_url: str = ""  # empty: embedded PersistentClient in the data home
    ocr: bool = True  # read PDF pages that have no text layer with OCR (RapidOCR)
    context_prefix: bool = True  # embed and index each chunk with its document title and heading path

    def __post_init__(self) -> None:
        if not _COLLECTION_NAME.match(self.collection):
            raise IngestError(
                f"collection name {self.collection!r} is invalid: use 3-512 characters "
                "from a-z A-Z 0-9 . _ - starting and ending with a letter or digit"
            )
        if self.chunk_tokens < 16:
            raise IngestError(f"chunk_tokens={self.chunk_tokens} is too small: use 16 or more")
        if not 0 <= self.chunk_overlap < self.chunk_tokens // 2:
            raise IngestError(
                f"chunk_overlap={self.chunk_overlap} must be between 0 and half of "
                f"chunk_tokens ({self.chunk_tokens // 2})"
            )
        if self.max_file_mb <= 0:
            raise IngestError("max_file_mb must be positive")
        if self.max_unzipped_mb <= 0 or self.file_timeout_s < 0:
            raise IngestError("max_unzipped_mb must be positive and file_timeout_s 0 (no limit) or more")
        if self.embedding_dtype not in ("auto", "fp32", "bf16"):
            raise IngestError(f"embedding_dtype={self.embedding_dtype!r} is unknown: use auto, fp32 or bf16")
        if self.batch_size < 0 or self.group_chunks < 1:
            raise IngestError("batch_size must be 0 (auto) or more, and group_chunks at least 1")

    @property
    def home_path(self) -> Path:
        return resolve_home(self.home)


C = TypeVar("C")


def load_config(
    cls: type[C],
    section: str,
    path: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    error: type[Exception] = IngestError,
) -> C:
    """Build ``cls`` from the ``[section]`` table of a TOML file plus overrides.

    Args:
        cls: A frozen dataclass of plain values.
        section: The TOML table that holds its keys, e.g. ``"ingest"``.
        path: A TOML file; None for defaults only.
        overrides: Values from the command line, as typed values or strings
            (``"200"``, ``"true"``); None values are ignored.
        error: The exception type raised for a bad file, key or value (the owning package's).

    Raises:
        IngestError: (or ``error``) unreadable file, unknown key, or a value of the wrong type.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise error(f"config file {path} not found: check the path given to --config") from None
        except tomllib.TOMLDecodeError as e:
            raise error(f"config file {path} is not valid TOML ({e}): fix it and retry") from None
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise error(f"[{section}] in {path} must be a table")
        values.update(_checked(cls, table, f"[{section}] of {path}", error))
    if overrides:
        given = {k: v for k, v in overrides.items() if v is not None}
        values.update(_checked(cls, given, "the command line", error))
    return cls(**values)


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """Turn ``["key=value", ...]`` into a dict, rejecting items without ``=``."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise IngestError(f"override {pair!r} is not of the form key=value")
        out[key.strip()] = value.strip()
    return out


def _checked(cls: type, table: dict[str, Any], where: str, error: type[Exception] = IngestError) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in table.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise error(f"unknown config key {key!r} in {where}; known keys: {known}")
        try:
            out[key] = _coerce(key, value, hints[key], where)
        except IngestError as e:
            raise error(str(e)) from None
    return out


def _coerce(key: str, value: Any, hint: Any, where: str) -> Any:
    if typing.get_origin(hint) is tuple:  # tuple[str, ...]: a TOML list, or "a,b" on the command line
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
            raise IngestError(f"config key {key!r} in {where} expects a list of strings, got {value!r}")
        return tuple(items)
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    kinds = tuple(k for k in kinds if k is not type(None))
    kind = kinds[0]
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        try:
            if kind is bool:
                if text not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return text in ("true", "1", "yes")
            return kind(value)
        except ValueError:
            raise IngestError(f"config key {key!r} in {where} expects {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise IngestError(f"config key {key!r} in {where} expects {kind.__name__}, got {value!r}")
    return value
