"""Hostile input files, made at run time: shared by the hostile-input tests and bench/hostile.py."""

from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import Path

BAD_UTF8_NAME = os.fsdecode(b"caf\xe9 menu.txt")  # latin-1 bytes: not valid UTF-8
CONTROL_NAME = "new\nline\ttab \x1b[31mred.txt"


def docx_bytes(text: str = "A small document about battery warranties.") -> bytes:
    """A valid .docx made by python-docx."""
    import docx

    document = docx.Document()
    document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def set_declared_size(data: bytes, member: str, size: int) -> bytes:
    """Rewrite the uncompressed size a zip declares for ``member`` (local header and central directory)."""
    buf = bytearray(data)
    name = member.encode()
    at = buf.find(b"PK\x03\x04")
    while at >= 0:
        n, extra = struct.unpack("<HH", buf[at + 26 : at + 30])
        if buf[at + 30 : at + 30 + n] == name:
            struct.pack_into("<I", buf, at + 22, size)
        at = buf.find(b"PK\x03\x04", at + 30 + n + extra)
    at = buf.find(b"PK\x01\x02")
    while at >= 0:
        n, extra, comment = struct.unpack("<HHH", buf[at + 28 : at + 34])
        if buf[at + 46 : at + 46 + n] == name:
            struct.pack_into("<I", buf, at + 24, size)
        at = buf.find(b"PK\x01\x02", at + 46 + n + extra + comment)
    return bytes(buf)


def declared_bomb(path: Path, gib: float = 1.0) -> Path:
    """A tiny .docx whose document part declares ``gib`` GiB once unpacked."""
    path.write_bytes(set_declared_size(docx_bytes(), "word/document.xml", int(gib * 2**30) - 1))
    return path


def real_bomb(path: Path, mib: int = 1024) -> Path:
    """A .docx whose document part really unpacks to ``mib`` MiB (of one repeated byte), about 1 MB on disk."""
    template = zipfile.ZipFile(io.BytesIO(docx_bytes()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info in template.infolist():
            if info.filename != "word/document.xml":
                out.writestr(info, template.read(info))
                continue
            with out.open("word/document.xml", "w", force_zip64=True) as member:
                block = b" " * 2**20
                for _ in range(mib):
                    member.write(block)
    return path


def lying_docx(path: Path, real_mib: int = 20) -> Path:
    """A .docx whose document part unpacks to ``real_mib`` MiB but declares 4 KB."""
    template = zipfile.ZipFile(io.BytesIO(docx_bytes()))
    xml = template.read("word/document.xml")
    filler = b"<w:p><w:r><w:t>" + b"A" * (real_mib * 2**20) + b"</w:t></w:r></w:p>"
    big = xml.replace(b"<w:sectPr", filler + b"<w:sectPr", 1)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in template.infolist():
            z.writestr(info.filename, big if info.filename == "word/document.xml" else template.read(info))
    path.write_bytes(set_declared_size(out.getvalue(), "word/document.xml", 4096))
    return path


def nested_html(path: Path, depth: int = 100_000) -> Path:
    """About 1.1 MB of nested divs around one sentence."""
    path.write_text(f"<html><body>{'<div>' * depth}deep inside{'</div>' * depth}</body></html>")
    return path


def flat_html(path: Path, paragraphs: int = 80_000) -> Path:
    """About 3.4 MB of one flat page of paragraphs."""
    body = "".join(f"<p>Paragraph {n} of the long flat page.</p>\n" for n in range(paragraphs))
    path.write_text(f"<html><body>{body}</body></html>")
    return path


def deep_json(path: Path, depth: int = 100_000) -> Path:
    path.write_text("[" * depth + "]" * depth)
    return path
