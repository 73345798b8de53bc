"""Spreadsheets, OpenDocument text, RTF and legacy Word files: built here, and the example-docs ones."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest.errors import FileRejected
from ingest.loaders import load_file
from tests.conftest import shared_data

MB = 2**20


def test_xlsx_one_section_per_sheet_rows_as_table_text(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sales = book.active
    sales.title = "Sales"
    sales.append(["Region", "2022", "2023"])
    sales.append(["North", 1200.0, 1350])
    sales.append([None, None, None])
    sales.append(["South", 900, "n/a"])
    staff = book.create_sheet("Staff")
    staff.append(["Name", "Role"])
    staff.append(["Ana | Lopez", "Engineer"])
    book.create_sheet("Empty")
    path = tmp_path / "book.xlsx"
    book.save(path)
    sections = load_file(path, 64 * MB)
    assert [(s.section, s.page) for s in sections] == [("Sales", 1), ("Staff", 2)]
    assert sections[0].text == (
        "| Region | 2022 | 2023 |\n| --- | --- | --- |\n| North | 1200 | 1350 |\n| South | 900 | n/a |"
    )
    assert "| Ana / Lopez | Engineer |" in sections[1].text


def test_odt_headings_paragraphs_and_tables(tmp_path: Path) -> None:
    from odf.opendocument import OpenDocumentText
    from odf.table import Table, TableCell, TableRow
    from odf.text import H, P

    document = OpenDocumentText()
    document.text.addElement(H(outlinelevel=1, text="Maintenance"))
    document.text.addElement(P(text="Clean the filter every month."))
    document.text.addElement(H(outlinelevel=2, text="Parts"))
    table = Table()
    for cells in (["Part", "Price"], ["Filter", "12 EUR"]):
        row = TableRow()
        for value in cells:
            cell = TableCell()
            cell.addElement(P(text=value))
            row.addElement(cell)
        table.addElement(row)
    document.text.addElement(table)
    path = tmp_path / "manual.odt"
    document.save(str(path))
    sections = load_file(path, 64 * MB)
    assert [s.section for s in sections] == ["Maintenance", "Maintenance > Parts"]
    assert "Clean the filter every month." in sections[0].text
    assert "| Part | Price |\n| Filter | 12 EUR |" in sections[1].text


def test_rtf_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "note.rtf"
    path.write_bytes(rb"{\rtf1\ansi{\fonttbl\f0\fswiss Helvetica;}\f0\pard Caf\'e9 opens at {\b nine}.\par}")
    assert load_file(path, 64 * MB)[0].text == "Café opens at nine."
    bad = tmp_path / "bad.rtf"
    bad.write_text("not rtf at all")
    with pytest.raises(FileRejected, match=r"corrupt \.rtf"):
        load_file(bad, 64 * MB)


def test_doc_is_read_with_catdoc_or_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "legacy.doc"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600)
    with pytest.raises(FileRejected) as info:
        load_file(path, 64 * MB)
    if shutil.which("catdoc") is None:
        assert "apt-get install catdoc" in info.value.reason and "save it as .docx" in info.value.reason
    else:
        assert "catdoc could not read" in info.value.reason or "no text found" in info.value.reason


@pytest.mark.slow
def test_example_docs_in_these_formats() -> None:
    docs = shared_data("example-docs")
    stanley = load_file(docs / "stanley-cups.xlsx", 64 * MB)
    assert "| Maple Leafs | TOR | 13 |" in "\n".join(s.text for s in stanley)
    segments = load_file(docs / "2023-half-year-analyses-by-segment.xlsx", 64 * MB)
    assert len(segments) >= 2 and all(s.section for s in segments)
    with pytest.raises(FileRejected, match="password-protected"):
        load_file(docs / "password_protected.xlsx", 64 * MB)
    odt = load_file(docs / "simple.odt", 64 * MB)
    assert odt[0].section == "These are a few of my favorite things:" and "DOYLESTOWN" in odt[0].text
    assert "| Header row | Mon | Wed | Fri |" in load_file(docs / "fake.odt", 64 * MB)[0].text
    assert "Row 2, Cell 2" in load_file(docs / "fake-doc.rtf", 64 * MB)[0].text
    assert "All human beings" in load_file(docs / "language-docs" / "eng_spa_mult.rtf", 64 * MB)[0].text
    # a .docx saved under a .doc name is read as what it is
    assert "All human beings" in load_file(docs / "language-docs" / "eng_spa_mult.doc", 64 * MB)[0].text
    if shutil.which("catdoc"):
        assert load_file(docs / "fake.doc", 64 * MB)[0].text == "Lorem ipsum dolor sit amet."
        assert "Parrots" in load_file(docs / "simple.doc", 64 * MB)[0].text
