"""Config files, overrides and the CLI's one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest import IngestConfig, IngestError, load_config, resolve_home
from ingest.config import parse_assignments
from tests.conftest import run_ragtune


def test_toml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "ragtune.toml"
    path.write_text('[ingest]\ncollection = "handbook"\nchunk_tokens = 128\nmax_file_mb = 5\n')
    config = load_config(IngestConfig, "ingest", path, {"chunk_tokens": "96", "device": None})
    assert (config.collection, config.chunk_tokens, config.max_file_mb, config.device) == ("handbook", 96, 5.0, "auto")


@pytest.mark.parametrize(
    ("toml", "overrides", "message"),
    [
        ("[ingest]\nchunk_size = 100\n", {}, "unknown config key 'chunk_size' in \\[ingest\\]"),
        ("", {"colection": "x"}, "unknown config key 'colection' in the command line"),
        ('[ingest]\nchunk_tokens = "many"\n', {}, "'chunk_tokens' .* expects int, got 'many'"),
        ("", {"chunk_tokens": "ten"}, "expects int, got 'ten'"),
        ("[ingest]\nchunk_tokens = 8\n", {}, "chunk_tokens=8 is too small"),
        ("", {"chunk_overlap": "150"}, "chunk_overlap=150 must be between 0 and half"),
        ("", {"collection": "a b"}, "collection name 'a b' is invalid"),
        ("[ingest\n", {}, "is not valid TOML"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, toml: str, overrides: dict, message: str) -> None:
    path = tmp_path / "ragtune.toml"
    path.write_text(toml)
    with pytest.raises(IngestError, match=message):
        load_config(IngestConfig, "ingest", path, overrides)


def test_missing_config_file_and_bad_assignment(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="not found"):
        load_config(IngestConfig, "ingest", tmp_path / "nope.toml")
    with pytest.raises(IngestError, match="not of the form key=value"):
        parse_assignments(["chunk_tokens"])


def test_home_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_home(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("RAGTUNE_HOME", str(tmp_path / "env"))
    assert resolve_home() == tmp_path / "env"
    monkeypatch.delenv("RAGTUNE_HOME")
    assert resolve_home() == Path(".ragtune")


def test_cli_config_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_ragtune("ingest", str(tmp_path), "--set", "chunk_sise=10")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown config key 'chunk_sise'")
    assert not (tmp_path / "home").exists(), "a config error writes nothing"


def test_cli_reads_config_from_the_data_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[ingest]\nmax_file_mb = -1\n")
    result = run_ragtune("docs", "list")
    assert result.returncode == 2 and "max_file_mb must be positive" in result.stderr


def test_cli_nothing_ingestible_exits_1(tmp_path: Path, tiny_embedder: str) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.xls").write_bytes(b"PK")
    (docs / "b.txt").write_bytes(b"")
    result = run_ragtune("ingest", str(docs), "--embedding-model", tiny_embedder)
    assert result.returncode == 1
    assert "skipped   " in result.stdout and "unsupported type .xls" in result.stdout
    assert "nothing could be ingested" in result.stderr
