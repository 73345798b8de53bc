"""Turn one file into text sections, each with its page and heading.

Every loader delegates the parsing to a maintained library (pypdf, python-docx,
python-pptx, BeautifulSoup, EbookLib, the csv and json modules,
charset-normalizer) and only shapes the result. Loaders raise
:class:`FileRejected` with a short reason; they never let a library's exception
escape for a bad file.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.errors import FileRejected


@dataclass(frozen=True)
class Section:
    """A run of text that shares one page (or slide, or chapter) and one heading path."""

    text: str
    page: int | None = None  # 1-based page, slide or chapter; None when the format has none
    section: str = ""  # heading path, e.g. "Setup > Wiring"


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
    ".doc": "save it as .docx",
    ".rtf": "save it as .docx",
    ".odt": "save it as .docx",
    ".ppt": "save it as .pptx",
    ".odp": "save it as .pptx",
    ".xls": "export its sheets as .csv",
    ".xlsx": "export its sheets as .csv",
    ".ods": "export its sheets as .csv",
}


def load_file(path: Path, max_bytes: int) -> list[Section]:
    """Extract the text sections of ``path``.

    Args:
        path: The file to read.
        max_bytes: Files larger than this are skipped.

    Raises:
        FileRejected: unsupported type, too large, empty, binary, corrupt or
            password-protected.
    """
    check_file(path, max_bytes)
    try:
        sections = LOADERS[path.suffix.lower()](path)
    except FileRejected:
        raise
    except Exception as e:  # a parser's error on a malformed file
        detail = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise FileRejected(f"corrupt or unreadable {path.suffix.lower()} file ({detail})") from e
    sections = [s for s in (_clean(s) for s in sections) if s.text]
    if not sections:
        raise FileRejected("no text found (empty, or only images: OCR it first)", failed=False)
    return sections


# --- text encodings ---------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_LEGACY_SINGLE_BYTE = re.compile(r"^(cp125\d|latin_1|iso8859_\d+|mac_\w+|windows_125\d|ascii|cp850|cp437)$")


def decode_text(data: bytes) -> str:
    """Decode bytes of unknown encoding: BOM, then UTF-8, then detection.

    UTF-16/32 are found by BOM or by charset-normalizer; a legacy single-byte
    guess becomes cp1252, the most common one, when cp1252 can decode the bytes.

    Raises:
        FileRejected: the bytes are not text in any encoding.
    """
    text = _decode(data)
    sample = (text or "")[:20000]
    control = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f")
    if text is None or control > 0.05 * len(sample):
        raise FileRejected("binary content, not text")
    return text


def _decode(data: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding)
    if b"\x00" not in data:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        return None
    if _LEGACY_SINGLE_BYTE.match(best.encoding):
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            pass
    return str(best)


def _read_text(path: Path) -> str:
    return decode_text(path.read_bytes())


# --- plain text, Markdown, reStructuredText ---------------------------------------

_ATX_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:.])\1{2,}\s*$")


def split_markdown(text: str) -> list[Section]:
    """Split Markdown at ATX headings (``#`` .. ``######``), outside fenced code."""
    sections: list[Section] = []
    trail: list[tuple[int, str]] = []
    lines: list[str] = []
    fence = ""
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = "" if fence == marker else (fence or marker)
        match = None if fence else _ATX_HEADING.match(line)
        if match:
            sections.append(Section("\n".join(lines), section=_path(trail)))
            lines = []
            level = len(match.group(1))
            trail = [(lv, t) for lv, t in trail if lv < level] + [(level, match.group(2).strip())]
        lines.append(line)
    sections.append(Section("\n".join(lines), section=_path(trail)))
    return sections


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
            sections.append(Section("\n".join(buffer), section=_path(trail)))
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
    sections.append(Section("\n".join(buffer), section=_path(trail)))
    return sections


def _load_text(path: Path) -> list[Section]:
    return [Section(_read_text(path))]


def _path(trail: list[tuple[int, str]]) -> str:
    return " > ".join(t for _, t in trail)


# --- HTML and EPUB ------------------------------------------------------------------

_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")


def html_to_markdown_text(markup: bytes | str) -> str:
    """Visible text of an HTML document, headings turned into ``#`` lines."""
    import warnings

    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)  # XHTML parses fine as HTML
        soup = BeautifulSoup(markup, "lxml")
    for tag in soup(["script", "style", "noscript", "template", "svg", "head"]):
        tag.decompose()
    for heading in soup.find_all(_HEADINGS):
        level = int(heading.name[1])
        title = " ".join(heading.get_text(" ").split())
        heading.replace_with(f"\n\n{'#' * level} {title}\n\n" if title else "")
    for br in soup.find_all("br"):
        br.replace_with("\n")
    blocks = ("p", "div", "li", "tr", "table", "section", "article", "pre", "blockquote", "dd", "dt")
    for block in soup.find_all(blocks):
        block.insert_after("\n")
    for cell in soup.find_all(("td", "th")):
        cell.insert_after(" | ")
    text = soup.get_text()
    return re.sub(r"\n[ \t]*\n(\s*\n)+", "\n\n", text)


def _load_html(path: Path) -> list[Section]:
    from bs4.dammit import EncodingDetector

    data = path.read_bytes()
    declared = EncodingDetector.find_declared_encoding(data, is_html=True, search_entire_document=False)
    # A declared charset (or a BOM) is BeautifulSoup's to honour; otherwise our detection decides.
    markup = data if declared or data.startswith(tuple(b for b, _ in _BOMS)) else decode_text(data)
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
    import logging

    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise FileRejected("password-protected PDF: save a copy without the password and ingest that")
        pages = [page.extract_text() or "" for page in reader.pages]
    except FileNotDecryptedError:
        raise FileRejected("password-protected PDF: save a copy without the password and ingest that") from None
    except PdfReadError as e:
        raise FileRejected(f"corrupt PDF ({str(e)[:120]})") from None
    return [Section(text, page=number) for number, text in enumerate(pages, start=1)]


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
        sections.append(Section("\n".join(lines), page=page if paged else None, section=_path(trail)))
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
    try:
        has_header = len(rows) > 1 and csv.Sniffer().has_header(text[:8192])
    except csv.Error:
        has_header = False
    if not has_header:
        return [Section("\n".join(" | ".join(cell.strip() for cell in row) for row in rows))]
    header, body = rows[0], rows[1:]
    lines = []
    for row in body:
        pairs = [
            f"{h.strip() or f'column {i + 1}'}: {v.strip()}" for i, (h, v) in enumerate(zip(header, row)) if v.strip()
        ]
        pairs += [v.strip() for v in row[len(header) :] if v.strip()]
        lines.append("; ".join(pairs))
    return [Section("\n".join(lines))]


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
    return Section(text, section.page, section.section)


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
}
