"""Embedding batches: on a CPU, bounded in chunks and in padded tokens; vectors in input order; bf16 weights."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.config import IngestConfig
from ingest.embedding import CPU_BATCH, CPU_BATCH_TOKENS, cpu_has_bf16, embed, embed_queries, load_embedder, pick_dtype
from ingest.errors import IngestError


def test_cpu_batches_are_bounded_in_padded_tokens(tiny_embedder: str) -> None:
    model = load_embedder(tiny_embedder, "cpu", dtype="fp32")  # the same numbers in every batch shape
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


def test_bf16_weights_embed_close_to_fp32_and_auto_follows_the_cpu(tiny_embedder: str) -> None:
    import torch

    texts = [f"the pump {n} stops when the battery is below {n * 7} percent" for n in range(20)]
    fp32 = load_embedder(tiny_embedder, "cpu", dtype="fp32")
    bf16 = load_embedder(tiny_embedder, "cpu", dtype="bf16")
    assert next(fp32.parameters()).dtype == torch.float32 and next(bf16.parameters()).dtype == torch.bfloat16
    for vectors in (embed(fp32, texts, progress=False), embed(bf16, texts, progress=False)):
        assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = (embed(fp32, texts, progress=False) * embed(bf16, texts, progress=False)).sum(axis=1)
    assert cosines.min() > 0.99
    assert embed_queries(bf16, ["pump"]).dtype == np.float32

    assert pick_dtype("auto", "cpu") == ("bf16" if cpu_has_bf16() else "fp32")
    assert pick_dtype("auto", "mps") == "fp32" and pick_dtype("fp32", "cpu") == "fp32"
    with pytest.raises(IngestError, match="embedding_dtype='fp16' is unknown: use auto, fp32 or bf16"):
        IngestConfig(embedding_dtype="fp16")
