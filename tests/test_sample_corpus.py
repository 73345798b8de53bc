"""The README's main job on the real bundled embedder: ingest the sample corpus, list it, find answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest import IngestConfig, list_documents
from ingest.embedding import embed, load_embedder
from ingest.store import open_client, open_collection
from tests.conftest import SAMPLE, run_ragtune

# Questions whose answer is in exactly one sample file.
QUESTIONS = {
    "What does error E116 current clamp reversed mean?": "error-codes.csv",
    "Which firmware version added support for three batteries in one system?": "release-notes.txt",
    "What happens to the capacity warranty if the battery was offline for over 12 months?": "warranty.pdf",
    "Where is my energy data stored and how long does deletion take?": "faq.html",
    "What is the minimum clearance in front of the battery for service access?": "installation-guide.docx",
    "Where do I find the 6-digit pairing code?": "user-guide.md",
}


@pytest.mark.slow
def test_ingest_sample_corpus_list_and_retrieve(_isolated_home: Path, bundled_embedder: str) -> None:
    first = run_ragtune("ingest")
    assert first.returncode == 0, first.stderr
    files = sorted(p.name for p in SAMPLE.iterdir() if p.is_file())
    assert f"{len(files)} files - {len(files)} ingested" in first.stdout

    again = run_ragtune("ingest")
    assert f"{len(files)} unchanged" in again.stdout and "chunks +0 -0" in again.stdout

    listing = run_ragtune("docs", "list")
    assert listing.returncode == 0
    for name in files:
        assert name in listing.stdout

    config = IngestConfig(home=str(_isolated_home))
    assert sorted(Path(r.path).name for r in list_documents(config)) == files
    collection = open_collection(open_client(config.home_path), config.collection, config.embedding_model, False)
    assert collection is not None
    model = load_embedder(config.embedding_model)
    vectors = embed(model, list(QUESTIONS), progress=False)
    result = collection.query(query_embeddings=vectors, n_results=3, include=["metadatas"])
    hits = [[m["file_name"] for m in metas] for metas in result["metadatas"]]
    found = sum(expected in top for expected, top in zip(QUESTIONS.values(), hits))
    assert found >= len(QUESTIONS) - 1, list(zip(QUESTIONS.values(), hits))
    for metas in result["metadatas"]:
        for m in metas:
            assert m["tokens"] <= 254 and m["end_char"] > m["start_char"]
