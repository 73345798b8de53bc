"""Turn one file into text sections, each with its page and heading.

Every loader delegates the parsing to a maintained library (pypdfium2 in
:mod:`ingest.pdf`, python-docx, python-pptx, lxml, EbookLib, the csv
and json modules, charset-normalizer; openpyxl, odfpy and striprtf in
:mod:`ingest.office`, the email module in :mod:`ingest.mail`) and only shapes
the result. Loaders raise
:class:`FileRejected` with a short reason; they never let a library's exception
escape for a bad file.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import statistics
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ingest import office
from ingest.errors import FileRejected
from ingest.mail import load_eml
from ingest.pdf import load_pdf
from ingest.text import (
    BOMS,
    LoadStats,
    Section,
    decode_text,
    html_to_markdown_text,
    path_of,
    split_markdown,
)


def check_file(path: Path, max_bytes: int) -> None:
    """Reject, before reading it, a file of unsupported type, empty or too large.

    Raises:
        FileRejected: with ``failed=False``: the file is skipped by policy.
    """
    if path.suffix.lower() not in LOADERS:
        kind = path.suffix.lower() or "(no extension)"
        hint = _CONVERT_HINTS.get(kind, f"supported: {' '.join(sorted(LOADERS))}")
        raise FileRejected(f"unsupported type {kind}; {hint}", failed=False)
    size = path.stat().st_size
    if size == 0:
        raise FileRejected("empty file", failed=False)
    if size > max_bytes:
        raise FileRejected(
            f"too large ({size / 2**20:.1f} MB > max_file_mb {max_bytes / 2**20:g}); raise max_file_mb to ingest it",
            failed=False,
        )


_CONVERT_HINTS = {
    ".ppt": "save it as .pptx",
    ".odp": "save it as .pptx",
    ".xls": "save it as .xlsx",
    ".ods": "save it as .xlsx",
    ".msg": "save it as .eml",
}


def load_file(
    path: Path,
    max_bytes: int,
    *,
    ocr: bool = True,
    stats: LoadStats | None = None,
    max_unzipped_bytes: int = 256 * 2**20,
) -> list[Section]:
    """Extract the text sections of ``path``.

    Args:
        path: The file to read.
        max_bytes: Files larger than this are skipped.
        ocr: Read PDF pages that have no text layer with OCR.
        stats: Receives the pages read by OCR and the time spent on tables and OCR.
        max_unzipped_bytes: Zip-based files (docx, pptx, xlsx, odt, epub) whose
            members unpack to more than this are skipped unread.

    Raises:
        FileRejected: unsupported type, too large, empty, binary, corrupt,
            password-protected, or unpacking to too much.
    """
    check_file(path, max_bytes)
    if path.suffix.lower() in ZIP_FORMATS:
        check_zip(path, max_unzipped_bytes)
    try:
        sections = _load(path, ocr, stats if stats is not None else LoadStats(), max_unzipped_bytes)
    except FileRejected:
        raise
    except Exception as e:  # a parser's error on a malformed file
        detail = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise FileRejected(f"corrupt or unreadable {path.suffix.lower()} file ({detail})") from e
    sections = [s for s in (_clean(s) for s in sections) if s.text]
    if not sections:
        raise FileRejected("no text found (empty, or only images: OCR it first)", failed=False)
    return _bare_headings_joined(sections)


def _bare(section: Section) -> bool:
    """Whether ``section`` holds nothing but its heading(s): "# Setup", or an underlined reST title."""
    headings = set(section.section.split(" > ")) if section.section else set()
    lines = [line.strip().lstrip("#").strip() for line in section.text.splitlines()]
    return bool(headings) and all(line in headings or not any(c.isalnum() for c in line) for line in lines)


def _bare_headings_joined(sections: list[Section]) -> list[Section]:
    """Sections without a section that is only its heading: such a heading goes on with its first subsection.

    "# Before you start" directly followed by "## Who may install" made a chunk of four
    tokens that matched questions by its heading path and held no answer. (PDF headings
    are joined as they are read: :mod:`ingest.pdf`.)
    """
    joined: list[Section] = []
    carried = ""
    for at, section in enumerate(sections):
        if carried:
            section = dataclasses.replace(section, text=f"{carried}\n{section.text}")
            carried = ""
        following = sections[at + 1] if at + 1 < len(sections) else None
        if (
            following is not None
            and _bare(section)
            and following.section.startswith(f"{section.section} > ")
            and (following.page, following.document, following.ocr) == (section.page, section.document, section.ocr)
        ):
            carried = section.text
            continue
        joined.append(section)
    return joined


# .doc too: a .doc that is really a zip is read as a .docx (the check passes a file that is no zip)
ZIP_FORMATS = frozenset((".docx", ".docm", ".doc", ".pptx", ".xlsx", ".xlsm", ".odt", ".ods", ".odp", ".epub"))
_MAX_ZIP_MEMBERS = 50_000


def check_zip(path: Path, max_unzipped_bytes: int) -> None:
    """Reject a zip archive that would unpack to more than ``max_unzipped_bytes``, before unpacking any of it.

    The sizes come from the central directory. A member whose header
    understates its size cannot get past it either: Python's zipfile stops
    reading a member at its declared size and then fails its CRC check.

    Raises:
        FileRejected: too many members, or too many bytes once unpacked.
    """
    members = _zip_member_count(path)
    if members > _MAX_ZIP_MEMBERS:
        raise FileRejected(f"zip archive with {members} members (more than {_MAX_ZIP_MEMBERS}): not a document")
    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(max(info.file_size, 0) for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a readable zip: the loader says what is wrong with it
    if total > max_unzipped_bytes:
        raise FileRejected(
            f"unpacks to {total / 2**20:,.1f} MB (more than max_unzipped_mb {max_unzipped_bytes / 2**20:.4g}): "
            "a zip bomb, or raise max_unzipped_mb to ingest it",
            failed=False,
        )


def _zip_member_count(path: Path) -> int:
    """Members a zip's end-of-central-directory record declares (0 when there is none to read)."""
    import struct

    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 65557))
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return 0
    count = int(struct.unpack("<H", tail[at + 10 : at + 12])[0])
    if count == 0xFFFF:  # zip64: the real count is in the zip64 record
        locator = tail.rfind(b"PK\x06\x07", 0, at)
        if locator >= 0 and locator + 20 <= len(tail):
            offset = int(struct.unpack("<Q", tail[locator + 8 : locator + 16])[0])
            with open(path, "rb") as f:
                f.seek(offset)
                record = f.read(56)
            if record[:4] == b"PK\x06\x06" and len(record) >= 40:
                count = int(struct.unpack("<Q", record[32:40])[0])
    return count


def _read_text(path: Path) -> str:
    return decode_text(path.read_bytes())


# --- plain text, Markdown, reStructuredText ---------------------------------------

_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:.])\1{2,}\s*$")


def _load_markdown(path: Path) -> list[Section]:
    return split_markdown(_read_text(path))


def _load_rst(path: Path) -> list[Section]:
    # Over-and-underlined or underlined titles; levels ordered by first appearance.
    text = _read_text(path)
    lines = text.splitlines()
    sections: list[Section] = []
    trail: list[tuple[int, str]] = []
    order: list[str] = []
    buffer: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        under = lines[i + 1] if i + 1 < len(lines) else ""
        match = _RST_UNDERLINE.match(under)
        if line.strip() and not _RST_UNDERLINE.match(line) and match and len(under.rstrip()) >= len(line.rstrip()):
            if buffer and _RST_UNDERLINE.match(buffer[-1]):
                buffer.pop()  # the overline of this title
            sections.append(Section("\n".join(buffer), section=path_of(trail)))
            buffer = []
            char = match.group(1)
            if char not in order:
                order.append(char)
            level = order.index(char) + 1
            trail = [(lv, t) for lv, t in trail if lv < level] + [(level, line.strip())]
            buffer.append(line.strip())
            i += 2
            continue
        buffer.append(line)
        i += 1
    sections.append(Section("\n".join(buffer), section=path_of(trail)))
    return sections


def _load_text(path: Path) -> list[Section]:
    return [Section(_read_text(path))]


# --- HTML and EPUB ------------------------------------------------------------------


def _load_html(path: Path) -> list[Section]:
    from bs4.dammit import EncodingDetector

    data = path.read_bytes()
    declared = EncodingDetector.find_declared_encoding(data, is_html=True, search_entire_document=False)
    # A declared charset (or a BOM) is BeautifulSoup's to honour; otherwise our detection decides.
    markup = data if declared or data.startswith(BOMS) else decode_text(data)
    return split_markdown(html_to_markdown_text(markup))


def _load_epub(path: Path) -> list[Section]:
    import warnings

    import ebooklib
    from ebooklib import epub

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        book = epub.read_epub(str(path), options={"ignore_ncx": True})
    sections: list[Section] = []
    chapter = 0
    for item_id, _linear in book.spine:
        item = book.get_item_with_id(item_id)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        chapter += 1
        for s in split_markdown(html_to_markdown_text(item.get_content())):
            sections.append(Section(s.text, page=chapter, section=s.section))
    return sections


# --- PDF ------------------------------------------------------------------------------


def _load_pdf(path: Path) -> list[Section]:
    return load_pdf(path)


# --- Office: docx, pptx -------------------------------------------------------------


def _office_zip(path: Path) -> None:
    """OOXML files are zip archives; an encrypted one is an OLE file instead."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise FileRejected("password-protected or legacy Office file: save it unprotected as .docx/.pptx")
    if not zipfile.is_zipfile(path):
        raise FileRejected(f"corrupt {path.suffix.lower()} file (not a valid Office Open XML archive)")


def _load_docx(path: Path) -> list[Section]:
    import docx
    from docx.table import Table, _Cell

    _office_zip(path)
    document = docx.Document(str(path))
    sections: list[Section] = []
    trail: list[tuple[int, str]] = []
    lines: list[str] = []
    paged = any(p.rendered_page_breaks for p in document.paragraphs)
    page = 1

    def flush() -> None:
        sections.append(Section("\n".join(lines), page=page if paged else None, section=path_of(trail)))
        lines.clear()

    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                # the row's own cell elements: merged cells appear once, and no
                # grid arithmetic that malformed tables break
                cells = [_Cell(tc, block).text.strip() for tc in row._tr.tc_lst]
                if any(cells):
                    lines.append(" | ".join(cells))
            continue
        breaks = len(block.rendered_page_breaks)
        if paged and breaks:
            flush()
            page += breaks
        text = block.text.strip()
        style = (block.style.name if block.style is not None else "") or ""
        level = _heading_level(style)
        if level and text:
            flush()
            trail = [(lv, t) for lv, t in trail if lv < level] + [(level, text)]
            lines.append(f"{'#' * level} {text}")
        elif text:
            lines.append(text)
    flush()
    return sections


def _heading_level(style: str) -> int:
    if style == "Title":
        return 1
    match = re.match(r"Heading (\d)", style)
    return int(match.group(1)) if match else 0


def _unique(cells: Iterator[str]) -> list[str]:
    # merged cells repeat their text once per grid column
    out: list[str] = []
    for cell in cells:
        if not out or out[-1] != cell:
            out.append(cell)
    return out


def _load_pptx(path: Path) -> list[Section]:
    from pptx import Presentation

    _office_zip(path)
    deck = Presentation(str(path))
    sections: list[Section] = []
    for number, slide in enumerate(deck.slides, start=1):
        title_shape = slide.shapes.title
        title = title_shape.text_frame.text.strip() if title_shape is not None and title_shape.has_text_frame else ""
        lines = list(_shape_texts(slide.shapes))
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = slide.notes_slide.notes_text_frame.text.strip()
            if notes:
                lines.append(f"Notes: {notes}")
        sections.append(Section("\n".join(lines), page=number, section=title))
    return sections


def _shape_texts(shapes: Any) -> Iterator[str]:
    for shape in shapes:
        if shape.shape_type == 6:  # MSO_SHAPE_TYPE.GROUP
            yield from _shape_texts(shape.shapes)
        elif getattr(shape, "has_table", False) and shape.has_table:
            for row in shape.table.rows:
                cells = _unique(cell.text.strip() for cell in row.cells)
                if any(cells):
                    yield " | ".join(cells)
        elif shape.has_text_frame and shape.text_frame.text.strip():
            yield shape.text_frame.text.strip()


# --- CSV and JSON -----------------------------------------------------------------------


def _load_csv(path: Path) -> list[Section]:
    text = _read_text(path)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(cell.strip() for cell in row)]
    if not rows:
        return []
    if not _has_header(rows, text[:8192]):
        return [Section("\n".join(" | ".join(cell.strip() for cell in row) for row in rows))]
    # Under a header each row is a record of its own, as LangChain's and LlamaIndex's CSV readers
    # make it: a chunk per row, so a question about one code, product or date finds that row alone.
    header, body = rows[0], rows[1:]
    sections = []
    for row in body:
        pairs = [
            f"{h.strip() or f'column {i + 1}'}: {v.strip()}" for i, (h, v) in enumerate(zip(header, row)) if v.strip()
        ]
        pairs += [v.strip() for v in row[len(header) :] if v.strip()]
        sections.append(Section("; ".join(pairs)))
    return sections


_NUMBER = re.compile(r"[-+]?[$€£]?\d[\d.,]*\s*%?")


def _has_header(rows: list[list[str]], sample: str) -> bool:
    """Whether the first of ``rows`` names the columns.

    ``csv.Sniffer`` decides by the cells' types and lengths, which says no for columns of
    free text. Then the first row is a header when its cells are all filled, distinct and
    not numbers, none of them recurs in its column, and in at least half the columns the
    name is at most half as long as the column's typical value or the values are numbers
    ("code,name,meaning" over rows of sentences).
    """
    if len(rows) < 2:
        return False
    try:
        if csv.Sniffer().has_header(sample):
            return True
    except csv.Error:
        pass
    names = [cell.strip() for cell in rows[0]]
    if not all(names) or len(set(names)) < len(names) or any(_NUMBER.fullmatch(n) for n in names):
        return False
    votes = 0
    for i, name in enumerate(names):
        column = [row[i].strip() for row in rows[1:] if i < len(row) and row[i].strip()]
        if name in column:
            return False
        if column and (
            2 * len(name) <= statistics.median(len(v) for v in column) or all(_NUMBER.fullmatch(v) for v in column)
        ):
            votes += 1
    return 2 * votes >= len(names)


def _load_json(path: Path) -> list[Section]:
    text = _read_text(path)
    if path.suffix.lower() == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise FileRejected(f"invalid JSON on line {number} ({e.msg}): fix or remove that line") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise FileRejected(f"invalid JSON at line {e.lineno} column {e.colno} ({e.msg})") from None
        records = data if isinstance(data, list) else [data]
    blocks = ["\n".join(_flatten(record, "")) for record in records]
    return [Section("\n\n".join(b for b in blocks if b))]


def _flatten(value: Any, prefix: str) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value and all(not isinstance(v, dict | list) for v in value):
        yield f"{prefix}: {', '.join(str(v) for v in value)}" if prefix else ", ".join(str(v) for v in value)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{prefix}[{index}]")
    elif value is not None and str(value).strip():
        yield f"{prefix}: {value}" if prefix else str(value)


# --- registry -----------------------------------------------------------------------------


def _clean(section: Section) -> Section:
    text = section.text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return dataclasses.replace(section, text=text)


def _load(path: Path, ocr: bool, stats: LoadStats, max_unzipped_bytes: int) -> list[Section]:
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return load_pdf(path, ocr=ocr, stats=stats)
    if suffix == ".eml":
        # an attachment passes the same checks as a file of its own (empty, zip bombs, no text)
        size = path.stat().st_size
        return load_eml(
            path, lambda part: load_file(part, size, ocr=ocr, stats=stats, max_unzipped_bytes=max_unzipped_bytes)
        )
    return LOADERS[suffix](path)


def _load_doc(path: Path) -> list[Section]:
    """A legacy Word file; a .docx misnamed .doc is read as the .docx it is."""
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"
    return _load_docx(path) if zipped else office.load_doc(path)


def _load_office(kind: str) -> Callable[[Path], list[Section]]:
    def load(path: Path) -> list[Section]:
        loader: Callable[[Path], list[Section]] = getattr(office, f"load_{kind}")
        return loader(path)

    return load


LOADERS: dict[str, Callable[[Path], list[Section]]] = {
    ".txt": _load_text,
    ".text": _load_text,
    ".md": _load_markdown,
    ".markdown": _load_markdown,
    ".rst": _load_rst,
    ".html": _load_html,
    ".htm": _load_html,
    ".xhtml": _load_html,
    ".pdf": _load_pdf,
    ".docx": _load_docx,
    ".pptx": _load_pptx,
    ".csv": _load_csv,
    ".tsv": _load_csv,
    ".json": _load_json,
    ".jsonl": _load_json,
    ".epub": _load_epub,
    ".eml": _load_text,  # read by ingest.mail; listed here as a supported type
    ".xlsx": _load_office("xlsx"),
    ".xlsm": _load_office("xlsx"),
    ".odt": _load_office("odt"),
    ".rtf": _load_office("rtf"),
    ".doc": _load_doc,
}
