"""The manifest: which file, at which content hash, produced which chunk ids.

It lives in SQLite next to the collection and carries a journal (``pending``)
of chunk ids that may be in the collection without being committed. Every
write to the collection is preceded by a journal entry and followed by one
transaction that commits the new state and clears the entry, so a process
killed at any point leaves a journal that :meth:`Manifest.recover` turns back
into the last committed state: manifest and collection agree again, and
an interrupted update keeps the file's previous version.

A file too large for one write is written in parts. Each part but the last
is recorded in ``partial`` (the new version's content hash, the chunking
recipe and the chunk ids stored so far) in the same transaction that takes
them off the journal, so a rerun over the same file continues from there; a
run that does not finish the file drops that progress (:meth:`Manifest.abandon`).
The file's committed version, if any, stays whole until the last part commits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    collection TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    chunk_ids TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    PRIMARY KEY (collection, path)
);
CREATE TABLE IF NOT EXISTS pending (
    collection TEXT NOT NULL,
    path TEXT NOT NULL,
    chunk_ids TEXT NOT NULL,
    PRIMARY KEY (collection, path)
);
CREATE TABLE IF NOT EXISTS partial (
    collection TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    recipe TEXT NOT NULL,
    chunk_ids TEXT NOT NULL,
    PRIMARY KEY (collection, path)
);
"""


@dataclass(frozen=True)
class FileRecord:
    """One ingested file as the manifest knows it."""

    path: str
    sha256: str
    size: int
    mtime_ns: int
    chunk_ids: tuple[str, ...]
    ingested_at: str


class Manifest:
    """SQLite manifest of one data home, shared by all its collections.

    Args:
        path: The SQLite file; created with its tables when missing.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def files(self, collection: str) -> dict[str, FileRecord]:
        rows = self._db.execute(
            "SELECT path, sha256, size, mtime_ns, chunk_ids, ingested_at FROM files WHERE collection = ? ORDER BY path",
            (collection,),
        )
        return {r[0]: FileRecord(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5]) for r in rows}

    def collections(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT collection FROM files ORDER BY 1")]

    def hashes(self) -> set[str]:
        """Content hashes referenced by any collection."""
        return {r[0] for r in self._db.execute("SELECT DISTINCT sha256 FROM files")}

    def begin(self, collection: str, ids_by_path: Mapping[str, Iterable[str]]) -> None:
        """Journal chunk ids about to be written to the collection."""
        with self._transaction():
            for path, ids in ids_by_path.items():
                self._journal(collection, path, ids)

    def commit(
        self,
        collection: str,
        records: Iterable[FileRecord],
        stale: Mapping[str, set[str]],
        progress: Mapping[str, tuple[str, str, Iterable[str]]] | None = None,
    ) -> dict[str, set[str]]:
        """Record files as ingested, and parts of larger files as stored, in one transaction.

        Args:
            collection: The collection.
            records: Files now complete at a new version.
            stale: Ids of their earlier versions, by path.
            progress: Parts of files not yet complete: path -> (content hash,
                chunking recipe, chunk ids just stored).

        Returns:
            By path, the ids each completed file leaves behind (``stale`` and
            any journalled id its new version does not use): the caller deletes
            them next and then clears them with :meth:`settle`.
        """
        doomed: dict[str, set[str]] = {}
        with self._transaction():
            for r in records:
                self._db.execute(
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (collection, r.path, r.sha256, r.size, r.mtime_ns, json.dumps(list(r.chunk_ids)), r.ingested_at),
                )
                left = (self._pending_ids(collection, r.path) - set(r.chunk_ids)) | set(stale.get(r.path, ()))
                self._db.execute("DELETE FROM pending WHERE collection = ? AND path = ?", (collection, r.path))
                self._db.execute("DELETE FROM partial WHERE collection = ? AND path = ?", (collection, r.path))
                if left:
                    self._journal(collection, r.path, left)
                    doomed[r.path] = left
            for path, (sha256, recipe, ids) in (progress or {}).items():
                stored = set(ids)
                row = self.partial(collection, path)
                if row and row[:2] == (sha256, recipe):
                    stored |= row[2]
                self._db.execute(
                    "INSERT OR REPLACE INTO partial VALUES (?, ?, ?, ?, ?)",
                    (collection, path, sha256, recipe, json.dumps(sorted(stored))),
                )
                left = self._pending_ids(collection, path) - stored
                self._db.execute("DELETE FROM pending WHERE collection = ? AND path = ?", (collection, path))
                if left:
                    self._journal(collection, path, left)
        return doomed

    def partial(self, collection: str, path: str) -> tuple[str, str, set[str]] | None:
        """The stored part of a file's unfinished new version: (content hash, recipe, chunk ids), or None."""
        row = self._db.execute(
            "SELECT sha256, recipe, chunk_ids FROM partial WHERE collection = ? AND path = ?", (collection, path)
        ).fetchone()
        return (row[0], row[1], set(json.loads(row[2]))) if row else None

    def unfinished(self, collection: str) -> list[str]:
        """Files with a partly stored new version."""
        rows = self._db.execute("SELECT path FROM partial WHERE collection = ? ORDER BY path", (collection,))
        return [r[0] for r in rows]

    def abandon(self, collection: str, paths: Iterable[str]) -> None:
        """Give up the partly stored new versions of ``paths``: their ids go back to the journal.

        :meth:`interrupted` then lists them, and deleting them restores the
        committed state.
        """
        with self._transaction():
            for path in paths:
                row = self.partial(collection, path)
                if row is None:
                    continue
                self._db.execute("DELETE FROM partial WHERE collection = ? AND path = ?", (collection, path))
                self._journal(collection, path, row[2])

    def retire(self, collection: str, paths: Iterable[str]) -> dict[str, set[str]]:
        """Forget files, journalling their chunk ids for deletion; returns those ids."""
        out: dict[str, set[str]] = {}
        with self._transaction():
            for path in paths:
                row = self._db.execute(
                    "SELECT chunk_ids FROM files WHERE collection = ? AND path = ?", (collection, path)
                ).fetchone()
                out[path] = set(json.loads(row[0])) if row else set()
                self._db.execute("DELETE FROM files WHERE collection = ? AND path = ?", (collection, path))
                self._journal(collection, path, out[path])
        return out

    def settle(self, collection: str, paths: Iterable[str]) -> None:
        """Clear journal entries once their ids are gone from the collection."""
        with self._transaction():
            for path in paths:
                self._db.execute("DELETE FROM pending WHERE collection = ? AND path = ?", (collection, path))

    def touch(self, collection: str, path: str, size: int, mtime_ns: int) -> None:
        """Refresh the stat of an unchanged file so the next run skips hashing it."""
        self._db.execute(
            "UPDATE files SET size = ?, mtime_ns = ? WHERE collection = ? AND path = ?",
            (size, mtime_ns, collection, path),
        )

    def interrupted(self, collection: str) -> dict[str, set[str]]:
        """Journalled chunk ids that an interrupted run may have left in the collection.

        These are the ids of each journal entry that the manifest neither
        commits to nor keeps as a stored part of an unfinished version:
        deleting them restores exactly the committed state (plus those parts).
        """
        out: dict[str, set[str]] = {}
        rows = self._db.execute("SELECT path, chunk_ids FROM pending WHERE collection = ?", (collection,)).fetchall()
        for path, ids in rows:
            committed = self._db.execute(
                "SELECT chunk_ids FROM files WHERE collection = ? AND path = ?", (collection, path)
            ).fetchone()
            part = self.partial(collection, path)
            keep = (set(json.loads(committed[0])) if committed else set()) | (part[2] if part else set())
            out[path] = set(json.loads(ids)) - keep
        return out

    def _journal(self, collection: str, path: str, ids: Iterable[str]) -> None:
        known = self._pending_ids(collection, path)
        self._db.execute(
            "INSERT OR REPLACE INTO pending VALUES (?, ?, ?)",
            (collection, path, json.dumps(sorted(known | set(ids)))),
        )

    def _pending_ids(self, collection: str, path: str) -> set[str]:
        row = self._db.execute(
            "SELECT chunk_ids FROM pending WHERE collection = ? AND path = ?", (collection, path)
        ).fetchone()
        return set(json.loads(row[0])) if row else set()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")
