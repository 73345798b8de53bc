"""PDF pages as text sections: table rows as Markdown, headings as a path, OCR for scans.

Text comes from PDFium (``pypdfium2``), which keeps the words of one visual line
together, so a table row stays on one line. Wide horizontal gaps between the
characters of a line separate cells: runs of such lines become Markdown table
rows (``| Net sales | 34,229 | 35,355 |``), the first one followed by a header
rule. The outline (bookmarks) gives chunks their heading path; without one,
lines set clearly larger or bolder than the page's body text are taken as
headings. A page with (almost) no text layer but an image is read by OCR
(:mod:`ingest.ocr`) when ``ocr`` is on.
"""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.errors import FileRejected
from ingest.text import LoadStats, Section

_MIN_TEXT_CHARS = 10  # fewer visible characters than this and an image: a scanned page
_MAX_RENDER_PX = 2400  # the longer side of a page rendered for OCR
_MAX_HEADER_CHARS = 200  # so few characters over a page-sized image: a stamped header on a scan
_CELL_GAP_EM = 1.5  # a gap wider than this many font sizes separates two cells
_CURRENCY = {"$", "€", "£", "¥", "%"}
_PASSWORD = "password-protected PDF: save a copy without the password and ingest that"
_EDGE_LINES = 2  # running headers and footers are looked for among a page's first and last lines
_MIN_RUNNING_PAGES = 4  # and must recur on at least this many pages (and half of them)
_MAX_RUNNING_CHARS = 80
_DIGITS = re.compile(r"\d+")
_SOFT_HYPHENS = {"\x02", "\ufffe"}  # how PDFium marks a hyphen that ends a printed line
_LIST_ITEM = re.compile(r"([-–•*▪●◦]|\(?[0-9]{1,3}[.)]|\(?[a-zA-Z][.)]|\([ivx]+\))\s")
_MIN_SECTION_CHARS = 100  # less text than this under a heading joins the section that follows on the page


@dataclass
class _Line:
    cells: list[str]
    size: float  # the median font size of its characters
    bold: bool

    @property
    def text(self) -> str:
        return " ".join(self.cells)


def load_pdf(path: Path, *, ocr: bool = True, stats: LoadStats | None = None) -> list[Section]:
    """Sections of a PDF: one or more per page, each with its page number and heading path.

    Args:
        path: The PDF file.
        ocr: Read pages that have no text layer with OCR.
        stats: Receives the OCR'd page count and the time spent on tables and OCR.

    Raises:
        FileRejected: password-protected or corrupt.
    """
    import pypdfium2 as pdfium

    stats = stats if stats is not None else LoadStats()
    try:
        document = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as e:
        if "password" in str(e).lower():
            raise FileRejected(_PASSWORD) from None
        raise FileRejected(f"corrupt PDF ({str(e)[:120]})") from None
    try:
        outline = _outline(document)
        pages: list[tuple[list[_Line], bool]] = []
        for index in range(len(document)):
            page = document[index]
            lines = _page_lines(page, stats)
            from_ocr = False
            if ocr and _scanned(page, sum(len(line.text.replace(" ", "")) for line in lines)):
                started = time.perf_counter()
                from ingest.ocr import read_image

                # 144 dpi, with the longer side capped so a huge page cannot exhaust memory
                scale = min(2.0, _MAX_RENDER_PX / max(page.get_size()))
                words = read_image(page.render(scale=scale).to_pil())
                stats.ocr_seconds += time.perf_counter() - started
                if words.strip():
                    stats.ocr_pages += 1
                    lines = [_Line([w], 0.0, False) for w in words.splitlines() if w.strip()]
                    from_ocr = True
            pages.append((lines, from_ocr))
    finally:
        document.close()
    return _sections(_without_running_lines(pages), outline)


def _running_key(line: _Line) -> str:
    return _DIGITS.sub("#", line.text.strip().lower())


def _without_running_lines(pages: list[tuple[list[_Line], bool]]) -> list[tuple[list[_Line], bool]]:
    """The pages without their running headers and footers.

    A short line among the first or last ``_EDGE_LINES`` lines of at least half of the
    pages (four or more; digits read as one, so page numbers count as the same line) is
    page furniture: "Table of Contents" atop every page of a filing, "Page 12 of 80",
    a bare page number. Left in, it starts many chunks and matches every query about a
    table of contents.
    """
    if len(pages) < _MIN_RUNNING_PAGES:
        return pages
    counts: Counter[str] = Counter()
    for lines, _ in pages:
        counts.update({_running_key(line) for line in (*lines[:_EDGE_LINES], *lines[-_EDGE_LINES:])})
    running = {
        key
        for key, n in counts.items()
        if n >= max(_MIN_RUNNING_PAGES, len(pages) / 2) and 0 < len(key) <= _MAX_RUNNING_CHARS
    }
    if not running:
        return pages
    kept: list[tuple[list[_Line], bool]] = []
    for lines, from_ocr in pages:
        edge = {*range(min(_EDGE_LINES, len(lines))), *range(max(0, len(lines) - _EDGE_LINES), len(lines))}
        body = [line for at, line in enumerate(lines) if at not in edge or _running_key(line) not in running]
        kept.append((body, from_ocr))
    return kept


# --- outline and headings --------------------------------------------------------------


def _outline(document: Any) -> dict[int, list[tuple[int, str]]]:
    """Outline entries by 0-based page: (level, title), in document order."""
    entries: dict[int, list[tuple[int, str]]] = {}
    try:
        for bookmark in document.get_toc(max_depth=6):
            dest = bookmark.get_dest()
            index = dest.get_index() if dest is not None else None
            title = " ".join((bookmark.get_title() or "").split())
            if index is not None and title:
                entries.setdefault(index, []).append((bookmark.level + 1, title))
    except Exception:  # a broken outline is no reason to lose the text
        return {}
    return entries


def _sections(pages: list[tuple[list[_Line], bool]], outline: dict[int, list[tuple[int, str]]]) -> list[Section]:
    sizes = [line.size for lines, _ in pages for line in lines if line.size > 0 for _ in line.text]
    body = statistics.median(sizes) if sizes else 0.0
    heading_sizes = sorted(
        {round(line.size) for lines, _ in pages for line in lines if _is_heading(line, body)}, reverse=True
    )
    trail: list[tuple[int, str]] = []
    sections: list[Section] = []
    for index, (lines, from_ocr) in enumerate(pages):
        pending = list(outline.get(index, []))
        buffer: list[str] = []
        prose: _Line | None = None  # the buffer's last line, when it is prose that may go on
        for block in _blocks(lines):
            first = block[0]
            level = 0
            if outline:
                if pending and _same(first.text, pending[0][1]):
                    level = pending.pop(0)[0]
            elif len(block) == 1 and _is_heading(first, body):
                level = heading_sizes.index(round(first.size)) + 1 if round(first.size) in heading_sizes else 1
            if level:
                # a heading with (almost) nothing under it before the next one goes on with it: a chunk
                # of "PART II" or "NOTE 10" alone matches a question by its heading path and holds no answer
                if sum(len(text) for text in buffer) >= _MIN_SECTION_CHARS:
                    sections.append(Section("\n".join(buffer), page=index + 1, section=_path(trail), ocr=from_ocr))
                    buffer = []
                trail = [(lv, t) for lv, t in trail if lv < level] + [(level, first.text)]
            line = first if not level and len(block) == 1 and len(first.cells) == 1 else None
            if line is not None and prose is not None and _goes_on(prose, line):
                buffer[-1] += ("" if buffer[-1].endswith("-") else " ") + line.text  # a line wrapped in print
            else:
                buffer.append(_render(block))
            prose = line
        # entries whose title is not found as a line start at the top of the next text
        for level, title in pending:
            trail = [(lv, t) for lv, t in trail if lv < level] + [(level, title)]
        sections.append(Section("\n".join(buffer), page=index + 1, section=_path(trail), ocr=from_ocr))
    return sections


def _goes_on(previous: _Line, line: _Line) -> bool:
    """Whether ``line`` continues the sentence that ``previous`` broke off at the end of a printed line.

    The same type (size and weight), no sentence end before it and no list item or
    bullet starting it: "... by anyone who is not a Brightwell Certified" / "Installer."
    """
    if (previous.size, previous.bold) != (line.size, line.bold) or previous.text.endswith((".", "!", "?", ":", ";")):
        return False
    return not _LIST_ITEM.match(line.text)


def _is_heading(line: _Line, body: float) -> bool:
    text = line.text
    if len(line.cells) > 1 or not 2 <= len(text) <= 100 or not re.search(r"[^\W\d_]{2}", text):
        return False
    if text.endswith((".", ",", ";", ":")) or line.size <= 0:
        return False
    return line.size >= 1.2 * body or (line.bold and line.size >= body and text[:1].isupper() and len(text) <= 60)


def _same(a: str, b: str) -> bool:
    def norm(s: str) -> str:
        return re.sub(r"\W+", "", s).lower()

    na, nb = norm(a), norm(b)
    return bool(na) and (na == nb or (len(nb) >= 8 and na.startswith(nb)))


def _path(trail: list[tuple[int, str]]) -> str:
    return " > ".join(t for _, t in trail)


# --- lines, cells and tables -----------------------------------------------------------


def _page_lines(page: Any, stats: LoadStats) -> list[_Line]:
    import pypdfium2.raw as raw

    textpage = page.get_textpage()
    try:
        count = textpage.count_chars()
        started = time.perf_counter()
        lines: list[_Line] = []
        cells: list[str] = []
        word: list[str] = []
        sizes: list[float] = []
        bold = 0
        right = None  # right edge of the previous visible character
        for i in range(count):
            code = raw.FPDFText_GetUnicode(textpage.raw, i)
            char = chr(code) if 0 < code < 0x110000 else ""
            char = "-" if char in _SOFT_HYPHENS else char
            if char in ("\r", "\n"):
                if char == "\n":
                    _end_line(lines, cells, word, sizes, bold)
                    cells, word, sizes, bold, right = [], [], [], 0, None
                continue
            if not char.strip() or raw.FPDFText_IsGenerated(textpage.raw, i) == 1:
                if word and word[-1] != " ":
                    word.append(" ")
                continue
            left, _bottom, r, _top = textpage.get_charbox(i)
            size = raw.FPDFText_GetFontSize(textpage.raw, i)
            if right is not None and size > 0 and left - right > _CELL_GAP_EM * size:
                cells.append("".join(word).strip())
                word = []
            word.append(char)
            sizes.append(size)
            bold += raw.FPDFText_GetFontWeight(textpage.raw, i) >= 600
            right = r
        _end_line(lines, cells, word, sizes, bold)
        stats.table_seconds += time.perf_counter() - started
        return lines
    finally:
        textpage.close()


def _end_line(lines: list[_Line], cells: list[str], word: list[str], sizes: list[float], bold: int) -> None:
    cells = [*cells, "".join(word).strip()]
    merged: list[str] = []
    carry = ""  # a currency sign set apart from its amount ("$ 3,655 $ | 4,564")
    for cell in cells:
        head, _, last = cell.rpartition(" ")
        if head and last in _CURRENCY and last != "%":
            cell, sign = head, last
        else:
            sign = ""
        cell = f"{carry} {cell}".strip() if cell not in _CURRENCY else cell
        carry = sign
        if not cell:
            continue
        if merged and merged[-1] in _CURRENCY:
            merged[-1] = f"{merged[-1]} {cell}"
        else:
            merged.append(cell)
    if merged:
        lines.append(_Line(merged, statistics.median(sizes) if sizes else 0.0, bold > len(sizes) / 2))


def _blocks(lines: list[_Line]) -> list[list[_Line]]:
    """Group lines into single lines of prose and runs that form a table.

    A table is two or more lines of several cells; one-cell lines between its
    rows (a row label such as "Current assets") belong to it. A longer one-cell
    line right above a row (not a sentence that ends there) is the start of that
    row's label, wrapped: it joins the row's first cell, so a long label does not
    end the table.
    """
    blocks: list[list[_Line]] = []
    i = 0
    while i < len(lines):
        if len(lines[i].cells) > 1:
            rows = [lines[i]]
            kept, end = 1, i + 1  # rows up to the last one of several cells, and the line after it
            j = i + 1
            while j < len(lines):
                line = lines[j]
                if len(line.cells) > 1 or _short_label(line):
                    rows.append(line)
                    j += 1
                elif j + 1 < len(lines) and len(lines[j + 1].cells) > 1 and not line.text.endswith((".", ":")):
                    # a wrapped label and its row (a sentence ending there introduces another table)
                    row = lines[j + 1]
                    rows.append(_Line([f"{line.text} {row.cells[0]}", *row.cells[1:]], row.size, row.bold))
                    j += 2
                else:
                    break
                if len(rows[-1].cells) > 1:
                    kept, end = len(rows), j
            rows = rows[:kept]
            if sum(len(r.cells) > 1 for r in rows) >= 2:
                blocks.append(rows)
                i = end
                continue
        blocks.append([lines[i]])
        i += 1
    return blocks


def _short_label(line: _Line) -> bool:
    return len(line.cells) == 1 and len(line.text) <= 60 and not line.text.endswith(".")


def _render(block: list[_Line]) -> str:
    if len(block) == 1 and len(block[0].cells) == 1:
        return block[0].text
    rows = [f"| {' | '.join(c.replace('|', '/') for c in line.cells)} |" for line in block]
    rule = "|" + " --- |" * len(block[0].cells)
    return "\n".join([rows[0], rule, *rows[1:]])


def _scanned(page: Any, chars: int) -> bool:
    """No text layer (or almost none) and an image: or a little text over an image of most of the page."""
    import pypdfium2.raw as raw

    if chars >= _MAX_HEADER_CHARS:
        return False
    width, height = page.get_size()
    for obj in page.get_objects(max_depth=2):
        if obj.type == raw.FPDF_PAGEOBJ_IMAGE:
            if chars < _MIN_TEXT_CHARS:
                return True
            left, bottom, right, top = obj.get_bounds()
            if (right - left) * (top - bottom) >= 0.5 * width * height:
                return True
    return False
