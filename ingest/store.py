"""The Chroma collection: embedded PersistentClient by default, a server by URL."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ingest.errors import IngestError

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection


def open_client(home: Path, chroma_url: str = "") -> ClientAPI:
    """Open Chroma: a server at ``chroma_url``, else an embedded store in ``home/chroma``.

    Raises:
        IngestError: the server cannot be reached.
    """
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if not chroma_url:
        return chromadb.PersistentClient(path=str(home / "chroma"), settings=settings)
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

    Returns None when ``create`` is false and the collection does not exist.

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
    if built_with and built_with != embedding_model:
        raise IngestError(
            f"collection {name!r} was built with embedding model {built_with!r}, not {embedding_model!r}: "
            "use that model, or another --collection"
        )
    return collection


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
