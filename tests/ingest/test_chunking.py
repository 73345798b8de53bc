"""Chunks fit the embedder, keep their page and heading, and point back into the text."""

from __future__ import annotations

import itertools

import pytest

from ingest.chunking import Chunker
from ingest.errors import IngestError
from ingest.loaders import Section


@pytest.fixture(scope="module")
def minilm_tokenizer(bundled_embedder: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bundled_embedder)


PROSE = (
    "The battery stores energy during the day. It releases it at night when prices are high. "
    "Each cell is monitored for temperature and voltage, and the system shuts down safely when a limit is crossed. "
) * 30


def test_chunks_never_exceed_the_model_limit(minilm_tokenizer) -> None:
    # MiniLM: 256 positions, 2 special tokens, so 254 text tokens at most.
    chunker = Chunker(minilm_tokenizer, chunk_tokens=254, overlap=0, max_tokens=254)
    # one "word" of 3000 characters cannot be split at any separator
    hostile = "x" * 3000 + " " + "北京市" * 400 + "\n\n" + PROSE
    _, chunks = chunker.split([Section(hostile)])
    assert len(chunks) > 3
    for chunk in chunks:
        n = len(minilm_tokenizer(chunk.text, add_special_tokens=True)["input_ids"])
        assert n <= 256, n
        assert chunk.tokens <= 254


def test_offsets_index_the_extracted_text(minilm_tokenizer) -> None:
    chunker = Chunker(minilm_tokenizer, chunk_tokens=40, overlap=8, max_tokens=254)
    sections = [Section(PROSE, page=1, section="Intro"), Section("Short tail. " * 5, page=2, section="Intro > End")]
    extracted, chunks = chunker.split(sections)
    assert extracted.startswith(PROSE[:50])
    for i, chunk in enumerate(chunks):
        assert extracted[chunk.start : chunk.end] == chunk.text
        assert chunk.index == i
        assert 0 < chunk.tokens <= 40
    assert {c.page for c in chunks} == {1, 2}
    assert chunks[-1].section == "Intro > End"
    assert chunks[-1].start > len(PROSE)


def test_overlap_repeats_text_between_neighbours(minilm_tokenizer) -> None:
    chunker = Chunker(minilm_tokenizer, chunk_tokens=80, overlap=30, max_tokens=254)
    _, chunks = chunker.split([Section(PROSE)])
    overlapping = sum(1 for a, b in itertools.pairwise(chunks) if b.start < a.end)
    assert overlapping >= len(chunks) // 2


def test_chunk_size_above_model_limit_is_a_config_error(minilm_tokenizer) -> None:
    with pytest.raises(IngestError, match="chunk_tokens=512 exceeds the embedder's limit of 254"):
        Chunker(minilm_tokenizer, chunk_tokens=512, overlap=0, max_tokens=254)


def test_table_rows_stay_whole_and_later_parts_carry_the_caption_and_header(minilm_tokenizer) -> None:
    caption = "Net sales by business segment\n(Millions)"
    header = "| Segment | Net sales 2022 | Net sales 2021 |\n| --- | --- | --- |"
    rows = [f"| Business unit number {i} of the group | {1000 + i:,} | {900 + i:,} |" for i in range(60)]
    table = "\n".join([header, *rows])
    chunker = Chunker(minilm_tokenizer, chunk_tokens=100, overlap=0, max_tokens=254)
    text = f"Results by segment.\n{caption}\n{table}\nAll figures in millions."
    extracted, chunks = chunker.split([Section(text)])
    assert len(chunks) >= 4
    lines = set(rows)
    for chunk in chunks:
        assert chunk.text == extracted[chunk.start : chunk.end]
        inner = [line for line in chunk.text.splitlines() if line.startswith("|")]
        assert all(line in lines or line in header for line in inner), chunk.text  # no row cut
    assert chunks[0].header == ""  # the first part holds the header itself
    for chunk in chunks[1:]:
        if chunk.text.startswith("| Business"):
            assert chunk.header == f"{caption}\n{header}"  # the sentence above the caption is not part of it
            embedded = chunker.embedded_text(chunk, "Annual report\nResults")
            assert embedded == f"Annual report\nResults\n{caption}\n{header}\n{chunk.text}"


def test_embedded_context_is_cut_never_the_text(minilm_tokenizer) -> None:
    chunker = Chunker(minilm_tokenizer, chunk_tokens=254, overlap=0, max_tokens=254)
    _, chunks = chunker.split([Section(PROSE)])
    full = max(chunks, key=lambda c: c.tokens)
    embedded = chunker.embedded_text(full, "A long title " * 50)
    assert embedded.endswith(full.text)
    assert chunker.count(embedded) <= 254
    assert chunker.embedded_text(full, "") == full.text
