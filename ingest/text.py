"""Text shared by every format: sections, decoding bytes of unknown encoding, Markdown and HTML to sections.

The format modules (:mod:`ingest.loaders`, :mod:`ingest.pdf`, :mod:`ingest.office`,
:mod:`ingest.mail`) all build on these; none of them imports another format module.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from ingest.errors import FileRejected


@dataclass(frozen=True)
class Section:
    """A run of text that shares one page (or slide, or chapter) and one heading path."""

    text: str
    page: int | None = None  # 1-based page, slide or chapter; None when the format has none
    section: str = ""  # heading path, e.g. "Setup > Wiring"
    ocr: bool = False  # the text was read from an image of the page
    document: str = ""  # an attachment's name when the text is a document inside the file (mail)


@dataclass
class LoadStats:
    """Work done while loading files: pages read by OCR, seconds spent on tables and on OCR."""

    ocr_pages: int = 0
    ocr_seconds: float = 0.0
    table_seconds: float = 0.0


# --- text encodings ---------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
BOMS = tuple(bom for bom, _ in _BOMS)  # a text file that starts with one of these says its encoding
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


_ATX_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")


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
            sections.append(Section("\n".join(lines), section=path_of(trail)))
            lines = []
            level = len(match.group(1))
            trail = [(lv, t) for lv, t in trail if lv < level] + [(level, match.group(2).strip())]
        lines.append(line)
    sections.append(Section("\n".join(lines), section=path_of(trail)))
    return sections


def path_of(trail: list[tuple[int, str]]) -> str:
    return " > ".join(t for _, t in trail)


# --- HTML ---------------------------------------------------------------------------

_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")


# Elements whose text is not shown (ruby annotations are read as their base text).
_SKIPPED_TAGS = frozenset(("script", "style", "noscript", "template", "svg", "head", "rt", "rp"))
_BLOCKS = frozenset(("p", "div", "li", "tr", "table", "section", "article", "pre", "blockquote", "dd", "dt"))
_CELLS = frozenset(("td", "th"))


def html_to_markdown_text(markup: bytes | str) -> str:
    """Visible text of an HTML document, headings turned into ``#`` lines.

    lxml parses and hands each tag and text run to :class:`_VisibleText`, which
    keeps no tree: the time is linear in the size of the page, however deeply
    its elements nest or however many there are. Bytes are decoded as
    BeautifulSoup's ``UnicodeDammit`` decides (declared charset, BOM, detection).
    """
    from bs4.dammit import UnicodeDammit
    from lxml import etree

    if isinstance(markup, bytes):
        markup = UnicodeDammit(markup, is_html=True).unicode_markup or ""
    if not markup.strip():
        return ""
    target = _VisibleText()
    parser = etree.HTMLParser(target=target, encoding="utf-8", huge_tree=True)
    parser.feed(markup.encode("utf-8", "replace"))
    text: str = parser.close()
    return re.sub(r"\n[ \t]*\n(\s*\n)+", "\n\n", text)


class _VisibleText:
    """lxml parser target: collects visible text, a newline after blocks, `` | `` after cells.

    Whitespace-only runs outside ``pre`` and ``textarea`` become one newline
    (or one space), as BeautifulSoup makes them.
    """

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.run: list[str] = []  # text since the last tag
        self.hidden = 0  # depth inside script, style and the like
        self.heading = 0  # depth inside h1..h6
        self.preserve = 0  # depth inside pre and textarea
        self.title: list[str] = []

    def _flush(self) -> None:
        if not self.run:
            return
        text = "".join(self.run)
        self.run = []
        if not self.preserve and not text.strip(" \n\t\f\r"):
            text = "\n" if "\n" in text else " "
        if not self.hidden:
            (self.title if self.heading else self.pieces).append(text)

    def start(self, tag: str, attrib: object) -> None:
        self._flush()
        if tag in ("pre", "textarea"):
            self.preserve += 1
        if tag in _SKIPPED_TAGS:
            self.hidden += 1
        elif tag in _HEADINGS:
            self.heading += 1
        elif tag == "br" and not self.hidden and not self.heading:
            self.pieces.append("\n")

    def end(self, tag: str) -> None:
        self._flush()
        if tag in ("pre", "textarea"):
            self.preserve -= 1
        if tag in _SKIPPED_TAGS:
            self.hidden -= 1
        elif self.hidden:
            return
        elif tag in _HEADINGS:
            self.heading -= 1
            if not self.heading:
                title = " ".join(" ".join(self.title).split())
                self.pieces.append(f"\n\n{'#' * int(tag[1])} {title}\n\n" if title else "")
                self.title = []
        elif self.heading:
            return
        elif tag in _BLOCKS:
            self.pieces.append("\n")
        elif tag in _CELLS:
            self.pieces.append(" | ")

    def data(self, text: str) -> None:
        self.run.append(text)

    def comment(self, text: str) -> None:  # not shown, but it ends a text run as a tag does
        self._flush()

    def pi(self, target: str, data: str) -> None:
        self._flush()

    def close(self) -> str:
        self._flush()
        return "".join(self.pieces)
