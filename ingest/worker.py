"""The parser process: files are parsed in a child process that can be stopped.

A parser that hangs on a hostile file is killed after ``file_timeout_s`` and a
parser that crashes takes only its child down; either way that file gets a
one-line reason and the run goes on with a fresh child. One child serves a
whole run, so the cost is one process start plus passing each file's text back.

The protocol on the child's stdin/stdout: a request or reply is an 8-byte
length followed by a pickle. Only this module's two ends speak it.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import select
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from ingest.errors import FileRejected, IngestError
from ingest.loaders import LoadStats, Section, load_file

_HEADER = struct.Struct("<Q")
_START_TIMEOUT_S = 120.0  # a child that is not ready by then will not be


class ParserProcess:
    """Parse files with :func:`ingest.loaders.load_file` in a child process, under a time limit.

    Use as a context manager; the child starts on the first file.

    Args:
        timeout_s: Seconds one file may take; 0 parses in this process, without a limit.
    """

    def __init__(self, timeout_s: float) -> None:
        # select() on pipes is POSIX-only; elsewhere parse in-process
        self.timeout_s = timeout_s if os.name == "posix" else 0.0
        self._child: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ParserProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(
        self,
        path: Path,
        max_bytes: int,
        *,
        ocr: bool = True,
        stats: LoadStats | None = None,
        max_unzipped_bytes: int = 256 * 2**20,
    ) -> list[Section]:
        """:func:`ingest.loaders.load_file` in the child; same arguments, same result.

        Raises:
            FileRejected: what the loader raises, or the time limit, or a crash of the parser.
        """
        options: dict[str, Any] = {"ocr": ocr, "max_unzipped_bytes": max_unzipped_bytes}
        if not self.timeout_s:
            return load_file(path, max_bytes, stats=stats, **options)
        child = self._start()
        assert child.stdin is not None and child.stdout is not None
        try:
            _send(child.stdin, (os.fspath(path), max_bytes, options))
            reply = _receive(child.stdout, time.monotonic() + self.timeout_s)
        except TimeoutError:
            self.close()
            raise FileRejected(
                f"parsing took longer than file_timeout_s ({self.timeout_s:g} s) and was stopped: "
                "raise file_timeout_s if the file is sound"
            ) from None
        except (EOFError, OSError):
            code = self.close()
            raise FileRejected(f"the parser crashed on it (exit code {code}): the file is malformed") from None
        kind, value, work = reply
        if stats is not None:
            for f in dataclasses.fields(LoadStats):
                setattr(stats, f.name, getattr(stats, f.name) + getattr(work, f.name))
        if kind == "ok":
            sections: list[Section] = value
            return sections
        if kind == "rejected":
            raise FileRejected(value[0], failed=value[1])
        raise OSError(*value)

    def close(self) -> int | None:
        """Stop the child (if any); returns its exit code."""
        child, self._child = self._child, None
        if child is None:
            return None
        if child.poll() is None:
            child.kill()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
        return child.wait()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._child is None or self._child.poll() is not None:
            self.close()
            self._child = subprocess.Popen(
                [sys.executable, "-c", "from ingest.worker import serve; serve()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            assert self._child.stdout is not None
            try:  # the time limit is for parsing, so wait for the child to be ready first
                ready = _receive(self._child.stdout, time.monotonic() + _START_TIMEOUT_S)
            except (TimeoutError, EOFError, OSError):
                ready = None
            if ready != "ready":
                code = self.close()
                raise IngestError(
                    f"the parser process did not start (exit code {code}): set file_timeout_s = 0 "
                    "to parse in this process"
                )
        return self._child


def _send(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes], deadline: float) -> Any:
    fd = stream.fileno()
    poller = select.poll()  # poll, not select: a process with over 1024 open files has such descriptors
    poller.register(fd, select.POLLIN)
    buffer = bytearray()
    need = _HEADER.size
    length = -1
    while len(buffer) < need:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            raise TimeoutError
        chunk = os.read(fd, max(need - len(buffer), 1 << 16))
        if not chunk:
            raise EOFError
        buffer += chunk
        if length < 0 and len(buffer) >= _HEADER.size:
            length = _HEADER.unpack(buffer[: _HEADER.size])[0]
            need = _HEADER.size + length
    return pickle.loads(bytes(buffer[_HEADER.size :]))


def serve() -> None:
    """The child's loop: read a request, parse, reply; until stdin closes."""
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the replies
    sys.stdout = sys.stderr
    _send(replies, "ready")
    while True:
        header = requests.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        path, max_bytes, options = pickle.loads(requests.read(_HEADER.unpack(header)[0]))
        stats = LoadStats()
        try:
            reply: Any = ("ok", load_file(Path(path), max_bytes, stats=stats, **options), stats)
        except FileRejected as e:
            reply = ("rejected", (e.reason, e.failed), stats)
        except OSError as e:
            reply = ("oserror", (e.errno, e.strerror or str(e)), stats)
        except Exception as e:  # load_file turns parser errors into FileRejected; this is the rest
            reply = ("rejected", (f"cannot be parsed ({type(e).__name__}: {str(e)[:120]})", True), stats)
        _send(replies, reply)


if __name__ == "__main__":
    serve()
