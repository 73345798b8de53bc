"""Hybrid query latency against raw ``encode`` + ``collection.query``, at 10k and 100k chunks.

For each size, a collection is filled with that many chunks: texts are SQuAD
sentences (from ../shared/data, else the sample corpus) and vectors are random
unit vectors (retrieval cost does not depend on their values, so the similarity
threshold is off: min_score=-1), the BM25 index is
built, and a manifest record makes it a normal ragtune collection. Then, for
each of 200 SQuAD questions, alternately:
- ours: ``Retriever.search(question, k=5)`` (query embedding, dense search for
  the candidates, BM25, fusion, threshold);
- raw: ``SentenceTransformer.encode(question)`` + ``collection.query(n_results=5)``.
Prints p50/p95 of both and the ratio of p50s (target <= 1.3x).

Run:  python bench/query.py [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

# bench/ingest.py shares its name with the package: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

ROOT = Path(__file__).resolve().parent.parent
SQUAD = ROOT.parent / "shared" / "data" / "squad-dev" / "squad-v1.1-dev-half.json"


def sentences_and_questions() -> tuple[list[str], list[str]]:
    if SQUAD.exists():
        data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
        contexts = [p["context"] for a in data for p in a["paragraphs"]]
        questions = [qa["question"] for a in data for p in a["paragraphs"] for qa in p["qas"]]
    else:
        from ingest.loaders import load_file

        contexts = [s.text for p in sorted((ROOT / "ingest" / "sample").iterdir()) for s in load_file(p, 2**26)]
        questions = [c.split(". ")[0] for c in contexts]
    sentences = [s for c in contexts for s in re.split(r"(?<=[.!?])\s+", c) if len(s) > 40]
    return sentences, questions[::25][:200]


def build(home: Path, size: int, sentences: list[str], model_name: str) -> None:
    import numpy as np

    from ingest import lexical, store
    from ingest.manifest import FileRecord, Manifest

    rng = np.random.default_rng(0)
    client = store.open_client(home)
    collection = store.open_collection(client, "bench", model_name)
    assert collection is not None
    ids = [f"c{i}" for i in range(size)]
    # ~3 sentences a chunk, varied so chunks differ
    texts = [" ".join(sentences[(i * 7 + j * 13) % len(sentences)] for j in range(3)) for i in range(size)]
    batch = client.get_max_batch_size()
    for first in range(0, size, batch):
        vectors = rng.standard_normal((min(batch, size - first), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        last = first + len(vectors)
        metas = [
            {"source": "synthetic", "chunk_index": i, "start_char": 0, "end_char": len(texts[i])}
            for i in range(first, last)
        ]
        collection.add(ids=ids[first:last], embeddings=vectors, documents=texts[first:last], metadatas=metas)
    manifest = Manifest(home / "manifest.sqlite")
    manifest.commit("bench", [FileRecord("synthetic", "0", 0, 0, tuple(ids), "")], {})
    manifest.close()
    lexical.build(home, "bench", collection, ids)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="collection sizes")
    parser.add_argument("--embedding-model", default="sentence-transformers/all-MiniLM-L6-v2", help="query embedder")
    args = parser.parse_args()

    from assistant.retrieval import Retriever
    from ingest import IngestConfig

    sentences, questions = sentences_and_questions()
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            started = time.perf_counter()
            build(home, size, sentences, args.embedding_model)
            build_s = time.perf_counter() - started
            # Random vectors make every similarity ~0: no threshold, so the ranking path is measured
            # (a threshold adds at most one more fetch, on queries with few relevant chunks).
            config = IngestConfig(home=str(home), collection="bench", embedding_model=args.embedding_model)
            retriever = Retriever(config, min_score=-1.0)
            encoder, collection = retriever.embedder, retriever.collection
            for q in questions[:10]:  # warm-up
                retriever.search(q, 5)
                collection.query(query_embeddings=encoder.encode([q]).tolist(), n_results=5)
            ours, raw = [], []
            for q in questions:
                t = time.perf_counter()
                retriever.search(q, 5)
                ours.append(time.perf_counter() - t)
                t = time.perf_counter()
                collection.query(query_embeddings=encoder.encode([q], show_progress_bar=False).tolist(), n_results=5)
                raw.append(time.perf_counter() - t)
        p50, p95 = statistics.median(ours) * 1000, percentile(ours, 0.95) * 1000
        r50, r95 = statistics.median(raw) * 1000, percentile(raw, 0.95) * 1000
        print(f"{size} chunks (built in {build_s:.0f} s), {len(questions)} queries")
        print(f"  raw encode + collection.query: p50 {r50:6.1f} ms  p95 {r95:6.1f} ms")
        print(
            f"  ragtune hybrid search:         p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  "
            f"ratio p50 {p50 / r50:.2f}x (target <= 1.3x), p95 {p95 / r95:.2f}x"
        )
        print(
            json.dumps(
                {
                    "bench": "query",
                    "date": time.strftime("%Y-%m-%d"),
                    "chunks": size,
                    "machine": f"{platform.machine()} python {sys.version.split()[0]}",
                    "raw_p50_ms": round(r50, 2),
                    "raw_p95_ms": round(r95, 2),
                    "ours_p50_ms": round(p50, 2),
                    "ours_p95_ms": round(p95, 2),
                    "ratio_p50": round(p50 / r50, 3),
                }
            )
        )


if __name__ == "__main__":
    main()
