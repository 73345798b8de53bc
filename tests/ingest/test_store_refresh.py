"""A reader process follows what another process ingests into the same data home."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from ingest import IngestConfig, ingest, list_documents
from ingest.store import StoreWatcher, open_client, open_collection


def _ingest_in_subprocess(config: IngestConfig, folder: Path) -> None:
    command = [
        sys.executable, "-m", "ingest", "ingest", str(folder), "--home", str(config.home_path),
        "--embedding-model", config.embedding_model, "--chunk-tokens", str(config.chunk_tokens),
        "--chunk-overlap", str(config.chunk_overlap),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_reader_reopens_after_another_process_writes(tmp_path: Path, tiny_config: IngestConfig) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("The pump warranty lasts two years from the date of purchase. " * 20)
    ingest([folder], tiny_config, progress=False)

    watcher = StoreWatcher(tiny_config.home_path)
    client = open_client(tiny_config.home_path)
    collection = open_collection(client, tiny_config.collection, tiny_config.embedding_model, create=False)
    assert collection is not None and collection.count() > 0
    assert not watcher.changed()

    (folder / "b.txt").write_text("Error E42 of the pump means that its filter is blocked. " * 20)
    (folder / "a.txt").write_text("The pump warranty now lasts three years from the date of purchase. " * 20)
    _ingest_in_subprocess(tiny_config, folder)  # adds b.txt, replaces a.txt's chunks

    assert watcher.changed() and not watcher.changed()  # once per change, one stat per call
    fresh = open_client(tiny_config.home_path, fresh=True)
    collection = open_collection(fresh, tiny_config.collection, tiny_config.embedding_model, create=False)
    assert collection is not None
    ids = [i for record in list_documents(tiny_config) for i in record.chunk_ids]
    got = collection.get(ids=ids, include=["metadatas"])  # the shared client fails here: "Error finding id"
    assert sorted(got["ids"]) == sorted(ids) and collection.count() == len(ids)
    found = collection.query(query_embeddings=[_vector(collection, ids[0])], n_results=len(ids))
    assert set(found["ids"][0]) == set(ids)
    sources = {Path(m["source"]).name for m in got["metadatas"]}
    assert sources == {"a.txt", "b.txt"}


def _vector(collection: Any, chunk: str) -> list[float]:
    return list(collection.get(ids=[chunk], include=["embeddings"])["embeddings"][0])
