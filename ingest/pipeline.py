"""Ingest files into a collection, incrementally and safely; list and remove them.

The order of every write (see :mod:`ingest.manifest`): journal the new chunk
ids, embed and upsert them, commit the manifest and journal the old ids, delete
the old ids, clear the journal. A run killed anywhere is repaired by the next
one before it starts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest import store
from ingest.config import IngestConfig
from ingest.errors import FileRejected, IngestError
from ingest.loaders import check_file, load_file
from ingest.manifest import FileRecord, Manifest

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from ingest.chunking import Chunk, Chunker

log = logging.getLogger("ragtune.ingest")

SAMPLE_CORPUS = Path(__file__).parent / "sample"


@dataclass
class FileReport:
    """What happened to one file."""

    path: str
    status: str  # added | updated | unchanged | skipped | failed | removed
    reason: str = ""
    chunks: int = 0


@dataclass
class IngestReport:
    """The outcome of one ingest (or remove) run."""

    collection: str
    files: list[FileReport] = field(default_factory=list)
    chunks_added: int = 0
    chunks_removed: int = 0
    seconds: float = 0.0

    def count(self, *statuses: str) -> int:
        return sum(1 for f in self.files if f.status in statuses)

    @property
    def ok(self) -> int:
        """Files that are in the collection at their current content."""
        return self.count("added", "updated", "unchanged")

    def summary(self) -> str:
        return (
            f"{self.collection}: {len(self.files)} files - {self.count('added', 'updated')} ingested, "
            f"{self.count('unchanged')} unchanged, {self.count('skipped')} skipped, {self.count('failed')} failed, "
            f"{self.count('removed')} removed; chunks +{self.chunks_added} -{self.chunks_removed}; "
            f"{self.seconds:.1f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Prepared:
    path: Path
    sha256: str
    size: int
    mtime_ns: int
    extracted: str
    chunks: list[Chunk]
    old_ids: tuple[str, ...]


def chunk_id(path: str, sha256: str, index: int) -> str:
    """Deterministic id of a chunk: same file, same content, same position, same id."""
    return hashlib.sha256(f"{path}\0{sha256}\0{index}".encode()).hexdigest()[:32]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def discover(paths: Iterable[str | os.PathLike[str]], exclude: Path | None = None) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of absolute file paths.

    Hidden files and folders and the data home are left out.

    Raises:
        IngestError: a path does not exist.
    """
    skip = exclude.resolve() if exclude else None
    found: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise IngestError(f"{raw} does not exist: check the path")
        path = path.resolve()
        if path.is_file():
            found.add(path)
            continue
        for folder, dirs, names in os.walk(path):
            here = Path(folder)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and here / d != skip)
            found.update(here / n for n in names if not n.startswith(".") and (here / n).is_file())
    return sorted(found)


def ingest(
    paths: Iterable[str | os.PathLike[str]],
    config: IngestConfig,
    *,
    prune: bool = False,
    progress: bool = True,
    on_file: Callable[[int, int, str], None] | None = None,
) -> IngestReport:
    """Ingest files and folders into the configured collection.

    Unchanged files cost no embedding work; changed files have their old chunks
    replaced; with ``prune``, files that no longer exist are removed. Each bad
    file is reported with a reason and never stops the run.

    Args:
        paths: Files and folders; folders are walked recursively.
        config: Collection, embedder, chunking and store settings.
        prune: Also remove chunks of files in the manifest that no longer exist.
        progress: Show the embedding progress bar on a terminal.
        on_file: Called with (files done, files in all, next path) before each file is read.

    Raises:
        IngestError: bad paths or config, model or store unavailable, or
            another process writing to the same data home.
    """
    started = time.perf_counter()
    home = config.home_path
    files = discover(paths, exclude=home)
    report = IngestReport(config.collection)
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home), _opened(config) as target:
        manifest = target.manifest
        known = manifest.files(config.collection)
        embedder = _LazyEmbedder(config)
        max_bytes = int(config.max_file_mb * 2**20)
        group: list[_Prepared] = []
        for done, path in enumerate(files):
            if on_file:
                on_file(done, len(files), str(path))
            key = str(path)
            record = known.get(key)
            try:
                check_file(path, max_bytes)
                stat = path.stat()
                if record and (record.size, record.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
                    report.files.append(FileReport(key, "unchanged", chunks=len(record.chunk_ids)))
                    continue
                sha = file_sha256(path)
                if record and record.sha256 == sha:
                    manifest.touch(config.collection, key, stat.st_size, stat.st_mtime_ns)
                    report.files.append(FileReport(key, "unchanged", chunks=len(record.chunk_ids)))
                    continue
                sections = load_file(path, max_bytes)
            except (FileRejected, OSError) as e:
                if isinstance(e, OSError):  # vanished, unreadable, permission denied
                    e = FileRejected(f"cannot read it ({e.strerror or e}): check that it exists and is readable")
                status = "failed" if e.failed else "skipped"
                reason = e.reason + ("; the previously ingested version is kept" if record else "")
                report.files.append(FileReport(key, status, reason))
                log.info("%s %s: %s", status, key, reason)
                continue
            extracted, chunks = embedder.chunker().split(sections)
            old = record.chunk_ids if record else ()
            group.append(_Prepared(path, sha, stat.st_size, stat.st_mtime_ns, extracted, chunks, old))
            if sum(len(p.chunks) for p in group) >= config.group_chunks:
                _write(group, target, embedder, config, report, progress)
                group = []
        _write(group, target, embedder, config, report, progress)
        if prune:
            vanished = [p for p in known if not Path(p).exists()]
            _remove(vanished, target, config, report)
        _refresh_lexical(target, config)
        _collect_texts(home, manifest)
    report.files.sort(key=lambda f: f.path)
    report.seconds = time.perf_counter() - started
    return report


def remove_documents(paths: Iterable[str | os.PathLike[str]], config: IngestConfig) -> IngestReport:
    """Remove files (or every file under a folder) from the collection.

    Raises:
        IngestError: a path matches no ingested file.
    """
    started = time.perf_counter()
    home = config.home_path
    report = IngestReport(config.collection)
    with _locked(home), _opened(config) as target:
        known = target.manifest.files(config.collection)
        chosen: list[str] = []
        for raw in paths:
            wanted = str(Path(raw).expanduser().resolve())
            matches = [p for p in known if p == wanted or p.startswith(wanted.rstrip(os.sep) + os.sep)]
            if not matches:
                raise IngestError(
                    f"{raw} is not in collection {config.collection!r}: see `ragtune docs list` for what is"
                )
            chosen.extend(m for m in matches if m not in chosen)
        _remove(chosen, target, config, report)
        _refresh_lexical(target, config)
        _collect_texts(home, target.manifest)
    report.seconds = time.perf_counter() - started
    return report


def list_documents(config: IngestConfig) -> list[FileRecord]:
    """The files ingested into the configured collection, by path."""
    path = config.home_path / "manifest.sqlite"
    if not path.exists():
        return []
    manifest = Manifest(path)
    try:
        return list(manifest.files(config.collection).values())
    finally:
        manifest.close()


def extracted_text(config: IngestConfig, sha256: str) -> str:
    """The extracted text of an ingested file; chunk offsets index into it."""
    return (config.home_path / "texts" / f"{sha256}.txt").read_text(encoding="utf-8")


# --- steps ------------------------------------------------------------------------------


class _LazyEmbedder:
    """Loads the embedding model on first use, so unchanged corpora never load it."""

    def __init__(self, config: IngestConfig) -> None:
        self._config = config
        self._model: Any = None
        self._chunker: Chunker | None = None

    def model(self) -> Any:
        if self._model is None:
            from ingest.embedding import load_embedder

            self._model = load_embedder(self._config.embedding_model, self._config.device)
        return self._model

    def chunker(self) -> Chunker:
        if self._chunker is None:
            from ingest.chunking import Chunker
            from ingest.embedding import max_text_tokens

            model = self.model()
            self._chunker = Chunker(
                model.tokenizer, self._config.chunk_tokens, self._config.chunk_overlap, max_text_tokens(model)
            )
        return self._chunker


def _write(
    group: list[_Prepared],
    target: _Target,
    embedder: _LazyEmbedder,
    config: IngestConfig,
    report: IngestReport,
    progress: bool,
) -> None:
    if not group:
        return
    from ingest.embedding import embed

    name, manifest = config.collection, target.manifest
    ids = {str(p.path): [chunk_id(str(p.path), p.sha256, c.index) for c in p.chunks] for p in group}
    manifest.begin(name, ids)
    log.debug("step: journal written for %d files", len(group))

    texts = [c.text for p in group for c in p.chunks]
    vectors = embed(embedder.model(), texts, config.batch_size, progress)
    log.debug("step: embedded %d chunks", len(texts))
    store.upsert(
        target.collection,
        [i for p in group for i in ids[str(p.path)]],
        vectors,
        texts,
        [_metadata(p, c) for p in group for c in p.chunks],
        target.batch,
    )
    log.debug("step: upserted %d chunks", len(texts))

    texts_dir = config.home_path / "texts"
    texts_dir.mkdir(exist_ok=True)
    for p in group:
        _write_atomic(texts_dir / f"{p.sha256}.txt", p.extracted)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    records = [FileRecord(str(p.path), p.sha256, p.size, p.mtime_ns, tuple(ids[str(p.path)]), now) for p in group]
    stale = {str(p.path): set(p.old_ids) - set(ids[str(p.path)]) for p in group}
    manifest.commit(name, records, stale)
    log.debug("step: manifest committed")

    store.delete(target.collection, [i for s in stale.values() for i in s], target.batch)
    manifest.settle(name, [path for path, s in stale.items() if s])
    log.debug("step: stale chunks deleted")

    for p in group:
        status = "updated" if p.old_ids else "added"
        report.files.append(FileReport(str(p.path), status, chunks=len(p.chunks)))
        report.chunks_added += len(p.chunks)
        report.chunks_removed += len(p.old_ids)
        log.info("%s %s (%d chunks)", status, p.path, len(p.chunks))


def _remove(paths: list[str], target: _Target, config: IngestConfig, report: IngestReport) -> None:
    if not paths:
        return
    doomed = target.manifest.retire(config.collection, paths)
    log.debug("step: removal journalled for %d files", len(paths))
    store.delete(target.collection, [i for ids in doomed.values() for i in ids], target.batch)
    target.manifest.settle(config.collection, paths)
    for path, ids in doomed.items():
        report.files.append(FileReport(path, "removed", chunks=len(ids)))
        report.chunks_removed += len(ids)
        log.info("removed %s (%d chunks)", path, len(ids))


def _recover(target: _Target, name: str) -> None:
    leftovers = target.manifest.interrupted(name)
    if not leftovers:
        return
    store.delete(target.collection, [i for ids in leftovers.values() for i in ids], target.batch)
    target.manifest.settle(name, leftovers)
    log.warning("repaired %d files left unfinished by an interrupted run", len(leftovers))


def _refresh_lexical(target: _Target, config: IngestConfig) -> None:
    """Rebuild the BM25 index unless it already matches the manifest."""
    from ingest import lexical

    ids = [i for record in target.manifest.files(config.collection).values() for i in record.chunk_ids]
    if not lexical.is_current(config.home_path, config.collection, ids):
        lexical.build(config.home_path, config.collection, target.collection, ids)
        log.debug("step: lexical index rebuilt")


def _metadata(p: _Prepared, c: Chunk) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "source": str(p.path),
        "file_name": p.path.name,
        "file_type": p.path.suffix.lower().lstrip("."),
        "file_hash": p.sha256,
        "chunk_index": c.index,
        "start_char": c.start,
        "end_char": c.end,
        "tokens": c.tokens,
    }
    if c.page is not None:
        meta["page"] = c.page
    if c.section:
        meta["section"] = c.section
    return meta


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _collect_texts(home: Path, manifest: Manifest) -> None:
    """Delete extracted texts that no collection references any more."""
    texts_dir = home / "texts"
    if not texts_dir.is_dir():
        return
    live = manifest.hashes()
    for path in texts_dir.iterdir():
        if path.suffix != ".txt" or path.stem not in live:
            path.unlink(missing_ok=True)


@dataclass
class _Target:
    manifest: Manifest
    collection: Collection
    batch: int  # the most records the client takes in one call


@contextmanager
def _opened(config: IngestConfig) -> Iterator[_Target]:
    manifest = Manifest(config.home_path / "manifest.sqlite")
    try:
        client = store.open_client(config.home_path, config.chroma_url)
        collection = store.open_collection(client, config.collection, config.embedding_model)
        assert collection is not None
        target = _Target(manifest, collection, client.get_max_batch_size())
        _recover(target, config.collection)
        lost = manifest.files(config.collection)
        if lost and collection.count() == 0:  # the store was wiped or replaced under the manifest
            log.warning(
                "collection %r lost its %d files in the store; they will be ingested again",
                config.collection,
                len(lost),
            )
            manifest.settle(config.collection, manifest.retire(config.collection, list(lost)))
        yield target
    finally:
        manifest.close()


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    """One writer per data home at a time."""
    home.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; single-writer is the user's duty
        yield
        return
    with open(home / "ingest.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IngestError(f"another ragtune process is writing to {home}: wait for it to finish") from None
        yield
