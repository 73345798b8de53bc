"""Token-aware recursive splitting with the embedder's own tokenizer.

Sections are split separately, so a chunk never spans two headings or pages.
Splits fall between lines before anything smaller, so a Markdown table row stays
whole; a chunk that starts inside a table carries the table's caption and header row, which
:meth:`Chunker.embedded_text` puts before its text.
Lengths are counted by the tokenizer that will embed the chunk, and a final
check guarantees that no chunk exceeds the embedder's maximum sequence length,
so nothing is silently truncated at embedding time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ingest.errors import IngestError
from ingest.text import Section

SECTION_SEPARATOR = "\n\n"
_CAPTION_LINES = 2  # a table's caption: at most this many short lines right above it
_CAPTION_CHARS = 100


@dataclass(frozen=True)
class Chunk:
    """One piece of a file's extracted text; ``text == extracted[start:end]``."""

    text: str
    index: int
    start: int
    end: int
    tokens: int
    page: int | None = None
    section: str = ""
    ocr: bool = False  # read from an image of the page
    document: str = ""  # the attachment it comes from, when the file holds several documents
    header: str = ""  # the caption, header row and rule of the table the chunk starts inside, when cut off


class Chunker:
    """Split sections into chunks of at most ``chunk_tokens`` tokens.

    Args:
        tokenizer: A Hugging Face fast tokenizer (the embedder's).
        chunk_tokens: Target size in tokens, special tokens excluded.
        overlap: Tokens shared by consecutive chunks of one section.
        max_tokens: The embedder's hard limit for text tokens; ``chunk_tokens``
            above it is a config error.
    """

    def __init__(self, tokenizer: Any, chunk_tokens: int, overlap: int, max_tokens: int) -> None:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        if chunk_tokens > max_tokens:
            raise IngestError(
                f"chunk_tokens={chunk_tokens} exceeds the embedder's limit of {max_tokens} text tokens: "
                f"set chunk_tokens to {max_tokens} or less"
            )
        from tokenizers import Tokenizer

        # The tokenizers-library object behind the fast tokenizer, with any
        # truncation or padding turned off so that counts are exact.
        self._backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self._backend.no_truncation()
        self._backend.no_padding()
        self._max_tokens = max_tokens
        self._splitter = RecursiveCharacterTextSplitter(
            chunk_size=chunk_tokens,
            chunk_overlap=overlap,
            length_function=self.count,
            separators=["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""],
            keep_separator="end",
        )

    def count(self, text: str) -> int:
        """Number of tokens ``text`` becomes, special tokens excluded."""
        return len(self._backend.encode(text, add_special_tokens=False).ids)

    def split(self, sections: list[Section]) -> tuple[str, list[Chunk]]:
        """Return the extracted text (sections joined by a blank line) and its chunks."""
        extracted = SECTION_SEPARATOR.join(s.text for s in sections)
        chunks: list[Chunk] = []
        base = 0
        for section in sections:
            cursor = 0
            for piece in self._splitter.split_text(section.text):
                # Pieces are exact substrings in order; search from just after the
                # previous start so overlapping pieces are located correctly.
                at = section.text.find(piece, cursor)
                if at < 0:  # cannot happen for substrings; kept as a guard
                    raise RuntimeError("chunk not found in its section")
                cursor = at + 1
                for start, end in self._within_limit(section.text, at, at + len(piece)):
                    text = section.text[start:end]
                    chunks.append(
                        Chunk(
                            text=text,
                            index=len(chunks),
                            start=base + start,
                            end=base + end,
                            tokens=self.count(text),
                            page=section.page,
                            section=section.section,
                            ocr=section.ocr,
                            document=section.document,
                            header=_table_header(section.text, start),
                        )
                    )
            base += len(section.text) + len(SECTION_SEPARATOR)
        return extracted, chunks

    def embedded_text(self, chunk: Chunk, prefix: str = "") -> str:
        """The text to embed and index for ``chunk``: ``prefix``, its table header, then its text.

        The prefix and header are cut, never the chunk's text, so the whole stays within the
        embedder's limit.

        Args:
            chunk: A chunk from :meth:`split`.
            prefix: Context such as the document title and heading path; empty for none.
        """
        context = "\n".join(part for part in (prefix, chunk.header) if part)
        if not context:
            return chunk.text
        room = self._max_tokens - chunk.tokens - 2
        offsets = self._backend.encode(context, add_special_tokens=False).offsets
        if room <= 0:
            return chunk.text
        if len(offsets) > room:
            context = context[: offsets[room - 1][1]]
        return f"{context}\n{chunk.text}"

    def _within_limit(self, text: str, start: int, end: int) -> list[tuple[int, int]]:
        """Cut ``text[start:end]`` at token boundaries into spans of at most ``max_tokens``."""
        offsets = self._backend.encode(text[start:end], add_special_tokens=False).offsets
        if len(offsets) <= self._max_tokens:
            return [(start, end)]
        spans = []
        for first in range(0, len(offsets), self._max_tokens):
            window = offsets[first : first + self._max_tokens]
            span_start = start + window[0][0] if first else start
            span_end = start + window[-1][1] if first + self._max_tokens < len(offsets) else end
            spans.append((span_start, span_end))
        return spans


def _table_header(text: str, start: int) -> str:
    """The caption, header row and rule of the Markdown table that ``text[start:]`` begins inside, if any.

    The caption is the short line or two just above the table ("CONSOLIDATED BALANCE
    SHEETS", "Years ended December 31"): without it, the later parts of a financial
    statement name neither the statement nor what their numbers are.
    """
    line_start = text.rfind("\n", 0, start) + 1
    if not text.startswith("|", line_start):
        return ""
    first = line_start
    while first > 0:
        previous = text.rfind("\n", 0, first - 1) + 1
        if not text.startswith("|", previous):
            break
        first = previous
    if first == line_start:
        return ""
    lines = text[first:line_start].split("\n")
    header = lines[0]
    if len(lines) > 1 and set(lines[1].replace("|", "").split()) == {"---"}:
        header += "\n" + lines[1]
    caption: list[str] = []
    while first > 0 and len(caption) < _CAPTION_LINES:
        previous = text.rfind("\n", 0, first - 1) + 1
        line = text[previous : first - 1].strip()
        if not line or line.startswith("|") or len(line) > _CAPTION_CHARS or line.endswith("."):
            break
        caption.insert(0, line)
        first = previous
    return "\n".join([*caption, header])
