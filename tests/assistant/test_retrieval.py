"""Hybrid retrieval over a real Chroma collection with the tiny embedder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from assistant.errors import AssistantError
from assistant.retrieval import Retriever
from ingest import IngestConfig, ingest, remove_documents

DOCS = {
    "battery.md": "# Battery\n\nThe battery stores 10 kWh. Its warranty lasts ten years.",
    "errors.csv": "code,meaning\nE116,current clamp reversed\nE101,grid voltage too high\n",
    "garden.txt": "Tomatoes need sun and water. Prune the plants in summer.",
    "fan.txt": "The fan gets quieter after firmware 1.4. Clean the filter monthly.",
}


@pytest.fixture
def corpus(tmp_path: Path, tiny_config: IngestConfig) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    ingest([folder], tiny_config, progress=False)
    return folder


def test_keyword_query_finds_its_chunk_through_bm25(corpus: Path, tiny_config: IngestConfig) -> None:
    retriever = Retriever(tiny_config, min_score=-1.0)
    result = retriever.search("E116 clamp", k=2)
    top = result.hits[0]
    assert top.metadata["file_name"] == "errors.csv" and top.lexical_rank == 1
    assert top.score > 0 and -1.0 <= top.similarity <= 1.0
    assert result.hits == sorted(result.hits, key=lambda h: -h.score)


def test_threshold_gives_an_explicit_nothing_relevant(corpus: Path, tiny_config: IngestConfig) -> None:
    result = Retriever(tiny_config, min_score=0.9999).search("tomatoes and summer", k=3)
    assert not result.relevant and result.hits == []
    assert result.below_threshold, "the closest chunks are still reported for inspection"


def test_source_filter_and_mmr(corpus: Path, tiny_config: IngestConfig) -> None:
    retriever = Retriever(tiny_config, min_score=-1.0)
    hits = retriever.search("warranty firmware tomatoes", k=4, source="fan.txt").hits
    assert hits and {h.metadata["file_name"] for h in hits} == {"fan.txt"}
    by_path = retriever.search("warranty", k=4, source=str(corpus / "battery.md")).hits
    assert {h.metadata["file_name"] for h in by_path} == {"battery.md"}
    diverse = retriever.search("battery warranty", k=3, mmr=True).hits
    assert len({h.id for h in diverse}) == len(diverse) == 3


def test_lexical_index_follows_ingest_and_remove(corpus: Path, tiny_config: IngestConfig) -> None:
    (corpus / "new.txt").write_text("Zeppelins float on hydrogen.")
    ingest([corpus], tiny_config, progress=False)
    hits = Retriever(tiny_config, min_score=-1.0).search("zeppelins hydrogen", k=1).hits
    assert hits[0].metadata["file_name"] == "new.txt" and hits[0].lexical_rank == 1
    remove_documents([corpus / "new.txt"], tiny_config)
    hits = Retriever(tiny_config, min_score=-1.0).search("zeppelins hydrogen", k=5).hits
    assert all(h.metadata["file_name"] != "new.txt" for h in hits)


def test_langchain_retriever(corpus: Path, tiny_config: IngestConfig) -> None:
    from langchain_core.retrievers import BaseRetriever

    lc = Retriever(tiny_config, min_score=-1.0).as_langchain(k=2)
    assert isinstance(lc, BaseRetriever)
    docs = lc.invoke("E116 clamp")
    assert len(docs) == 2 and docs[0].metadata["file_name"] == "errors.csv" and "score" in docs[0].metadata


def test_empty_collection_and_empty_query_are_user_errors(tiny_config: IngestConfig, corpus: Path) -> None:
    with pytest.raises(AssistantError, match="is empty: add documents first"):
        Retriever(dataclasses.replace(tiny_config, collection="nothing-here"))
    with pytest.raises(AssistantError, match="query is empty"):
        Retriever(tiny_config).search("   ")
