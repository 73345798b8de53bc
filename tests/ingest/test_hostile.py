"""Hostile inputs, made at run time: each bad file is one report line and everything else is kept."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest import IngestConfig, ingest, list_documents
from ingest.loaders import html_to_markdown_text
from ingest.sources import printable, source_key
from ingest.store import open_client, open_collection
from tests.ingest.hostile_files import (
    BAD_UTF8_NAME,
    CONTROL_NAME,
    declared_bomb,
    deep_json,
    docx_bytes,
    lying_docx,
    nested_html,
)


def _hostile_folder(root: Path) -> Path:
    folder = root / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "good.txt").write_text("The pump warranty lasts two years from the date of purchase.")
    (folder / "report.docx").write_bytes(docx_bytes("The valve opens at three bar of pressure."))
    (folder / BAD_UTF8_NAME).write_text("The café menu lists a battery soup.")
    (folder / CONTROL_NAME).write_text("A file whose name holds a newline, a tab and an escape sequence.")
    declared_bomb(folder / "bomb.docx")
    lying_docx(folder / "lying.docx")
    deep_json(folder / "deep.json")
    nested_html(folder / "nested.html")
    outside = root / "outside-secret.txt"
    outside.write_text("root:x:0:0:a secret outside the ingested folder")
    (folder / "passwd.txt").symlink_to(outside)
    (folder / "alias.txt").symlink_to(folder / "good.txt")  # inside: read once, under its target
    (folder / "sub" / "up").symlink_to(folder)  # a loop
    (folder / "self.txt").symlink_to(folder / "self.txt")
    (folder / "gone.txt").symlink_to(folder / "missing.txt")
    os.mkfifo(folder / "pipe.txt")
    return folder


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    return _hostile_folder(tmp_path)


def _state(config: IngestConfig) -> dict[str, dict]:
    collection = open_collection(open_client(config.home_path), config.collection, config.embedding_model, create=False)
    assert collection is not None
    got = collection.get(include=["metadatas"])
    return {i: dict(m) for i, m in zip(got["ids"], got["metadatas"])}


def test_hostile_folder_reports_each_file_once_and_keeps_the_rest(hostile: Path, tiny_config: IngestConfig) -> None:
    report = ingest([hostile], tiny_config, progress=False)
    by_name = {Path(f.path).name: f for f in report.files}
    assert len(by_name) == len(report.files), "a file was reported twice"
    folder = str(hostile.resolve())
    escaped = "caf\\xe9 menu.txt"
    for name in ("good.txt", "report.docx", escaped, CONTROL_NAME, "nested.html"):
        assert by_name[name].status == "added", (name, by_name[name])
    assert "alias.txt" not in by_name  # read once, as good.txt
    expected = {
        "bomb.docx": ("skipped", "more than max_unzipped_mb 256"),
        "lying.docx": ("failed", "Bad CRC-32"),
        "deep.json": ("failed", "corrupt or unreadable .json"),
        "passwd.txt": ("skipped", "outside the folders being ingested; set follow_symlinks = true"),
        "up": ("skipped", "symbolic link loop"),
        "self.txt": ("skipped", "symbolic link loop"),
        "gone.txt": ("skipped", "broken symbolic link"),
        "pipe.txt": ("skipped", "not a regular file (a FIFO)"),
    }
    for name, (status, reason) in expected.items():
        assert by_name[name].status == status and reason in by_name[name].reason, (name, by_name[name])
    assert set(by_name) == {"good.txt", "report.docx", escaped, CONTROL_NAME, "nested.html", *expected}

    # stored under keys that Chroma, SQLite and JSON take; the manifest and the collection agree
    state = _state(tiny_config)
    records = {r.path: r for r in list_documents(tiny_config)}
    assert {i for r in records.values() for i in r.chunk_ids} == set(state)
    assert f"{folder}/{escaped}" in records and f"{folder}/{CONTROL_NAME}" in records
    assert not any("secret" in str(m) for m in state.values())
    assert any(m["file_name"] == "nested.html" for m in state.values())

    # a second run finds every stored file unchanged (the escaped key maps back to the file) and prunes none
    again = ingest([hostile], tiny_config, prune=True, progress=False)
    assert again.count("added", "updated", "removed") == 0 and again.count("unchanged") == 5
    assert _state(tiny_config) == state


def test_follow_symlinks_reads_links_out(hostile: Path, tiny_config: IngestConfig) -> None:
    config = dataclasses.replace(tiny_config, follow_symlinks=True)
    report = ingest([hostile / "passwd.txt", hostile / "good.txt", hostile / "sub"], config, progress=False)
    # a path given by name is read even as a link; a folder's links out are read when following them
    assert report.count("added") == 2
    report = ingest([hostile], config, progress=False)
    by_name = {Path(f.path).name: f for f in report.files}
    assert by_name["passwd.txt"].status == "added"


def test_cli_prints_each_hostile_name_on_one_escaped_line(hostile: Path, tiny_config: IngestConfig) -> None:
    (hostile / "big.txt").write_text(" ".join(f"Sentence {n} about the pump." for n in range(400)))
    command = [
        sys.executable, "-m", "ingest", "ingest", str(hostile), "--home", str(tiny_config.home_path),
        "--embedding-model", tiny_config.embedding_model, "--chunk-tokens", "48", "--chunk-overlap", "8",
        "--set", "group_chunks=16", "-v",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, errors="surrogateescape")
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "\x1b" not in out and "\x1b" not in done.stderr
    assert printable(str(hostile.resolve() / CONTROL_NAME)) in out  # \n, \t and \x1b written out
    assert "caf\\xe9 menu.txt" in out
    lines = out.splitlines()
    for name in ("pipe.txt", "bomb.docx", "passwd.txt", "self.txt", "gone.txt", "lying.docx", "deep.json"):
        assert sum(f"/{name}:" in line for line in lines) == 1, name
    # -v: progress inside a file written in several crash-safe parts
    assert "big.txt: 16 of" in done.stderr and "chunks stored" in done.stderr


def test_a_parser_past_the_time_limit_is_stopped_and_the_run_goes_on(tmp_path: Path, tiny_config: IngestConfig) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    rows = "".join(f"{n},item {n},{n * 3},a comment about item {n}\n" for n in range(300_000))
    (folder / "slow.csv").write_text("id,name,value,comment\n" + rows)  # takes the csv loader many seconds
    (folder / "quick.txt").write_text("A short note about the warranty of the pump.")
    config = dataclasses.replace(tiny_config, file_timeout_s=1.0)
    report = ingest([folder], config, progress=False)
    by_name = {Path(f.path).name: f for f in report.files}
    assert by_name["slow.csv"].status == "failed" and "file_timeout_s (1 s)" in by_name["slow.csv"].reason
    assert by_name["quick.txt"].status == "added"


def test_zip_limit_is_a_setting(tmp_path: Path, tiny_config: IngestConfig) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "report.docx").write_bytes(docx_bytes("The valve opens at three bar of pressure."))
    small = dataclasses.replace(tiny_config, max_unzipped_mb=0.5)  # the template alone unpacks to 0.8 MB
    report = ingest([folder], small, progress=False)
    assert report.files[0].status == "skipped" and "max_unzipped_mb 0.5)" in report.files[0].reason
    assert ingest([folder], tiny_config, progress=False).count("added") == 1
    (folder / "report.docx").rename(folder / "renamed.doc")  # a .doc that is a zip is read as a .docx: checked too
    report = ingest([folder], small, progress=False)
    assert {f.status for f in report.files if f.path.endswith("renamed.doc")} == {"skipped"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_unreadable_folder_is_reported(tmp_path: Path, tiny_config: IngestConfig) -> None:
    folder = tmp_path / "docs"
    (folder / "locked").mkdir(parents=True)
    (folder / "note.txt").write_text("A readable note about the pump.")
    (folder / "locked").chmod(0)
    try:
        report = ingest([folder], tiny_config, progress=False)
    finally:
        (folder / "locked").chmod(0o755)
    by_name = {Path(f.path).name: f for f in report.files}
    assert by_name["locked"].status == "failed" and "cannot list folder" in by_name["locked"].reason
    assert by_name["note.txt"].status == "added"


def test_html_of_any_shape_is_read_in_one_pass(tmp_path: Path) -> None:
    deep = nested_html(tmp_path / "nested.html").read_text()
    assert html_to_markdown_text(deep).strip() == "deep inside"
    flat = "".join(f"<p>Paragraph {n}.</p>" for n in range(80_000))
    lines = html_to_markdown_text(f"<html><body>{flat}</body></html>").split()
    assert lines[1::2] == [f"{n}." for n in range(80_000)]


def test_names_that_are_not_utf8_get_a_storable_key() -> None:
    key = source_key(f"/docs/{BAD_UTF8_NAME}")
    assert key == "/docs/caf\\xe9 menu.txt" and key.encode("utf-8")
    assert printable("a\nb\tc\x1bd") == "a\\nb\\tc\\x1bd"
