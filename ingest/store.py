"""The Chroma collection: embedded PersistentClient by default, a server by URL.

An embedded store is read correctly by one process only while no other writes
it: Chroma keeps its index in memory and does not see another process's
writes (its reads then fail with "Error finding id"). Every writer therefore
stamps the data home after each write (:func:`mark_written`), and a reader
holds a :class:`StoreWatcher`; when ``changed()`` says so, it opens a fresh
client with :func:`open_client` ``(..., fresh=True)`` and gets its collection again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ingest.embedding import AUTO
from ingest.errors import IngestError

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection


STAMP = "store.stamp"  # in the data home: grows by a byte with every write to the store


def open_client(home: Path, chroma_url: str = "", *, fresh: bool = False) -> ClientAPI:
    """Open Chroma: a server at ``chroma_url``, else an embedded store in ``home/chroma``.

    Args:
        home: The data home.
        chroma_url: A Chroma server's URL; empty for the embedded store.
        fresh: Read the embedded store from disk again instead of sharing the
            state this process already holds (which misses other processes'
            writes). Clients opened before keep working on their old state.

    Raises:
        IngestError: the server cannot be reached.
    """
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if not chroma_url:
        path = str(home / "chroma")
        if fresh:
            from chromadb.api.shared_system_client import SharedSystemClient

            # Chroma shares one system per path within a process; dropping it from that cache
            # (not stopping it: older clients may still use it) makes the next client load anew.
            SharedSystemClient._identifier_to_system.pop(path, None)
        return chromadb.PersistentClient(path=path, settings=settings)
    url = urlparse(chroma_url if "://" in chroma_url else f"http://{chroma_url}")
    if url.scheme not in ("http", "https") or not url.hostname:
        raise IngestError(f"chroma_url {chroma_url!r} is not an http(s) URL like http://127.0.0.1:8000")
    try:
        return chromadb.HttpClient(
            host=url.hostname,
            port=url.port or (443 if url.scheme == "https" else 8000),
            ssl=url.scheme == "https",
            settings=settings,
        )
    except Exception as e:
        raise IngestError(
            f"cannot reach the Chroma server at {chroma_url} ({type(e).__name__}): start it with "
            "`chroma run --path DIR --port PORT`, or unset chroma_url to use the embedded store"
        ) from None


def open_collection(client: ClientAPI, name: str, embedding_model: str, create: bool = True) -> Collection | None:
    """Get (or create) a cosine-space collection tied to one embedding model.

    Returns None when ``create`` is false and the collection does not exist. With
    ``embedding_model = "auto"`` any recorded model is accepted; a new collection
    records "auto" until ingest has chosen its model (:func:`record_model`).

    Raises:
        IngestError: the collection was built with another embedding model.
    """
    from chromadb.errors import NotFoundError

    if not create:
        try:
            collection = client.get_collection(name, embedding_function=None)
        except (NotFoundError, ValueError):
            return None
    else:
        collection = client.get_or_create_collection(
            name,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"embedding_model": embedding_model},
            embedding_function=None,
        )
    built_with = (collection.metadata or {}).get("embedding_model")
    if AUTO in (embedding_model, built_with):  # the model is, or is yet to be, chosen by ingest
        if built_with == AUTO and embedding_model != AUTO and create:
            record_model(collection, embedding_model)
        return collection
    if built_with and built_with != embedding_model:
        raise IngestError(
            f"collection {name!r} was built with embedding model {built_with!r}, not {embedding_model!r}: "
            "use that model, or another --collection"
        )
    return collection


def recorded_model(collection: Collection) -> str:
    """The embedding model recorded with a collection ("auto" while ingest has not chosen one yet)."""
    return str((collection.metadata or {}).get("embedding_model") or "")


def record_model(collection: Collection, embedding_model: str) -> None:
    """Record the embedding model that builds a collection (once chosen for "auto")."""
    collection.modify(metadata={**(collection.metadata or {}), "embedding_model": embedding_model})


def mark_written(home: Path) -> None:
    """Tell readers in other processes that the store changed: replace the data home's stamp file."""
    # One byte appended per write: the size changes every time, however close two writes
    # come (a replaced file could reuse its inode and timestamp); restarted now and then.
    with open(home / STAMP, "ab") as f:
        if f.tell() >= 4096:
            f.truncate(0)
        f.write(b".")


class StoreWatcher:
    """Tells a reader when the store of a data home was written since it last looked; one stat per call.

    Args:
        home: The data home.
    """

    def __init__(self, home: Path) -> None:
        self._stamp = Path(home) / STAMP
        self._seen = self._signature()

    def changed(self) -> bool:
        """True once after each write by any process (this one included) since the last call or creation."""
        now = self._signature()
        if now == self._seen:
            return False
        self._seen = now
        return True

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self._stamp)
        except OSError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)


def upsert(
    collection: Collection,
    ids: list[str],
    embeddings: Any,
    documents: list[str],
    metadatas: list[dict[str, Any]],
    batch_size: int,
) -> None:
    """Upsert in batches no larger than the client allows.

    Raises:
        IngestError: the store failed mid-write (the journal makes a rerun safe).
    """
    with _store_errors():
        for first in range(0, len(ids), batch_size):
            last = first + batch_size
            collection.upsert(
                ids=ids[first:last],
                embeddings=embeddings[first:last],
                documents=documents[first:last],
                metadatas=metadatas[first:last],  # type: ignore[arg-type]
            )


def delete(collection: Collection, ids: Iterable[str], batch_size: int) -> None:
    """Delete ids in batches; ids that are absent are ignored.

    Raises:
        IngestError: the store failed mid-write (the journal makes a rerun safe).
    """
    ids = list(ids)
    with _store_errors():
        for first in range(0, len(ids), batch_size):
            collection.delete(ids=ids[first : first + batch_size])


@contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except Exception as e:  # a lost server, a full disk: every write is journalled first
        detail = str(e).splitlines()[0][:160] if str(e) else ""
        raise IngestError(
            f"writing to Chroma failed ({type(e).__name__}: {detail}): fix the store, then run the same "
            "command again to finish; nothing is lost"
        ) from e
