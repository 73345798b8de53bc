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
