"""The same ingest code against a real Chroma server started with `chroma run`."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest import IngestConfig, IngestError, ingest, list_documents, remove_documents
from ingest.store import open_client, open_collection
from tests.conftest import free_port


class ChromaServer:
    """A real `chroma run` process on a free loopback port, restartable on the same data."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
        if not Path(chroma).exists():
            pytest.skip("the chroma CLI (from the chromadb package) is not installed")
        command = [chroma, "run", "--path", str(self.data), "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("chroma server did not start")
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChromaServer]:
    running = ChromaServer(tmp_path / "server-data")
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def chroma_server(server: ChromaServer) -> str:
    return server.url


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
    config = dataclasses.replace(tiny_config, chroma_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(IngestError, match=r"cannot reach the Chroma server .* `chroma run"):
        ingest([tmp_path], config, progress=False)


class _KillOnStep(logging.Handler):
    def __init__(self, step: str, server: ChromaServer) -> None:
        super().__init__()
        self.step, self.server = step, server

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(f"step: {self.step}"):
            self.server.stop()


def test_server_lost_mid_ingest_then_rerun_completes(
    tmp_path: Path, tiny_config: IngestConfig, server: ChromaServer
) -> None:
    config = dataclasses.replace(tiny_config, chroma_url=server.url)
    docs = tmp_path / "docs"
    docs.mkdir()
    for n in range(3):
        (docs / f"d{n}.txt").write_text(f"Document {n} about battery cells. " * 30)
    ingest([docs], config, progress=False)
    for n in range(3):
        (docs / f"d{n}.txt").write_text(f"Document {n}, second edition, about inverters. " * 30)

    log = logging.getLogger("ragtune.ingest")
    handler = _KillOnStep("embedded", server)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        with pytest.raises(IngestError, match="run the same command again to finish") as info:
            ingest([docs], config, progress=False)
    finally:
        log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
    assert "\n" not in str(info.value)

    server.start()
    report = ingest([docs], config, progress=False)
    assert report.count("updated") == 3
    collection = open_collection(open_client(config.home_path, server.url), config.collection, config.embedding_model)
    assert collection is not None
    got = collection.get(include=["documents"])
    assert set(got["ids"]) == {i for r in list_documents(config) for i in r.chunk_ids}
    assert all("second edition" in d for d in got["documents"])


def test_retrieval_docs_remove_and_eval_use_the_server(
    tmp_path: Path, tiny_config: IngestConfig, chroma_server: str
) -> None:
    from assistant.cli import main
    from assistant.evaluate import Dataset, Question, evaluate_retrieval
    from assistant.retrieval import Retriever

    config = dataclasses.replace(tiny_config, chroma_url=chroma_server)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cells.md").write_text("# Cells\n\n" + "The battery pack holds forty eight lithium cells. " * 20)
    (docs / "grid.txt").write_text("The inverter feeds alternating current into the grid. " * 20)
    ingest([docs], config, progress=False)

    def sources(query: str) -> list[str]:
        found = Retriever(config, min_score=-1.0, device="cpu").search(query, 3).hits
        return [Path(h.source).name for h in found]

    assert sources("lithium cells battery pack")[0] == "cells.md"
    assert "grid.txt" in sources("inverter grid alternating current")
    home = str(config.home_path)
    common = [
        "--home",
        home,
        "--set",
        f"embedding_model={config.embedding_model}",
        "--set",
        f"chroma_url={chroma_server}",
    ]
    assert main(["docs", "remove", str(docs / "grid.txt"), *common]) == 0
    assert set(sources("inverter grid alternating current")) == {"cells.md"}
    collection = open_collection(
        open_client(config.home_path, chroma_server), config.collection, config.embedding_model
    )
    assert collection is not None and collection.count() == len(list_documents(config)[0].chunk_ids)

    text = (docs / "cells.md").read_text()
    start = text.index("forty eight")
    dataset = Dataset(
        "cells-eval",
        [Question("q", "How many cells?", ("forty eight",), "cells.md", ((start, start + 11),), text)],
        {"cells.md": text},
    )
    report = evaluate_retrieval(dataset, config, device="cpu")
    assert report["ragtune"]["recall@1"] == 1.0 and report["ragtune"]["chunks"] > 0
    assert not (config.home_path / "chroma").exists(), "retrieval and eval used the server, not an embedded store"
