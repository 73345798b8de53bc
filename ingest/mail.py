"""E-mail (.eml) as text sections: headers and body, and each attachment as a document of its own.

Parsed with the standard library's :mod:`email`. The body prefers the plain-text
part and falls back to the HTML one. An attachment of a supported type is read
by its own loader and its sections carry its name in ``document``; the ingest
pipeline gives its chunks the source ``mail.eml#name`` while the manifest keeps
tracking the mail file, so updating or removing the mail updates or removes its
attachments too.
"""

from __future__ import annotations

import email
import email.policy
import re
import tempfile
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from ingest.errors import FileRejected
from ingest.text import Section, html_to_markdown_text, split_markdown

_HEADERS = ("From", "To", "Cc", "Date", "Subject")


def load_eml(path: Path, load: Callable[[Path], list[Section]]) -> list[Section]:
    """Sections of a mail: headers and body first, then those of each readable attachment.

    Args:
        path: The .eml file.
        load: Reads one attachment (saved to a temporary file under its own name); its
            ``FileRejected`` (an unsupported type, say) becomes a note in the mail's text.
    """
    with open(path, "rb") as f:
        message = email.message_from_binary_file(f, policy=email.policy.default)
    if not isinstance(message, EmailMessage) or not any(message.get(h) for h in (*_HEADERS, "Message-ID")):
        raise FileRejected("not an e-mail message (no From, To, Date or Subject header)")
    head = "\n".join(f"{h}: {' '.join(str(message[h]).split())}" for h in _HEADERS if message.get(h))
    body = message.get_body(preferencelist=("plain", "html"))
    text = ""
    if body is not None:
        content = body.get_content()
        text = html_to_markdown_text(content) if body.get_content_type() == "text/html" else str(content)
    sections = [
        Section(f"{head}\n\n{s.text}" if i == 0 else s.text, section=s.section)
        for i, s in enumerate(split_markdown(text))
    ]
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ragtune-mail-") as tmp:
        for number, part in enumerate(message.iter_attachments(), start=1):
            name = _safe_name(part.get_filename() or f"attachment-{number}")
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes) or not payload:
                continue
            saved = Path(tmp) / f"{number}-{name}"
            saved.write_bytes(payload)
            try:
                found = load(saved)
            except FileRejected as e:
                notes.append(f"Attachment {name}: not read ({e.reason})")
                continue
            notes.append(f"Attachment {name}")
            sections.extend(Section(s.text, s.page, s.section, s.ocr, document=name) for s in found)
    if notes:
        sections.insert(1, Section("\n".join(notes), section=sections[0].section))
    return sections


def _safe_name(name: str) -> str:
    name = re.sub(r"[\x00-\x1f/\\#]", "_", Path(name.replace("\\", "/")).name).strip(" .")
    return name[:120] or "attachment"
