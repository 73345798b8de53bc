"""The lexical (BM25) index of a collection, kept in step with its chunks.

Built with ``bm25s`` from the chunk texts in Chroma and saved in the data home
under ``bm25/<collection>/<fingerprint>/``, where the fingerprint is a hash of
the collection's chunk ids in the manifest. Ingest rebuilds it after every run
that changed the collection; a reader that finds it stale (an interrupted run,
another tool) rebuilds it too, so it never answers from an old corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_PAGE = 5000  # chunks read from Chroma per call while building


def fingerprint(chunk_ids: Iterable[str]) -> str:
    """A short hash that changes whenever the set of chunks changes."""
    digest = hashlib.sha256()
    for chunk in sorted(chunk_ids):
        digest.update(chunk.encode())
    return digest.hexdigest()[:16]


def _quiet() -> None:
    import logging

    logging.getLogger("bm25s").setLevel(logging.WARNING)


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lower-cased word tokens without English stop words; the same for chunks and queries."""
    import bm25s

    _quiet()
    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


@dataclass
class LexicalIndex:
    """A loaded BM25 index: ``search`` returns (chunk id, score) pairs, best first."""

    ids: list[str]
    model: Any  # bm25s.BM25

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        import numpy as np

        vocab = self.model.vocab_dict
        tokens = [t for t in tokenize([query])[0] if t in vocab]
        if not tokens or not self.ids:
            return []
        # Scores of every chunk, then a partial sort: ~10x faster than BM25.retrieve's generic path.
        scores = self.model.get_scores(tokens)
        k = min(k, len(self.ids))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.ids[int(d)], float(scores[d])) for d in top if scores[d] > 0]


def build(home: Path, name: str, collection: Collection, chunk_ids: Iterable[str]) -> LexicalIndex:
    """Index every chunk of ``collection`` and save it for the manifest's chunk ids."""
    import bm25s

    ids: list[str] = []
    texts: list[str] = []
    offset = 0
    while True:
        page = collection.get(include=["documents"], limit=_PAGE, offset=offset)
        ids.extend(page["ids"])
        texts.extend(d or "" for d in page["documents"] or [])
        if len(page["ids"]) < _PAGE:
            break
        offset += _PAGE
    model = bm25s.BM25()
    if texts:
        model.index(tokenize(texts), show_progress=False)
    target = _folder(home, name, chunk_ids)
    root = target.parent
    tmp = root / f".tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if texts:
        model.save(str(tmp), show_progress=False)
    (tmp / "ids.json").write_text(json.dumps(ids))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    for old in root.iterdir():  # earlier versions and leftovers of killed builds
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return LexicalIndex(ids, model)


def _folder(home: Path, name: str, chunk_ids: Iterable[str]) -> Path:
    return home / "bm25" / name / fingerprint(chunk_ids)


def is_current(home: Path, name: str, chunk_ids: Iterable[str]) -> bool:
    """Whether a saved index matches exactly these chunk ids."""
    return (_folder(home, name, chunk_ids) / "ids.json").exists()


def load(home: Path, name: str, chunk_ids: Iterable[str]) -> LexicalIndex | None:
    """The saved index for exactly these chunk ids, or None when missing or stale."""
    import bm25s

    folder = _folder(home, name, chunk_ids)
    if not (folder / "ids.json").exists():
        return None
    ids = json.loads((folder / "ids.json").read_text())
    model = bm25s.BM25.load(str(folder), show_progress=False) if ids else bm25s.BM25()
    return LexicalIndex(ids, model)
