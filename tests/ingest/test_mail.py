"""E-mail: headers and body, and attachments ingested as documents of their own."""

from __future__ import annotations

import dataclasses
from email.message import EmailMessage
from pathlib import Path

import pytest

from ingest import ingest, list_documents, remove_documents
from ingest.errors import FileRejected
from ingest.loaders import load_file
from ingest.store import open_client, open_collection
from tests.conftest import shared_data
from tests.ingest.hostile_files import declared_bomb, docx_bytes
from tests.ingest.test_pdf import text_pdf

MB = 2**20


def write_mail(tmp_path: Path) -> Path:
    message = EmailMessage()
    message["From"] = "Ana Lopez <ana@example.com>"
    message["To"] = "support@example.com"
    message["Subject"] = "Price list and contract"
    message["Date"] = "Tue, 01 Dec 2026 09:30:00 +0000"
    message.set_content("Hello,\n\nthe new price list is attached. The contract renews in March.\n\nAna")
    message.add_alternative("<p>Hello, the <b>new price list</b> is attached.</p>", subtype="html")
    message.add_attachment(b"part,price\nfilter,12\npump,240\n", maintype="text", subtype="csv", filename="prices.csv")
    pdf = text_pdf(tmp_path / "contract.pdf", [[(72, 700, 11, "The contract renews every March.")]])
    message.add_attachment(pdf.read_bytes(), maintype="application", subtype="pdf", filename="contract.pdf")
    message.add_attachment(b"PK\x05\x06" + b"\0" * 18, maintype="application", subtype="zip", filename="logs.zip")
    path = tmp_path / "mail.eml"
    path.write_bytes(message.as_bytes())
    return path


def test_headers_body_and_attachments(tmp_path: Path) -> None:
    sections = load_file(write_mail(tmp_path), 64 * MB)
    first = sections[0].text
    assert first.startswith("From: Ana Lopez <ana@example.com>\nTo: support@example.com\nDate:")
    assert "Subject: Price list and contract" in first and "The contract renews in March." in first
    assert sections[0].document == ""
    notes = sections[1].text
    assert "Attachment prices.csv" in notes and "Attachment contract.pdf" in notes
    assert "Attachment logs.zip: not read (unsupported type .zip;" in notes
    by_document = {s.document: s for s in sections[2:]}
    assert set(by_document) == {"prices.csv", "contract.pdf"}
    assert "part: pump; price: 240" in by_document["prices.csv"].text
    assert by_document["contract.pdf"].page == 1


def test_a_file_that_is_not_mail_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "notes.eml"
    path.write_text("just some words\nwithout headers\n")
    with pytest.raises(FileRejected, match="not an e-mail message"):
        load_file(path, 64 * MB)


def test_attachments_are_documents_in_the_collection(tiny_config, tmp_path: Path) -> None:
    mail = write_mail(tmp_path)
    report = ingest([mail], tiny_config, progress=False)
    assert report.count("added") == 1
    assert [r.path for r in list_documents(tiny_config)] == [str(mail)]  # the manifest tracks the file
    collection = open_collection(
        open_client(tiny_config.home_path), tiny_config.collection, tiny_config.embedding_model, False
    )
    assert collection is not None
    metas = collection.get(include=["metadatas"])["metadatas"]
    sources = {m["source"] for m in metas}
    assert sources == {str(mail), f"{mail}#prices.csv", f"{mail}#contract.pdf"}
    pdf = [m for m in metas if m["source"] == f"{mail}#contract.pdf"]
    assert pdf[0]["file_name"] == "mail.eml#contract.pdf" and pdf[0]["file_type"] == "pdf"
    assert pdf[0]["container"] == str(mail) and pdf[0]["page"] == 1
    remove_documents([mail], tiny_config)
    assert collection.count() == 0


@pytest.mark.slow
def test_example_mail() -> None:
    # the example-docs mail is stored as .txt; read as mail under its proper extension
    text = shared_data("example-docs", "eml", "fake-email.txt").read_bytes()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fake-email.eml"
        path.write_bytes(text)
        sections = load_file(path, 64 * MB)
    assert sections[0].text.startswith("From: ")
    assert "Subject:" in sections[0].text


def bomb_mail(tmp_path: Path, attachment: bytes) -> Path:
    """A mail with a body, a CSV and ``attachment`` as bomb.docx."""
    message = EmailMessage()
    message["From"] = "ana@example.com"
    message["Subject"] = "Quarterly figures"
    message.set_content("The pump sold well this quarter; the figures are attached.")
    message.add_attachment(b"part,price\nfilter,12\npump,240\n", maintype="text", subtype="csv", filename="prices.csv")
    docx = "vnd.openxmlformats-officedocument.wordprocessingml.document"
    message.add_attachment(attachment, maintype="application", subtype=docx, filename="bomb.docx")
    path = tmp_path / "figures.eml"
    path.write_bytes(message.as_bytes())
    return path


def test_a_zip_bomb_attachment_is_one_note_and_the_rest_of_the_mail_is_kept(tiny_config, tmp_path: Path) -> None:
    bomb = declared_bomb(tmp_path / "bomb.docx").read_bytes()  # 37 KB declaring 1 GiB
    mail = bomb_mail(tmp_path, bomb)
    sections = load_file(mail, 64 * MB)
    assert sections[1].text.splitlines() == [
        "Attachment prices.csv",
        "Attachment bomb.docx: not read (unpacks to 1,024.8 MB (more than max_unzipped_mb 256): "
        "a zip bomb, or raise max_unzipped_mb to ingest it)",
    ]
    assert {s.document for s in sections} == {"", "prices.csv"}

    report = ingest([mail], tiny_config, progress=False)  # through the parser process
    assert [(f.status, f.reason) for f in report.files] == [("added", "")]
    collection = open_collection(
        open_client(tiny_config.home_path), tiny_config.collection, tiny_config.embedding_model, False
    )
    assert collection is not None
    got = collection.get(include=["metadatas", "documents"])
    assert {m["source"] for m in got["metadatas"]} == {str(mail), f"{mail}#prices.csv"}
    assert any("sold well" in d for d in got["documents"]) and any("bomb.docx: not read" in d for d in got["documents"])


def test_the_zip_limit_setting_applies_to_attachments(tiny_config, tmp_path: Path) -> None:
    mail = bomb_mail(tmp_path, docx_bytes("The valve opens at three bar."))  # unpacks to 0.8 MB
    small = dataclasses.replace(tiny_config, max_unzipped_mb=0.5)
    report = ingest([mail], small, progress=False)
    assert report.files[0].status == "added"
    collection = open_collection(open_client(small.home_path), small.collection, small.embedding_model, False)
    assert collection is not None
    documents = collection.get(include=["documents"])["documents"]
    assert any("max_unzipped_mb 0.5" in d for d in documents)
    assert not any("three bar" in d for d in documents)
