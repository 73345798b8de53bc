"""Every file of ../shared/data/example-docs is either ingested or reported with a reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest import IngestConfig, discover, ingest
from ingest.store import open_client, open_collection
from tests.conftest import shared_data

# Known-bad files and the reason each must be reported with.
KNOWN_BAD = {
    "pdf/password.pdf": ("failed", "password-protected PDF"),
    "empty.txt": ("skipped", "empty file"),
    "fake-text-all-whitespace.txt": ("skipped", "no text found"),
    "picture.pptx": ("skipped", "no text found"),
    "password_protected.xlsx": ("failed", "password-protected"),
    "empty.xlsx": ("skipped", "no text found"),
    "README.org": ("skipped", "unsupported type .org"),
}
if shutil.which("catdoc") is None:
    KNOWN_BAD["fake.doc"] = ("skipped", "legacy .doc needs catdoc (apt-get install catdoc), or save it as .docx")
# Hard cases that must come through with text.
MUST_INGEST = [
    "pdf/copy-protected.pdf",  # encrypted with an empty user password
    "fake-text-utf-16-be.txt",
    "fake-text-utf-32.txt",
    "fake-html-cp1252.html",
    "example-steelJIS-datasheet-utf-16.html",
    "umlauts-non-utf8.md",
    "pdf/korean-text-with-tables.pdf",
    "grid_offset_error.docx",
    "fake-power-point-malformed.pptx",
    "winter-sports.epub",
    "stanley-cups-utf-16.csv",
    "handbook-872p.docx",
    "pdf/loremipsum-flat.pdf",  # image-only: read by OCR
    "stanley-cups.xlsx",
    "vodafone.xlsx",
    "2023-half-year-analyses-by-segment.xlsx",
    "fake.odt",
    "simple.odt",
    "fake-doc.rtf",
    "language-docs/eng_spa_mult.rtf",
    "language-docs/eng_spa_mult.doc",  # a .docx under a .doc name
]
NEWLY_SUPPORTED = (".xlsx", ".odt", ".rtf", ".eml", ".doc")


@pytest.mark.slow
def test_every_example_doc_is_ingested_or_reported(tiny_embedder: str, _isolated_home: Path) -> None:
    docs = shared_data("example-docs")
    config = IngestConfig(home=str(_isolated_home), embedding_model=tiny_embedder, chunk_tokens=120, chunk_overlap=16)
    report = ingest([docs], config, progress=False)
    by_path = {Path(f.path).relative_to(docs.resolve()).as_posix(): f for f in report.files}
    assert set(by_path) == {p.relative_to(docs.resolve()).as_posix() for p in discover([docs])}
    for f in report.files:
        assert f.status in ("added", "skipped", "failed")
        assert (f.status == "added") == (f.reason == ""), f
        assert "\n" not in f.reason
    for name, (status, reason) in KNOWN_BAD.items():
        assert by_path[name].status == status and reason in by_path[name].reason, by_path[name]
    for name in MUST_INGEST:
        assert by_path[name].status == "added" and by_path[name].chunks > 0, by_path[name]
    for name, f in by_path.items():
        if name.endswith(NEWLY_SUPPORTED):
            assert "unsupported" not in f.reason, f
    assert report.ocr_pages >= 1
    assert report.count("failed") <= 2, [f for f in report.files if f.status == "failed"]

    collection = open_collection(open_client(config.home_path), config.collection, tiny_embedder, create=False)
    assert collection is not None and collection.count() == report.chunks_added
    korean = collection.get(where={"file_name": "korean-text-with-tables.pdf"}, include=["documents"])
    assert any("적립" in d for d in korean["documents"])
    cp1252 = collection.get(where={"file_name": "fake-html-cp1252.html"}, include=["documents"])
    text = " ".join(cp1252["documents"])
    assert "très chaud" in text and "niño" in text, text
