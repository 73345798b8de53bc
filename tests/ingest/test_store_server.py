"""The same ingest code against a real Chroma server started with `chroma run`."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest import IngestConfig, IngestError, ingest, list_documents, remove_documents
from ingest.store import open_client, open_collection


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    if not Path(chroma).exists():
        pytest.skip("the chroma CLI (from the chromadb package) is not installed")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [chroma, "run", "--path", str(tmp_path / "server-data"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("chroma server did not start")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_ingest_list_remove_against_a_chroma_server(
    tmp_path: Path, tiny_config: IngestConfig, chroma_server: str
) -> None:
    config = dataclasses.replace(tiny_config, chroma_url=chroma_server)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\n\n" + "Alpha text about batteries. " * 30)
    (docs / "b.txt").write_text("Beta text about inverters. " * 30)
    report = ingest([docs], config, progress=False)
    assert report.count("added") == 2
    collection = open_collection(
        open_client(config.home_path, chroma_server), config.collection, config.embedding_model
    )
    assert collection is not None and collection.count() == report.chunks_added
    assert not (config.home_path / "chroma").exists(), "nothing went to the embedded store"

    assert ingest([docs], config, progress=False).count("unchanged") == 2
    remove_documents([docs / "b.txt"], config)
    assert [Path(r.path).name for r in list_documents(config)] == ["a.md"]
    assert collection.count() == len(list_documents(config)[0].chunk_ids)


def test_unreachable_server_is_a_one_line_error(tiny_config: IngestConfig, tmp_path: Path) -> None:
    config = dataclasses.replace(tiny_config, chroma_url=f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(IngestError, match=r"cannot reach the Chroma server .* `chroma run"):
        ingest([tmp_path], config, progress=False)
