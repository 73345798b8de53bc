"""Ingest throughput against raw ``SentenceTransformer.encode``, and re-ingest speed.

In one process, on the same chunk texts, after a warm-up that imports the
libraries and reads the model once (its time is printed, not counted):
1. ``ingest()`` of a corpus into a fresh data home, end to end: model load,
   parsing, chunking, embedding, Chroma writes, manifest;
2. ``SentenceTransformer.encode`` of exactly the chunk texts that ingest stored,
   with the same model, batch size and device;
3. ``ingest()`` again over the unchanged corpus.

Prints throughput of 1 over throughput of 2 (target >= 0.85) and the speed-up
of 3 over 1 (target >= 50x), and one JSON line with every number.

Run:  python bench/ingest.py                # SQuAD dev half from ../shared/data
      python bench/ingest.py --corpus DIR   # any folder
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This script shares its name with the package it measures: keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
SQUAD = ROOT.parent / "shared" / "data" / "squad-dev" / "squad-v1.1-dev-half.json"


def squad_corpus(folder: Path) -> Path:
    """Write each SQuAD article as a Markdown file: its title, then its paragraphs."""
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    for article in data:
        body = "\n\n".join(p["context"] for p in article["paragraphs"])
        (folder / f"{article['title']}.md").write_text(f"# {article['title']}\n\n{body}\n", encoding="utf-8")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", help="folder to ingest (default: the SQuAD dev half, else the sample corpus)")
    parser.add_argument(
        "--embedding-model", default="sentence-transformers/all-MiniLM-L6-v2", help="model name or path"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=64, help="embedding batch size for both runs")
    args = parser.parse_args()

    from ingest import IngestConfig, ingest
    from ingest.embedding import load_embedder, pick_device
    from ingest.pipeline import SAMPLE_CORPUS
    from ingest.store import open_client, open_collection

    with tempfile.TemporaryDirectory() as tmp:
        if args.corpus:
            corpus = Path(args.corpus)
        elif SQUAD.exists():
            corpus = squad_corpus(Path(tmp) / "squad")
        else:
            corpus = SAMPLE_CORPUS
        config = IngestConfig(
            home=str(Path(tmp) / "home"),
            embedding_model=args.embedding_model,
            device=args.device,
            batch_size=args.batch_size,
        )

        start = time.perf_counter()
        load_embedder(args.embedding_model, args.device)  # warm-up: imports, model files into the page cache
        warmup_s = time.perf_counter() - start

        start = time.perf_counter()
        first = ingest([corpus], config, progress=False)
        ingest_s = time.perf_counter() - start

        collection = open_collection(open_client(config.home_path), config.collection, config.embedding_model, False)
        assert collection is not None
        texts = collection.get(include=["documents"])["documents"]
        assert len(texts) == first.chunks_added
        model = load_embedder(args.embedding_model, args.device)
        start = time.perf_counter()
        model.encode(texts, batch_size=args.batch_size, show_progress_bar=False)
        raw_s = time.perf_counter() - start

        start = time.perf_counter()
        again = ingest([corpus], config, progress=False)
        reingest_s = time.perf_counter() - start
        assert again.chunks_added == 0 and again.count("unchanged") == first.count("added")

    chunks = len(texts)
    ratio = (chunks / ingest_s) / (chunks / raw_s)
    speedup = ingest_s / reingest_s
    print(f"corpus: {corpus.name}, {first.count('added')} files, {chunks} chunks, device {pick_device(args.device)}")
    print(f"warm-up:        {warmup_s:7.2f} s  (imports and first model load; not counted)")
    print(f"raw encode:     {raw_s:7.2f} s  {chunks / raw_s:8.1f} chunks/s")
    print(f"ingest:         {ingest_s:7.2f} s  {chunks / ingest_s:8.1f} chunks/s", end="  ")
    print(f"ratio {ratio:.2f} of raw (target >= 0.85)")
    print(f"re-ingest:      {reingest_s:7.2f} s  {speedup:8.1f}x faster than the first ingest (target >= 50x)")
    print(
        json.dumps(
            {
                "bench": "ingest",
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{platform.machine()} {platform.processor() or ''} python {sys.version.split()[0]}".strip(),
                "device": pick_device(args.device),
                "files": first.count("added"),
                "chunks": chunks,
                "warmup_s": round(warmup_s, 3),
                "raw_encode_s": round(raw_s, 3),
                "ingest_s": round(ingest_s, 3),
                "reingest_s": round(reingest_s, 3),
                "ingest_vs_raw": round(ratio, 3),
                "reingest_speedup": round(speedup, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
