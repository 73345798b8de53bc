"""Kept conversations: one SQLite file in the data home, each conversation owned by one login user.

A conversation is an ordered list of messages; each message has the text the
model remembers (``content``), the text the chat shows (``shown``, with
citations and sources) and optional data (an answer's sources, for ratings).
Every call opens its own connection, so browser sessions on several threads
share one store safely (SQLite serialises the writes).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assistant.errors import AssistantError

CONVERSATIONS_FILE = "conversations.sqlite"
UNTITLED = "New conversation"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, user TEXT NOT NULL, title TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_user ON conversations (user, updated);
CREATE TABLE IF NOT EXISTS messages (
    conversation TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    position INTEGER NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL, shown TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (conversation, position)
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass
class Message:
    """One message of a conversation."""

    role: str
    content: str
    shown: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Conversation:
    """A conversation with its messages, oldest first."""

    id: str
    title: str
    created: str
    updated: str
    messages: list[Message] = field(default_factory=list)

    def markdown(self) -> str:
        """The conversation as a Markdown document (answers as shown, with their citations)."""
        parts = [f"# {self.title}", f"*{self.created[:19].replace('T', ' ')} UTC*"]
        for m in self.messages:
            who = "You" if m.role == "user" else "Assistant"
            parts.append(f"**{who}:**\n\n{m.content if m.role == 'user' else m.shown or m.content}")
        return "\n\n".join(parts) + "\n"

    def as_json(self) -> str:
        """The conversation as JSON: id, title, times and every message with its data."""
        return json.dumps(
            {
                "id": self.id,
                "title": self.title,
                "created": self.created,
                "updated": self.updated,
                "messages": [
                    {"role": m.role, "content": m.content, "shown": m.shown, "data": m.data} for m in self.messages
                ],
            },
            ensure_ascii=False,
            indent=2,
        )


class Conversations:
    """The conversation store of one data home.

    Args:
        path: The SQLite file; created with its tables when missing.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            with db:
                yield db
        finally:
            db.close()

    def create(self, user: str, title: str = UNTITLED) -> str:
        """A new, empty conversation of ``user``; returns its id."""
        cid = uuid.uuid4().hex
        now = _now()
        with self._db() as db:
            db.execute(
                "INSERT INTO conversations VALUES (?, ?, ?, ?, ?)", (cid, user, title.strip() or UNTITLED, now, now)
            )
        return cid

    def titles(self, user: str, search: str = "") -> list[tuple[str, str]]:
        """``user``'s conversations as (id, title), most recently updated first.

        Args:
            user: The login user ("" without a login).
            search: Keep conversations whose title or messages contain this text (any case).
        """
        query = "SELECT id, title FROM conversations c WHERE user = ?"
        args: list[Any] = [user]
        if search.strip():
            like = f"%{search.strip().lower()}%"
            query += (
                " AND (lower(title) LIKE ? OR EXISTS (SELECT 1 FROM messages m"
                " WHERE m.conversation = c.id AND lower(m.content) LIKE ?))"
            )
            args += [like, like]
        with self._db() as db:
            return [(r[0], r[1]) for r in db.execute(query + " ORDER BY updated DESC", args)]

    def last(self, user: str) -> str | None:
        """The id of ``user``'s most recently updated conversation."""
        found = self.titles(user)
        return found[0][0] if found else None

    def get(self, user: str, cid: str) -> Conversation:
        """Conversation ``cid`` of ``user``.

        Raises:
            AssistantError: no such conversation of this user.
        """
        with self._db() as db:
            row = db.execute(
                "SELECT id, title, created, updated FROM conversations WHERE id = ? AND user = ?", (cid, user)
            ).fetchone()
            if row is None:
                raise AssistantError("that conversation no longer exists: pick another or start a new one")
            messages = [
                Message(r[0], r[1], r[2], json.loads(r[3]))
                for r in db.execute(
                    "SELECT role, content, shown, data FROM messages WHERE conversation = ? ORDER BY position", (cid,)
                )
            ]
        return Conversation(row[0], row[1], row[2], row[3], messages)

    def _owned(self, db: sqlite3.Connection, user: str, cid: str) -> None:
        if db.execute("SELECT 1 FROM conversations WHERE id = ? AND user = ?", (cid, user)).fetchone() is None:
            raise AssistantError("that conversation no longer exists: pick another or start a new one")

    def append(self, user: str, cid: str, messages: list[Message]) -> None:
        """Add ``messages`` at the end of conversation ``cid``; the first question titles an untitled one."""
        with self._db() as db:
            self._owned(db, user, cid)
            start = db.execute("SELECT count(*) FROM messages WHERE conversation = ?", (cid,)).fetchone()[0]
            db.executemany(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (cid, start + n, m.role, m.content, m.shown, json.dumps(m.data, ensure_ascii=False))
                    for n, m in enumerate(messages)
                ],
            )
            first = next((m.content for m in messages if m.role == "user"), "")
            if start == 0 and first:
                title = " ".join(first.split())
                title = title if len(title) <= 60 else title[:60].rsplit(" ", 1)[0] + "…"
                db.execute("UPDATE conversations SET title = ? WHERE id = ? AND title = ?", (title, cid, UNTITLED))
            db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (_now(), cid))

    def truncate(self, user: str, cid: str, keep: int) -> None:
        """Keep only the first ``keep`` messages of ``cid`` (regenerate and edit drop the last turn)."""
        with self._db() as db:
            self._owned(db, user, cid)
            db.execute("DELETE FROM messages WHERE conversation = ? AND position >= ?", (cid, keep))
            db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (_now(), cid))

    def rename(self, user: str, cid: str, title: str) -> None:
        if not title.strip():
            raise AssistantError("type a new title first")
        with self._db() as db:
            self._owned(db, user, cid)
            db.execute("UPDATE conversations SET title = ? WHERE id = ?", (" ".join(title.split())[:200], cid))

    def delete(self, user: str, cid: str) -> None:
        with self._db() as db:
            self._owned(db, user, cid)
            db.execute("DELETE FROM conversations WHERE id = ?", (cid,))
