"""Which files a run reads: folders walked, links judged, special files reported; names made safe.

A source is known by its *key*: the absolute path as text. A name that is not
valid UTF-8 (Python holds it with surrogate escapes) gets a key with its odd
bytes written as ``\\xNN``, so chunk ids, Chroma metadata and the manifest can
store it; :func:`exists` maps such a key back to the file. :func:`printable`
shows any key on one terminal line.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.errors import IngestError

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPED_BYTE = re.compile(rb"\\x([0-9a-f]{2})")


def source_key(path: str | os.PathLike[str]) -> str:
    """The text a source is stored under: its path, with bytes that are not UTF-8 as ``\\xNN``."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


def exists(key: str) -> bool:
    """Whether the file a key names is still there (a key with ``\\xNN`` escapes is tried both ways)."""
    if os.path.lexists(key):
        return True
    if "\\x" not in key:
        return False
    raw = _ESCAPED_BYTE.sub(lambda m: bytes([int(m.group(1), 16)]), key.encode("utf-8"))
    return os.path.lexists(os.fsdecode(raw))


def printable(text: str) -> str:
    """``text`` on one line: newlines, tabs, escape sequences and other control characters escaped."""
    text = source_key(text)
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


@dataclass
class Skipped:
    """A path that was found but is not read, and why."""

    path: str  # its key
    reason: str
    failed: bool = False  # True: unreadable; False: skipped by policy


@dataclass
class Found:
    """What walking the given paths found: regular files to read, and everything left out with a reason."""

    files: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def walk(
    paths: Iterable[str | os.PathLike[str]],
    exclude: Path | None = None,
    follow_symlinks: bool = False,
) -> Found:
    """Expand files and folders (recursively) into regular files, reporting what is left out.

    Hidden files and folders and ``exclude`` (the data home) are left out silently.
    A path given on the command line is read even when it is a link. Inside the
    folders, a link whose target lies outside every given folder is skipped
    unless ``follow_symlinks``; a link into them is read under its target's
    path (once). Broken links, link loops, FIFOs, sockets, devices and folders
    that cannot be listed are each reported.

    Raises:
        IngestError: a given path does not exist.
    """
    skip = exclude.resolve() if exclude else None
    roots: list[Path] = []
    found = Found()
    files: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise IngestError(f"{printable(os.fspath(raw))} does not exist: check the path")
        roots.append(path.resolve())
    walked: set[tuple[int, int]] = set()

    def inside(target: Path) -> bool:
        return any(target == root or target.is_relative_to(root) for root in roots if root.is_dir())

    def add_file(path: Path, shown: Path) -> None:
        try:
            mode = path.stat().st_mode
        except OSError as e:
            found.skipped.append(Skipped(source_key(shown), f"cannot read it ({e.strerror or e})", failed=True))
            return
        if stat.S_ISREG(mode):
            files.setdefault(source_key(path), path)
        else:
            found.skipped.append(Skipped(source_key(shown), f"not a regular file ({_kind(mode)})"))

    def walk_folder(folder: Path) -> None:
        pending = [folder]
        while pending:
            here = pending.pop()
            try:
                info = here.stat()
                if (info.st_dev, info.st_ino) in walked:
                    continue
                walked.add((info.st_dev, info.st_ino))
                entries = sorted(os.scandir(here), key=lambda e: e.name, reverse=True)
            except OSError as e:
                found.skipped.append(
                    Skipped(source_key(here), f"cannot list folder ({e.strerror or e}): check its permissions", True)
                )
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                path = Path(entry.path)
                if skip is not None and path == skip:
                    continue
                if entry.is_symlink():
                    target = _link_target(path, found)
                    if target is None:
                        continue
                    if target.is_dir() and (target == here or target in here.parents or here.is_relative_to(target)):
                        found.skipped.append(
                            Skipped(source_key(path), f"symbolic link loop: points to {printable(str(target))}")
                        )
                        continue
                    if not inside(target) and not follow_symlinks:
                        found.skipped.append(
                            Skipped(
                                source_key(path),
                                f"symbolic link to {printable(str(target))}, outside the folders being ingested; "
                                "set follow_symlinks = true to read it",
                            )
                        )
                        continue
                    if target.is_dir():
                        pending.append(target if inside(target) else path)
                    else:
                        add_file(target if inside(target) else path, path)
                    continue
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                if is_dir:
                    pending.append(path)
                else:
                    add_file(path, path)

    for root in roots:
        if root.is_dir():
            walk_folder(root)
        else:
            add_file(root, root)
    found.files = sorted(files.values(), key=source_key)
    return found


def _link_target(path: Path, found: Found) -> Path | None:
    try:
        return path.resolve(strict=True)
    except FileNotFoundError:
        found.skipped.append(Skipped(source_key(path), f"broken symbolic link to {printable(os.readlink(path))}"))
    except (RuntimeError, OSError) as e:  # ELOOP: a link that leads back to itself
        detail = "symbolic link loop" if "loop" in str(e).lower() else f"cannot follow link ({e})"
        found.skipped.append(Skipped(source_key(path), detail))
    return None


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"
