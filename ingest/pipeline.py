"""Ingest files into a collection, incrementally and safely; list and remove them.

The order of every write (see :mod:`ingest.manifest`): journal the new chunk
ids, embed and upsert them, commit the manifest and journal the old ids, delete
the old ids, clear the journal. A run killed anywhere is repaired by the next
one before it starts. A file with more chunks than ``group_chunks`` is written
in parts, each committed as a stored part of its new version, so a rerun
continues it; after every write the data home's stamp tells readers in other
processes to reopen the store (:func:`ingest.store.mark_written`).
"""

from __future__ import annotations

import dataclasses
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
from ingest.languages import document_languages
from ingest.loaders import LoadStats, check_file
from ingest.manifest import FileRecord, Manifest
from ingest.sources import exists, printable, source_key, walk
from ingest.worker import ParserProcess

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from ingest.chunking import Chunk, Chunker

log = logging.getLogger("ragtune.ingest")

SAMPLE_CORPUS = Path(__file__).parent / "sample"
AUTO_SAMPLE_FILES = 5  # embedding_model = "auto" looks at the languages of this many files of a new collection


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
    notes: list[str] = field(default_factory=list)  # lines to show with the summary: the embedder chosen, warnings
    ocr_pages: int = 0  # PDF pages whose text was read by OCR
    ocr_seconds: float = 0.0
    table_seconds: float = 0.0  # PDF line, cell and table reconstruction

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
            + (f" ({self.table_seconds:.1f} s PDF layout and tables" if self.table_seconds >= 0.05 else "")
            + (f", {self.ocr_pages} pages OCR'd in {self.ocr_seconds:.1f} s" if self.ocr_pages else "")
            + (")" if self.table_seconds >= 0.05 else "")
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
    chunks: list[Chunk]  # the chunks to store (a part of the file's, when it is written in parts)
    old_ids: tuple[str, ...]
    indices: tuple[int, ...] = ()  # every chunk index of the file's new version
    stored: int = 0  # chunks of this version stored before ``chunks``
    last: bool = True  # ``chunks`` completes the file


def chunk_id(path: str, sha256: str, index: int) -> str:
    """Deterministic id of a chunk: same file, same content, same position, same id."""
    return hashlib.sha256(f"{path}\0{sha256}\0{index}".encode("utf-8", "surrogateescape")).hexdigest()[:32]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def discover(
    paths: Iterable[str | os.PathLike[str]], exclude: Path | None = None, follow_symlinks: bool = False
) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of absolute file paths.

    Hidden files and folders and the data home are left out; so are links out of
    the given folders (unless ``follow_symlinks``) and anything not a regular
    file (see :func:`ingest.sources.walk`, which also says why).

    Raises:
        IngestError: a path does not exist.
    """
    return walk(paths, exclude, follow_symlinks).files


def ingest(
    paths: Iterable[str | os.PathLike[str]],
    config: IngestConfig,
    *,
    prune: bool = False,
    progress: bool = True,
    on_file: Callable[[int, int, str], None] | None = None,
    embedder: Callable[[str, str], Any] | None = None,
    on_chunks: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Ingest files and folders into the configured collection.

    Unchanged files cost no embedding work; changed files have their old chunks
    replaced; with ``prune``, files that no longer exist are removed. Each bad
    file is reported with a reason and never stops the run.

    Args:
        paths: Files and folders; folders are walked recursively.
        config: Collection, embedder, chunking and store settings.
        embedder: Loads an embedding model by (name, device), e.g. a cache shared with retrieval;
            None loads one with :func:`ingest.embedding.load_embedder`.
        prune: Also remove chunks of files in the manifest that no longer exist.
        progress: Show the embedding progress bar on a terminal.
        on_file: Called with (files done, files in all, next path) before each file is read.
        on_chunks: Called with (chunks embedded, chunks in this step) after each embedding batch.

    Raises:
        IngestError: bad paths or config, model or store unavailable, or
            another process writing to the same data home.
    """
    started = time.perf_counter()
    home = config.home_path
    found = walk(paths, home, config.follow_symlinks)
    files = found.files
    report = IngestReport(config.collection)
    for s in found.skipped:
        report.files.append(FileReport(s.path, "failed" if s.failed else "skipped", s.reason))
        log.info("%s %s: %s", "failed" if s.failed else "skipped", printable(s.path), s.reason)
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home), _opened(config) as target, ParserProcess(config.file_timeout_s) as parser:
        manifest = target.manifest
        known = manifest.files(config.collection)
        lazy = _LazyEmbedder(config, embedder, target.collection)
        max_bytes = int(config.max_file_mb * 2**20)
        group: list[_Prepared] = []
        for done, path in enumerate(files):
            if on_file:
                on_file(done, len(files), source_key(path))
            key = source_key(path)
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
                stats = LoadStats()
                sections = parser.load(
                    path,
                    max_bytes,
                    ocr=config.ocr,
                    stats=stats,
                    max_unzipped_bytes=int(config.max_unzipped_mb * 2**20),
                )
                report.ocr_pages += stats.ocr_pages
                report.ocr_seconds += stats.ocr_seconds
                report.table_seconds += stats.table_seconds
            except (FileRejected, OSError) as e:
                if isinstance(e, OSError):  # vanished, unreadable, permission denied
                    e = FileRejected(f"cannot read it ({e.strerror or e}): check that it exists and is readable")
                status = "failed" if e.failed else "skipped"
                reason = e.reason + ("; the previously ingested version is kept" if record else "")
                report.files.append(FileReport(key, status, reason))
                log.info("%s %s: %s", status, printable(key), reason)
                continue
            if lazy.undecided:  # a new collection with embedding_model = "auto": look at its first files
                ahead = files[done + 1 : done + AUTO_SAMPLE_FILES]
                report.notes.append(lazy.decide([s.text for s in sections] + _peek(ahead, parser, config)))
            extracted, chunks = lazy.chunker().split(sections)
            old = record.chunk_ids if record else ()
            # named by its key from here on: a name that is not UTF-8 is stored escaped
            prepared = _Prepared(Path(key), sha, stat.st_size, stat.st_mtime_ns, extracted, chunks, old)
            group.append(_resume(prepared, manifest, config))
            while sum(len(p.chunks) for p in group) >= config.group_chunks:
                ready, group = _cut(group, config.group_chunks)
                _write(ready, target, lazy, config, report, progress, on_chunks)
        _write(group, target, lazy, config, report, progress, on_chunks)
        if lazy.foreign:
            report.notes.append(lazy.language_warning())
            log.info("%s", report.notes[-1])
        if prune:
            vanished = [p for p in known if not exists(p)]
            _remove(vanished, target, config, report)
        _drop_unfinished(target, config.collection, home)
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
            wanted = source_key(Path(raw).expanduser().resolve())
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
    """Loads the embedding model on first use, so unchanged corpora never load it.

    With ``embedding_model = "auto"`` the model is the one recorded with the collection;
    a new collection has none yet, and :meth:`decide` picks and records it.
    """

    def __init__(
        self, config: IngestConfig, load: Callable[[str, str], Any] | None = None, collection: Any = None
    ) -> None:
        from ingest.embedding import AUTO

        self._config = config
        self._load = load
        self._model: Any = None
        self._chunker: Chunker | None = None
        self._collection = collection
        self.name = config.embedding_model
        if self.name == AUTO and collection is not None:
            self.name = store.recorded_model(collection) or AUTO
        self.foreign: dict[str, str] = {}  # file -> its language, for files not in English

    @property
    def undecided(self) -> bool:
        from ingest.embedding import AUTO

        return self.name == AUTO and self._collection is not None

    def decide(self, texts: list[str]) -> str:
        """Pick the embedder for a new collection by the languages of ``texts``, record it, say which and why."""
        from ingest.embedding import choose_embedder
        from ingest.languages import language_shares

        self.name, why = choose_embedder(language_shares(texts))
        store.record_model(self._collection, self.name)
        note = f'embedding model: {self.name}, because {why} (embedding_model = "auto"; set it to choose)'
        log.info("%s", note)
        return note

    def model(self) -> Any:
        if self._model is None:
            from ingest.embedding import AUTO, ENGLISH_MODEL, load_embedder

            name = ENGLISH_MODEL if self.name == AUTO else self.name
            c = self._config
            if self._load is not None:
                self._model = self._load(name, c.device)
            else:
                self._model = load_embedder(
                    name, c.device, c.home_path, c.query_prompt, c.passage_prompt, c.embedding_dtype
                )
        return self._model

    def note_languages(self, group: list[_Prepared], metadatas: list[dict[str, Any]]) -> None:
        """Remember the files of ``group`` that are mostly not in English, when the model is English-only."""
        from collections import Counter

        from ingest.embedding import is_english_only

        if not is_english_only(self.name):
            return
        at = 0
        for p in group:
            languages = Counter(m.get("language") for m in metadatas[at : at + len(p.chunks)] if m.get("language"))
            at += len(p.chunks)
            top = languages.most_common(1)
            if top and top[0][0] != "en":
                self.foreign[str(p.path)] = str(top[0][0])

    def language_warning(self) -> str:
        """One line: which files are not in English and how to get a model that reads them."""
        from ingest.embedding import MULTILINGUAL_MODEL

        languages = ", ".join(sorted(set(self.foreign.values())))
        return (
            f"warning: {len(self.foreign)} files are not in English ({languages}) but collection "
            f"{self._config.collection!r} uses the English-only embedder {self.name}: ingest them into a new "
            f'collection with embedding_model = "auto" (or "{MULTILINGUAL_MODEL}") for good retrieval'
        )

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
    on_chunks: Callable[[int, int], None] | None = None,
) -> None:
    if not group:
        return
    from ingest.embedding import embed

    name, manifest = config.collection, target.manifest
    ids = {str(p.path): [chunk_id(str(p.path), p.sha256, c.index) for c in p.chunks] for p in group}
    every = {  # each completed file's full id list (its earlier parts included)
        str(p.path): [chunk_id(str(p.path), p.sha256, i) for i in p.indices] if p.indices else ids[str(p.path)]
        for p in group
        if p.last
    }
    manifest.begin(name, ids)
    log.debug("step: journal written for %d files", len(group))

    texts = [c.text for p in group for c in p.chunks]
    chunker = embedder.chunker()
    embedded = [
        chunker.embedded_text(c, _prefix(p, c) if config.context_prefix else "") for p in group for c in p.chunks
    ]
    vectors: Any = embed(embedder.model(), embedded, config.batch_size, progress, on_chunks) if texts else []
    log.debug("step: embedded %d chunks", len(texts))
    languages = [language for p in group for language in _languages(p)]
    metadatas = [
        _metadata(p, c, e, language)
        for (p, c), e, language in zip(((p, c) for p in group for c in p.chunks), embedded, languages, strict=True)
    ]
    embedder.note_languages(group, metadatas)
    store.upsert(
        target.collection,
        [i for p in group for i in ids[str(p.path)]],
        vectors,
        texts,
        metadatas,
        target.batch,
    )
    store.mark_written(config.home_path)
    log.debug("step: upserted %d chunks", len(texts))

    texts_dir = config.home_path / "texts"
    texts_dir.mkdir(exist_ok=True)
    done = [p for p in group if p.last]
    for p in done:
        _write_atomic(texts_dir / f"{p.sha256}.txt", p.extracted)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    records = [FileRecord(str(p.path), p.sha256, p.size, p.mtime_ns, tuple(every[str(p.path)]), now) for p in done]
    stale = {str(p.path): set(p.old_ids) - set(every[str(p.path)]) for p in done}
    recipe = _recipe(config)
    parts = {str(p.path): (p.sha256, recipe, ids[str(p.path)]) for p in group if not p.last}
    doomed = manifest.commit(name, records, stale, parts)
    log.debug("step: manifest committed")

    store.delete(target.collection, [i for s in doomed.values() for i in s], target.batch)
    manifest.settle(name, list(doomed))
    store.mark_written(config.home_path)
    log.debug("step: stale chunks deleted")

    for p in group:
        if not p.last:
            total = len(p.indices)
            log.info("%s: %d of %d chunks stored", printable(str(p.path)), p.stored + len(p.chunks), total)
            continue
        count = len(every[str(p.path)])
        status = "updated" if p.old_ids else "added"
        report.files.append(FileReport(str(p.path), status, chunks=count))
        report.chunks_added += count
        report.chunks_removed += len(p.old_ids)
        log.info("%s %s (%d chunks)", status, printable(str(p.path)), count)


def _recipe(config: IngestConfig) -> str:
    """What decides a file's chunks and vectors besides its content: a stored part is reused only under the same."""
    return f"{config.embedding_model}|{config.chunk_tokens}|{config.chunk_overlap}|{config.context_prefix}"


def _resume(p: _Prepared, manifest: Manifest, config: IngestConfig) -> _Prepared:
    """Skip the chunks of ``p`` that an earlier, unfinished run already stored."""
    key = str(p.path)
    p = dataclasses.replace(p, indices=tuple(c.index for c in p.chunks))
    part = manifest.partial(config.collection, key)
    if part is None:
        return p
    sha, recipe, stored = part
    if (sha, recipe) != (p.sha256, _recipe(config)):  # another version, or chunked otherwise: start over
        manifest.abandon(config.collection, [key])  # its ids are deleted when this version commits
        return p
    todo = [c for c in p.chunks if chunk_id(key, p.sha256, c.index) not in stored]
    log.info("%s: resuming, %d of %d chunks already stored", printable(key), len(p.chunks) - len(todo), len(p.chunks))
    return dataclasses.replace(p, chunks=todo, stored=len(p.chunks) - len(todo))


def _cut(group: list[_Prepared], size: int) -> tuple[list[_Prepared], list[_Prepared]]:
    """The first ``size`` chunks of ``group`` as a group to write, and the rest; a file may be split."""
    ready: list[_Prepared] = []
    taken = 0
    for at, p in enumerate(group):
        room = size - taken
        if len(p.chunks) <= room:
            ready.append(p)
            taken += len(p.chunks)
            continue
        head = dataclasses.replace(p, chunks=p.chunks[:room], last=False)
        tail = dataclasses.replace(p, chunks=p.chunks[room:], stored=p.stored + room)
        return ready + ([head] if room else []), [tail, *group[at + 1 :]]
    return ready, []


def _drop_unfinished(target: _Target, name: str, home: Path) -> None:
    """Delete the stored parts of new versions this run did not finish (it did not read those files)."""
    paths = target.manifest.unfinished(name)
    if not paths:
        return
    target.manifest.abandon(name, paths)
    leftovers = target.manifest.interrupted(name)
    store.delete(target.collection, [i for ids in leftovers.values() for i in ids], target.batch)
    target.manifest.settle(name, leftovers)
    store.mark_written(home)
    log.info("dropped the unfinished new versions of %d files this run did not read", len(paths))


def _remove(paths: list[str], target: _Target, config: IngestConfig, report: IngestReport) -> None:
    if not paths:
        return
    doomed = target.manifest.retire(config.collection, paths)
    log.debug("step: removal journalled for %d files", len(paths))
    store.delete(target.collection, [i for ids in doomed.values() for i in ids], target.batch)
    target.manifest.settle(config.collection, paths)
    store.mark_written(config.home_path)
    for path, ids in doomed.items():
        report.files.append(FileReport(path, "removed", chunks=len(ids)))
        report.chunks_removed += len(ids)
        log.info("removed %s (%d chunks)", path, len(ids))


def _recover(target: _Target, name: str, home: Path | None = None) -> None:
    leftovers = target.manifest.interrupted(name)
    if not leftovers:
        return
    store.delete(target.collection, [i for ids in leftovers.values() for i in ids], target.batch)
    target.manifest.settle(name, leftovers)
    if home is not None:
        store.mark_written(home)
    log.warning("repaired %d files left unfinished by an interrupted run", len(leftovers))


def _refresh_lexical(target: _Target, config: IngestConfig) -> None:
    """Rebuild the BM25 index unless it already matches the manifest."""
    from ingest import lexical

    ids = [i for record in target.manifest.files(config.collection).values() for i in record.chunk_ids]
    if not lexical.is_current(config.home_path, config.collection, ids):
        lexical.build(config.home_path, config.collection, target.collection, ids)
        log.debug("step: lexical index rebuilt")


def _peek(paths: list[Path], parser: ParserProcess, config: IngestConfig) -> list[str]:
    """The section texts of files about to be ingested (unreadable ones left out), for choosing the embedder."""
    texts: list[str] = []
    for path in paths:
        try:
            sections = parser.load(
                path,
                int(config.max_file_mb * 2**20),
                ocr=False,
                max_unzipped_bytes=int(config.max_unzipped_mb * 2**20),
            )
        except (FileRejected, OSError):
            continue
        texts.extend(s.text for s in sections)
    return texts


def _prefix(p: _Prepared, c: Chunk) -> str:
    """The document's title (its file name, readably) and the chunk's heading path."""
    name = Path(c.document).stem if c.document else p.path.stem
    title = " ".join(name.replace("_", " ").replace("-", " ").split())
    return f"{title}\n{c.section}" if c.section else title


def _languages(p: _Prepared) -> list[str]:
    """The language of each chunk of ``p``, told within its document (the file, or an attachment of it)."""
    documents: dict[str, list[int]] = {}
    for at, c in enumerate(p.chunks):
        documents.setdefault(c.document or "", []).append(at)
    languages = [""] * len(p.chunks)
    for ats in documents.values():
        for at, language in zip(ats, document_languages([p.chunks[at].text for at in ats]), strict=True):
            languages[at] = language
    return languages


def _metadata(p: _Prepared, c: Chunk, embedded: str, language: str) -> dict[str, Any]:
    # an attachment is a document of its own, named after the file that holds it: mail.eml#report.pdf
    name = f"{p.path.name}#{c.document}" if c.document else p.path.name
    meta: dict[str, Any] = {
        "source": f"{p.path}#{c.document}" if c.document else str(p.path),
        "file_name": name,
        "file_type": (Path(c.document) if c.document else p.path).suffix.lower().lstrip("."),
        "file_hash": p.sha256,
        "chunk_index": c.index,
        "start_char": c.start,
        "end_char": c.end,
        "tokens": c.tokens,
        "language": language,  # ISO 639-1; "" when the chunk has no letters
    }
    if c.page is not None:
        meta["page"] = c.page
    if c.section:
        meta["section"] = c.section
    if c.ocr:
        meta["ocr"] = True
    if c.document:
        meta["container"] = str(p.path)  # the file the manifest tracks
    if embedded != c.text:
        meta["context"] = embedded[: len(embedded) - len(c.text)].rstrip("\n")
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
        _recover(target, config.collection, config.home_path)
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
