"""Kill a real ingest process at each step; the next run must end exactly like a clean run."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ingest import IngestConfig, ingest, list_documents
from ingest.store import open_client, open_collection

# The debug lines the pipeline logs around each write (see ingest.pipeline._write).
STEPS = ["journal written", "embedded", "upserted", "manifest committed", "stale chunks deleted"]


def _corpus(folder: Path, version: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(6):
        words = f"Document {n} version {version} talks about battery cell number {n} and its warranty. "
        (folder / f"doc{n}.txt").write_text(words * (10 + 3 * n))
    return folder


def _state(config: IngestConfig) -> dict[str, tuple[str, dict]]:
    collection = open_collection(open_client(config.home_path), config.collection, config.embedding_model, create=False)
    assert collection is not None
    got = collection.get(include=["documents", "metadatas"])
    return {i: (d, dict(m)) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])}


def _kill_at(config: IngestConfig, corpus: Path, step: str, *extra: str, occurrence: int = 2) -> None:
    """Run ``python -m ingest ingest`` and SIGKILL it when it logs ``step`` for the n-th time."""
    command = [
        sys.executable,
        "-m",
        "ingest",
        "ingest",
        str(corpus),
        "--home",
        str(config.home_path),
        "--embedding-model",
        config.embedding_model,
        "--chunk-tokens",
        str(config.chunk_tokens),
        "--chunk-overlap",
        str(config.chunk_overlap),
        "--set",
        f"group_chunks={config.group_chunks}",
        "-vv",
        *extra,
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert proc.stderr is not None
    seen, log = 0, []
    for line in proc.stderr:
        log.append(line)
        if f"step: {step}" in line:
            seen += 1
            if seen == occurrence:
                proc.send_signal(signal.SIGKILL)
                break
    proc.stderr.close()
    assert proc.wait(timeout=120) == -signal.SIGKILL, "".join(log[-20:])


def _clean_state(tmp_path: Path, config: IngestConfig, corpus: Path) -> dict[str, tuple[str, dict]]:
    reference = dataclasses.replace(config, home=str(tmp_path / "reference-home"))
    ingest([corpus], reference, progress=False)
    return _state(reference)


def _assert_consistent(config: IngestConfig, expected: dict[str, tuple[str, dict]]) -> None:
    state = _state(config)
    manifest_ids = [i for record in list_documents(config) for i in record.chunk_ids]
    assert len(manifest_ids) == len(set(manifest_ids))
    assert set(manifest_ids) == set(state), "manifest and collection disagree"
    assert state == expected, "state differs from a clean run"


@pytest.fixture
def crash_config(tiny_config: IngestConfig) -> IngestConfig:
    return dataclasses.replace(tiny_config, group_chunks=8)  # several crash-safe steps per run


@pytest.mark.parametrize("step", STEPS)
def test_killed_first_ingest_then_rerun_equals_clean_run(tmp_path: Path, crash_config: IngestConfig, step: str) -> None:
    corpus = _corpus(tmp_path / "docs", version=1)
    _kill_at(crash_config, corpus, step)
    ingest([corpus], crash_config, progress=False)
    _assert_consistent(crash_config, _clean_state(tmp_path, crash_config, corpus))


@pytest.mark.parametrize("step", STEPS)
def test_killed_update_then_rerun_equals_clean_run(tmp_path: Path, crash_config: IngestConfig, step: str) -> None:
    corpus = _corpus(tmp_path / "docs", version=1)
    ingest([corpus], crash_config, progress=False)
    _corpus(corpus, version=2)  # every file changes
    _kill_at(crash_config, corpus, step)
    # Once repaired (an empty run only repairs), every file is whole at one version:
    # the old one where the update was cut short.
    ingest([], crash_config, progress=False)
    partial = _state(crash_config)
    versions = {(m["source"], m["file_hash"]) for _, m in partial.values()}
    assert len(versions) == len({s for s, _ in versions}) == 6
    ingest([corpus], crash_config, progress=False)
    _assert_consistent(crash_config, _clean_state(tmp_path, crash_config, corpus))


def test_killed_prune_then_rerun_equals_clean_run(tmp_path: Path, crash_config: IngestConfig) -> None:
    corpus = _corpus(tmp_path / "docs", version=1)
    ingest([corpus], crash_config, progress=False)
    for n in range(3):
        (corpus / f"doc{n}.txt").unlink()
    (corpus / "doc5.txt").write_text("A changed file, so the run has work before it prunes. " * 40)
    _kill_at(crash_config, corpus, "removal journalled", "--prune", occurrence=1)
    ingest([corpus], crash_config, prune=True, progress=False)
    _assert_consistent(crash_config, _clean_state(tmp_path, crash_config, corpus))


def _big_file(folder: Path, version: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    words = " ".join(f"Version {version} sentence {n} is about pump number {n}." for n in range(300))
    (folder / "big.txt").write_text(words)
    return folder


def test_killed_inside_a_large_file_resumes_where_it_stopped(
    tmp_path: Path, crash_config: IngestConfig, caplog: pytest.LogCaptureFixture
) -> None:
    from ingest.manifest import Manifest

    corpus = _big_file(tmp_path / "docs", version=1)
    _kill_at(crash_config, corpus, "upserted", occurrence=3)  # after two parts are committed
    manifest = Manifest(crash_config.home_path / "manifest.sqlite")
    part = manifest.partial(crash_config.collection, str((corpus / "big.txt").resolve()))
    manifest.close()
    # two parts or more (the process runs on a moment after the line that triggers the kill)
    assert part is not None and len(part[2]) >= 2 * crash_config.group_chunks
    assert len(part[2]) % crash_config.group_chunks == 0
    with caplog.at_level("INFO", logger="ragtune.ingest"):
        report = ingest([corpus], crash_config, progress=False)
    assert f"resuming, {len(part[2])} of" in caplog.text
    assert report.files[0].status == "added"
    _assert_consistent(crash_config, _clean_state(tmp_path, crash_config, corpus))


def test_killed_inside_a_large_update_keeps_the_previous_version(tmp_path: Path, crash_config: IngestConfig) -> None:
    corpus = _big_file(tmp_path / "docs", version=1)
    ingest([corpus], crash_config, progress=False)
    before = _state(crash_config)
    _big_file(corpus, version=2)
    _kill_at(crash_config, corpus, "manifest committed", occurrence=2)  # two parts of version 2 stored
    during = _state(crash_config)
    assert set(before) < set(during)  # version 1 whole, beside the stored parts of version 2
    ingest([], crash_config, progress=False)  # a run that does not read the file drops its unfinished version
    assert _state(crash_config) == before
    _kill_at(crash_config, corpus, "manifest committed", occurrence=2)
    ingest([corpus], crash_config, progress=False)  # continues version 2, then retires version 1
    _assert_consistent(crash_config, _clean_state(tmp_path, crash_config, corpus))
