"""Spreadsheets, OpenDocument text, RTF and legacy Word files as text sections.

``.xlsx`` through openpyxl (one section per sheet, each row a Markdown table
row), ``.odt`` through odfpy (headings give the heading path), ``.rtf`` through
striprtf, and legacy ``.doc`` through Debian's ``catdoc`` when it is installed.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

from ingest.errors import FileRejected
from ingest.text import Section, decode_text, split_markdown

_MAX_CELLS = 2_000_000  # a sheet claiming more cells than this is refused before it is read


def load_xlsx(path: Path) -> list[Section]:
    """One section per sheet, named after it; rows as ``| a | b |`` lines, empty rows left out."""
    import openpyxl

    with open(path, "rb") as f:
        if f.read(4).startswith(b"\xd0\xcf\x11\xe0"):
            raise FileRejected("password-protected or legacy Excel file: save it unprotected as .xlsx")
    if not zipfile.is_zipfile(path):
        raise FileRejected("corrupt .xlsx file (not a valid Office Open XML archive)")
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    sections: list[Section] = []
    try:
        for number, sheet in enumerate(book.worksheets, start=1):
            rows = sheet.max_row or 0
            columns = sheet.max_column or 0
            if rows * columns > _MAX_CELLS:
                raise FileRejected(f"sheet {sheet.title!r} has {rows}x{columns} cells: too large to ingest")
            lines = []
            for row in sheet.iter_rows(values_only=True):
                cells = [_cell(v) for v in row]
                while cells and not cells[-1]:
                    cells.pop()
                if any(cells):
                    lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
            if lines:
                rule = "|" + " --- |" * lines[0].count(" | ") + " --- |"
                sections.append(Section("\n".join([lines[0], rule, *lines[1:]]), page=number, section=sheet.title))
    finally:
        book.close()
    return sections


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return " ".join(str(value).split())


def load_odt(path: Path) -> list[Section]:
    """Paragraphs and tables of an OpenDocument text; ``text:h`` headings start sections."""
    from odf import teletype
    from odf.opendocument import load

    if not zipfile.is_zipfile(path):
        raise FileRejected("corrupt .odt file (not a valid OpenDocument archive)")
    document = load(str(path))
    lines: list[str] = []

    def walk(node: Any) -> None:
        for child in node.childNodes:
            name = getattr(child, "qname", (None, None))[1]
            if name == "h":
                level = int(child.getAttribute("outlinelevel") or 1)
                text = " ".join(teletype.extractText(child).split())
                if text:
                    lines.append(f"{'#' * min(level, 6)} {text}")
            elif name == "p":
                text = teletype.extractText(child).strip()
                if text:
                    lines.append(text)
            elif name == "table-row":
                cells = [" ".join(teletype.extractText(c).split()) for c in child.childNodes]
                if any(cells):
                    lines.append("| " + " | ".join(cells) + " |")
            elif name not in ("tracked-changes", "sequence-decls"):
                walk(child)

    walk(document.body)  # not document.text: a blank node when the XML is indented
    return split_markdown("\n".join(lines))


def load_rtf(path: Path) -> list[Section]:
    """The plain text of an RTF document."""
    from striprtf.striprtf import rtf_to_text

    data = path.read_bytes()
    if not data.lstrip().startswith(b"{\\rtf"):
        raise FileRejected("corrupt .rtf file (it does not start with {\\rtf)")
    return [Section(rtf_to_text(decode_text(data), errors="ignore"))]


def load_doc(path: Path) -> list[Section]:
    """The text of a legacy Word (.doc) file through Debian's ``catdoc``."""
    catdoc = shutil.which("catdoc")
    if catdoc is None:
        raise FileRejected("legacy .doc needs catdoc (apt-get install catdoc), or save it as .docx", failed=False)
    try:
        result = subprocess.run([catdoc, "-w", "-d", "utf-8", str(path)], capture_output=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        raise FileRejected("catdoc did not finish reading this .doc in 120 s: save it as .docx") from None
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise FileRejected(f"catdoc could not read this .doc ({detail[0][:100] if detail else 'unknown error'})")
    return [Section(result.stdout.decode("utf-8", errors="replace").replace("\t", " | "))]
