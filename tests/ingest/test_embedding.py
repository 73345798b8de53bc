"""Embedding batches: on a CPU, bounded in chunks and in padded tokens; vectors in input order."""

from __future__ import annotations

import numpy as np

from ingest.embedding import CPU_BATCH, CPU_BATCH_TOKENS, embed, load_embedder


def test_cpu_batches_are_bounded_in_padded_tokens(tiny_embedder: str) -> None:
    model = load_embedder(tiny_embedder, "cpu")
    assert model.max_seq_length == 128
    long = ["battery " * 200 + str(n) for n in range(40)]  # truncated to 128 tokens
    short = [f"pump {n}" for n in range(100)]
    texts = [t for pair in zip(short, long, strict=False) for t in pair] + short[len(long) :]  # mixed
    done: list[int] = []
    vectors = embed(model, texts, progress=False, on_batch=lambda n, total: done.append(n))

    sizes = [b - a for a, b in zip([0, *done], done, strict=False)]
    assert sum(sizes) == len(texts)
    assert sizes[0] == CPU_BATCH_TOKENS // 128  # the longest first: 32 chunks of 128 tokens
    assert max(sizes) == CPU_BATCH  # short chunks still go 64 at a time
    expected = model.encode(texts, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    np.testing.assert_allclose(vectors, expected, rtol=1e-4, atol=1e-5)


def test_a_set_batch_size_is_kept(tiny_embedder: str) -> None:
    model = load_embedder(tiny_embedder, "cpu")
    done: list[int] = []
    embed(model, ["battery " * 200] * 10, batch_size=4, progress=False, on_batch=lambda n, total: done.append(n))
    assert done == [4, 8, 10]
