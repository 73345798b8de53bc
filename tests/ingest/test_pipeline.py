"""Incremental ingest into a real embedded Chroma, with the tiny embedder."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from ingest import IngestConfig, IngestError, extracted_text, ingest, list_documents, remove_documents
from ingest.store import open_client, open_collection


def _corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "guide.md").write_text("# Guide\n\n" + "The battery stores energy for the night. " * 40)
    (folder / "notes.txt").write_text("Firmware update notes. The fan is quieter now. " * 25)
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "faq.html").write_text("<h1>FAQ</h1><p>Does it work in the cold? Yes, down to minus ten.</p>")
    (folder / "sub" / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (folder / "sub" / "table.xls").write_bytes(b"PK")
    (folder / ".hidden.txt").write_text("never ingested")
    return folder


def _state(config: IngestConfig) -> dict[str, tuple[str, dict]]:
    """Every chunk in the collection: id -> (text, metadata)."""
    collection = open_collection(open_client(config.home_path), config.collection, config.embedding_model, create=False)
    if collection is None:
        return {}
    got = collection.get(include=["documents", "metadatas"])
    return {i: (d, dict(m)) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])}


def _manifest_ids(config: IngestConfig) -> set[str]:
    return {i for record in list_documents(config) for i in record.chunk_ids}


def test_first_ingest_reports_every_file(tmp_path: Path, tiny_config: IngestConfig) -> None:
    corpus = _corpus(tmp_path / "docs")
    report = ingest([corpus], tiny_config, progress=False)
    by_name = {Path(f.path).name: f for f in report.files}
    assert set(by_name) == {"guide.md", "notes.txt", "faq.html", "broken.pdf", "table.xls"}
    assert by_name["guide.md"].status == "added" and by_name["guide.md"].chunks > 3
    assert by_name["broken.pdf"].status == "failed" and "corrupt" in by_name["broken.pdf"].reason
    assert by_name["table.xls"].status == "skipped"
    state = _state(tiny_config)
    assert len(state) == report.chunks_added == _manifest_ids(tiny_config).__len__()
    assert set(state) == _manifest_ids(tiny_config)
    text, meta = next(v for v in state.values() if v[1]["file_name"] == "faq.html")
    assert meta["section"] == "FAQ" and meta["source"] == str((corpus / "sub" / "faq.html").resolve())
    assert extracted_text(tiny_config, meta["file_hash"])[meta["start_char"] : meta["end_char"]] == text
    assert "1 failed" in report.summary() and "1 skipped" in report.summary()


def test_unchanged_corpus_costs_no_embedding(tmp_path: Path, tiny_embedder: str) -> None:
    model = shutil.copytree(tiny_embedder, tmp_path / "model")
    config = IngestConfig(home=str(tmp_path / "home"), embedding_model=str(model), chunk_tokens=48, chunk_overlap=8)
    corpus = _corpus(tmp_path / "docs")
    first = ingest([corpus], config, progress=False)
    before = _state(config)
    shutil.rmtree(model)  # a second run that tried to embed would fail to load it
    (corpus / "notes.txt").touch()  # new mtime, same content: hashed, found unchanged
    second = ingest([corpus], config, progress=False)
    assert second.count("unchanged") == first.count("added") == 3
    assert second.chunks_added == second.chunks_removed == 0
    assert _state(config) == before


def test_changed_file_replaces_its_chunks(tmp_path: Path, tiny_config: IngestConfig) -> None:
    corpus = _corpus(tmp_path / "docs")
    ingest([corpus], tiny_config, progress=False)
    old = {i for i, (_, m) in _state(tiny_config).items() if m["file_name"] == "notes.txt"}
    (corpus / "notes.txt").write_text("Completely new text about the inverter. " * 10)
    report = ingest([corpus], tiny_config, progress=False)
    assert [f.status for f in report.files if f.path.endswith("notes.txt")] == ["updated"]
    state = _state(tiny_config)
    new = {i for i, (_, m) in state.items() if m["file_name"] == "notes.txt"}
    assert new and not (new & old)
    assert all("inverter" in state[i][0] for i in new)
    assert set(state) == _manifest_ids(tiny_config)


def test_prune_and_remove(tmp_path: Path, tiny_config: IngestConfig) -> None:
    corpus = _corpus(tmp_path / "docs")
    ingest([corpus], tiny_config, progress=False)
    (corpus / "notes.txt").unlink()
    report = ingest([corpus], tiny_config, progress=False)
    assert any(r.path.endswith("notes.txt") for r in list_documents(tiny_config)), "no prune without --prune"
    report = ingest([corpus], tiny_config, prune=True, progress=False)
    assert [Path(f.path).name for f in report.files if f.status == "removed"] == ["notes.txt"]
    removed = remove_documents([corpus / "sub"], tiny_config)
    assert [Path(f.path).name for f in removed.files] == ["faq.html"]
    assert [Path(r.path).name for r in list_documents(tiny_config)] == ["guide.md"]
    assert set(_state(tiny_config)) == _manifest_ids(tiny_config)
    texts = list((tiny_config.home_path / "texts").iterdir())
    assert len(texts) == 1, "extracted texts of removed files are deleted"
    with pytest.raises(IngestError, match="is not in collection 'documents'"):
        remove_documents([corpus / "notes.txt"], tiny_config)


def test_file_that_turns_bad_keeps_its_previous_version(tmp_path: Path, tiny_config: IngestConfig) -> None:
    corpus = _corpus(tmp_path / "docs")
    ingest([corpus], tiny_config, progress=False)
    before = _state(tiny_config)
    (corpus / "notes.txt").write_bytes(bytes(range(256)) * 20)
    report = ingest([corpus], tiny_config, progress=False)
    failed = [f for f in report.files if f.status == "failed" and f.path.endswith("notes.txt")]
    assert failed and "previously ingested version is kept" in failed[0].reason
    assert _state(tiny_config) == before


def test_collections_are_separate_and_tied_to_their_model(tmp_path: Path, tiny_config: IngestConfig) -> None:
    corpus = _corpus(tmp_path / "docs")
    ingest([corpus / "guide.md"], tiny_config, progress=False)
    other = dataclasses.replace(tiny_config, collection="other")
    ingest([corpus / "notes.txt"], other, progress=False)
    assert [Path(r.path).name for r in list_documents(other)] == ["notes.txt"]
    assert [Path(r.path).name for r in list_documents(tiny_config)] == ["guide.md"]
    wrong_model = dataclasses.replace(tiny_config, embedding_model="sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(IngestError, match="was built with embedding model"):
        ingest([corpus / "notes.txt"], wrong_model, progress=False)


def test_missing_path_and_missing_model_are_user_errors(tmp_path: Path, tiny_config: IngestConfig) -> None:
    with pytest.raises(IngestError, match="does not exist"):
        ingest([tmp_path / "nope"], tiny_config, progress=False)
    corpus = _corpus(tmp_path / "docs")
    config = dataclasses.replace(tiny_config, embedding_model=str(tmp_path / "no-model"), collection="second")
    with pytest.raises(IngestError, match="could not be loaded"):
        ingest([corpus], config, progress=False)
    assert list_documents(config) == []


def test_one_writer_per_home(tmp_path: Path, tiny_config: IngestConfig) -> None:
    import fcntl

    tiny_config.home_path.mkdir(parents=True)
    with open(tiny_config.home_path / "ingest.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(IngestError, match="another ragtune process is writing"):
            ingest([_corpus(tmp_path / "docs")], tiny_config, progress=False)


def test_manifest_is_sqlite_with_one_row_per_file(tmp_path: Path, tiny_config: IngestConfig) -> None:
    ingest([_corpus(tmp_path / "docs")], tiny_config, progress=False)
    with sqlite3.connect(tiny_config.home_path / "manifest.sqlite") as db:
        rows = db.execute("SELECT path FROM files WHERE collection = 'documents'").fetchall()
        pending = db.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
    assert len(rows) == 3 and pending == 0


def test_a_wiped_store_is_noticed_and_refilled(tmp_path: Path, tiny_config: IngestConfig) -> None:
    corpus = _corpus(tmp_path / "docs")
    first = ingest([corpus], tiny_config, progress=False)
    open_client(tiny_config.home_path).delete_collection(tiny_config.collection)
    again = ingest([corpus], tiny_config, progress=False)
    assert again.count("added") == first.count("added") == 3
    assert set(_state(tiny_config)) == _manifest_ids(tiny_config)


def test_ingest_works_in_a_process_with_over_1024_open_files(tiny_config, tmp_path: Path) -> None:
    """The parser process is waited on with poll(): select() cannot watch descriptors past 1023."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip(f"this machine allows only {hard} open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1400), hard))
    held = [open(os.devnull) for _ in range(1100)]  # noqa: SIM115
    try:
        docs = tmp_path / "docs"
        docs.mkdir()
        (docs / "a.txt").write_text("The battery stores ten kilowatt hours.")
        report = ingest([docs], tiny_config, progress=False)
        assert report.count("added") == 1, report.files
    finally:
        for handle in held:
            handle.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
