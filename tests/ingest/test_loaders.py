"""Loaders on small real files: the sample corpus, and files built here in each format."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest

from ingest.errors import FileRejected
from ingest.loaders import decode_text, load_file, split_markdown
from tests.conftest import SAMPLE

MB = 2**20


def _text(sections) -> str:
    return "\n\n".join(s.text for s in sections)


def test_every_sample_file_loads_with_text() -> None:
    files = sorted(p for p in SAMPLE.iterdir() if p.is_file())
    suffixes = {p.suffix for p in files}
    assert {".md", ".html", ".pdf", ".docx", ".pptx", ".csv", ".json", ".txt"} <= suffixes
    for path in files:
        sections = load_file(path, 64 * MB)
        assert sum(len(s.text) for s in sections) > 100, path


def test_markdown_headings_become_section_paths() -> None:
    text = "intro\n# Guide\nabout\n## Setup\nsteps\n```\n# not a heading\n```\n## Use\nuse it\n# Other\nend"
    sections = split_markdown(text)
    assert [s.section for s in sections] == ["", "Guide", "Guide > Setup", "Guide > Use", "Other"]
    assert "# not a heading" in sections[2].text


def test_pdf_pages_are_numbered_and_headings_become_section_paths() -> None:
    sections = load_file(SAMPLE / "warranty.pdf", 64 * MB)
    pages = [s.page for s in sections]
    assert pages == sorted(pages) and set(pages) == {1, 2, 3}
    assert [s.section for s in sections if s.page == 2] == ["2. What the warranty does not cover"]
    # the short title atop each page goes on with the section that follows it
    assert all(s.text.startswith("Solstice HB-10 Home Battery - Limited Warranty\n") for s in sections)


def test_pptx_slides_are_pages_with_titles() -> None:
    sections = load_file(SAMPLE / "quick-start.pptx", 64 * MB)
    assert sections[0].page == 1 and sections[0].section
    assert any("Notes:" in s.text for s in sections)


def test_docx_keeps_headings_and_tables() -> None:
    sections = load_file(SAMPLE / "installation-guide.docx", 64 * MB)
    assert any(s.section for s in sections)
    assert any(" | " in s.text for s in sections)
    # "# Before you start" has nothing of its own before its first subsection: it goes on with it
    first = next(s for s in sections if "# Before you start" in s.text)
    assert first.text.startswith("# Before you start\n## Who may install the HB-10\nOnly Brightwell")
    assert first.section == "Before you start > Who may install the HB-10"


def test_a_bare_heading_joins_its_first_subsection_only(tmp_path: Path) -> None:
    text = "# Guide\n## Setup\nPlug it in.\n## Use\nPress start.\n# Notes\n# Other\nend"
    (tmp_path / "guide.md").write_text(text, encoding="utf-8")
    sections = load_file(tmp_path / "guide.md", 64 * MB)
    assert [(s.section, s.text) for s in sections] == [
        ("Guide > Setup", "# Guide\n## Setup\nPlug it in."),
        ("Guide > Use", "## Use\nPress start."),
        ("Notes", "# Notes"),  # the next heading is no subsection of it: it stays
        ("Other", "# Other\nend"),
    ]


def test_html_drops_scripts_and_styles() -> None:
    sections = load_file(SAMPLE / "faq.html", 64 * MB)
    text = _text(sections)
    assert "function" not in text and "{" not in text
    assert any(s.section for s in sections)


def _pdf_bytes(password: str | None) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(SAMPLE / "warranty.pdf").pages:
        writer.add_page(page)
    if password is not None:
        writer.encrypt(user_password=password, owner_password="owner", algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_pdf_encrypted_with_empty_password_is_read(tmp_path: Path) -> None:
    path = tmp_path / "open.pdf"
    path.write_bytes(_pdf_bytes(""))
    assert "warranty" in _text(load_file(path, 64 * MB)).lower()


def test_pdf_with_password_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "locked.pdf"
    path.write_bytes(_pdf_bytes("secret"))
    with pytest.raises(FileRejected, match="password-protected") as info:
        load_file(path, 64 * MB)
    assert info.value.failed


@pytest.mark.parametrize(
    ("name", "data", "reason", "failed"),
    [
        ("empty.txt", b"", "empty file", False),
        ("blank.md", b"  \n\t\n", "no text found", False),
        ("sheet.xls", b"\xd0\xcf\x11\xe0", "unsupported type .xls; save it as .xlsx", False),
        ("sheet.xlsx", b"PK\x03\x04", "corrupt .xlsx", True),
        ("noext", b"hello", "unsupported type (no extension)", False),
        ("binary.txt", bytes(range(256)) * 40, "binary content", True),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage", "corrupt", True),
        ("broken.docx", b"this is not a zip archive", "corrupt .docx", True),
        ("ole.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "password-protected or legacy", True),
        ("bad.jsonl", b'{"a": 1}\n{"a": \n', "invalid JSON on line 2", True),
        ("bad.json", b'{"a": [1, 2', "invalid JSON at line 1", True),
    ],
)
def test_bad_files_get_one_line_reasons(tmp_path: Path, name: str, data: bytes, reason: str, failed: bool) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(FileRejected) as info:
        load_file(path, 64 * MB)
    assert reason in info.value.reason
    assert info.value.failed is failed
    assert "\n" not in info.value.reason


def test_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("word " * 50_000)
    with pytest.raises(FileRejected, match=r"too large .* raise max_file_mb"):
        load_file(path, 100_000)
    assert load_file(path, MB)


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        ("Grüße aus Köln, naïve café".encode("utf-16"), "Grüße aus Köln, naïve café"),
        ("Grüße aus Köln, naïve café".encode("utf-16-le"), "Grüße aus Köln, naïve café"),
        ("Grüße aus Köln, naïve café".encode("utf-32"), "Grüße aus Köln, naïve café"),
        ("Grüße aus Köln, naïve café".encode("utf-8-sig"), "Grüße aus Köln, naïve café"),
        ("Smart “quotes” – and € signs are cp1252".encode("cp1252"), "Smart “quotes” – and € signs are cp1252"),
    ],
)
def test_text_encodings_are_detected(encoded: bytes, expected: str) -> None:
    assert decode_text(encoded).strip() == expected


def test_csv_rows_keep_their_headers_and_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "codes.csv"
    path.write_text("code;name;fix\nE1;Overheat;Let it cool down\nE2;Fan, stuck;Clean the fan\n")
    text = _text(load_file(path, MB))
    assert "code: E1; name: Overheat; fix: Let it cool down" in text
    assert "name: Fan, stuck" in text


def test_csv_headers_over_text_columns_are_recognised(tmp_path: Path) -> None:
    # csv.Sniffer says "no header" when every column is text; the names are still far shorter than the values
    path = tmp_path / "codes.csv"
    path.write_text(
        "code,name,meaning\n"
        'E1,Overheat,"The inverter is above 70 degrees, so power is reduced until it cools down."\n'
        "E10,Fan stuck,The cooling fan does not turn; clean it or ask your installer to replace it.\n"
        "E100,Meter missing,No data comes from the energy meter.\n"
    )
    assert not csv.Sniffer().has_header(path.read_text())
    sections = load_file(path, MB)
    assert len(sections) == 3  # a record per row: a question about one code finds its row alone
    assert sections[1].text == (
        "code: E10; name: Fan stuck; "
        "meaning: The cooling fan does not turn; clean it or ask your installer to replace it."
    )
    # a first row that reads like the others is data, not a header
    path.write_text(
        "Anna Berg,Installer who fitted the first batteries in the north region\n"
        "Jon Dale,Support engineer for inverters and meters in the south region\n"
        "Eva Lindqvist,Trainer for new installers\n"
    )
    assert _text(load_file(path, MB)).startswith("Anna Berg | Installer who fitted")


def test_json_and_jsonl_are_flattened(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"model": "X1", "limits": {"temp": [0, 45]}, "tags": ["a", "b"]}))
    text = _text(load_file(tmp_path / "a.json", MB))
    assert "model: X1" in text and "limits.temp: 0, 45" in text and "tags: a, b" in text
    (tmp_path / "b.jsonl").write_text('{"q": "one"}\n\n{"q": "two"}\n')
    assert _text(load_file(tmp_path / "b.jsonl", MB)) == "q: one\n\nq: two"


def test_rst_titles_become_sections(tmp_path: Path) -> None:
    path = tmp_path / "doc.rst"
    path.write_text("=====\nGuide\n=====\n\nIntro.\n\nSetup\n-----\n\nSteps here.\n")
    sections = load_file(path, MB)
    assert [s.section for s in sections] == ["Guide", "Guide > Setup"]


def test_epub_chapters_are_pages(tmp_path: Path) -> None:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("id1")
    book.set_title("Test book")
    book.set_language("en")
    chapters = []
    for number in (1, 2):
        chapter = epub.EpubHtml(title=f"Chapter {number}", file_name=f"c{number}.xhtml", lang="en")
        chapter.content = f"<h1>Chapter {number}</h1><p>Text of chapter {number}.</p>"
        book.add_item(chapter)
        chapters.append(chapter)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = chapters
    epub.write_epub(str(tmp_path / "book.epub"), book)
    sections = load_file(tmp_path / "book.epub", MB)
    assert [(s.page, s.section) for s in sections] == [(1, "Chapter 1"), (2, "Chapter 2")]
    assert "Text of chapter 2." in sections[1].text


def test_docx_and_pptx_as_plain_zip_are_corrupt(tmp_path: Path) -> None:
    for name in ("x.docx", "x.pptx"):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("hello.txt", "not an office document")
        with pytest.raises(FileRejected, match="corrupt"):
            load_file(path, MB)
