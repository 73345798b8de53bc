"""Embedding on CPU: chunks/s and peak RSS of each batch policy, side by side.

Every run embeds the same chunk texts in a fresh child process (so that its peak
RSS is its own), after loading the model and a warm-up batch that are not timed:

- ``encode:N``: raw ``SentenceTransformer.encode`` of the texts, batch size N (the baseline);
- ``embed:N``: :func:`ingest.embedding.embed` with ``batch_size = N`` chunks per batch;
- ``embed:auto``: :func:`ingest.embedding.embed` with ``batch_size = 0``, the CPU default
  (at most ``CPU_BATCH`` chunks and ``CPU_BATCH_TOKENS`` padded tokens per batch).

A third part names the weights' precision: ``embed:auto:fp32``, ``encode:64:bf16``. Without it
``encode`` runs in fp32 (the raw baseline) and ``embed`` in ``embedding_dtype = "auto"`` (bf16 on
a CPU with bf16 in hardware).

The texts are chunks as ingest makes them (200 MiniLM tokens, title prefix): of the
80,000-paragraph HTML page of ``bench/hostile.py`` (``--texts flat``) or of the SQuAD
dev half (``--texts squad``). Prints chunks per second of wall time and per CPU-second
of the child (steadier than wall time on a machine shared with other jobs), each as a
ratio to the first run, and each child's peak RSS (``getrusage``), then one JSON line.
Repeat a run in the list to interleave the measurements.

Run:  python bench/embed_backends.py                                   # batch sizes, flat page
      python bench/embed_backends.py --texts squad --runs encode:64 embed:auto
      python bench/embed_backends.py --texts squad --runs encode:64 embed:auto:fp32 embed:auto
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))
SQUAD = ROOT.parent / "shared" / "data" / "squad-dev" / "squad-v1.1-dev-half.json"
DEFAULT_RUNS = ("encode:64", "embed:16", "embed:32", "embed:64", "embed:auto")


def chunk_texts(kind: str, model_name: str, limit: int, folder: Path) -> list[str]:
    """Chunk texts as ingest embeds them: the flat hostile page's or the SQuAD dev half's, at most ``limit``."""
    from ingest.chunking import Chunker
    from ingest.embedding import load_embedder, max_text_tokens
    from ingest.loaders import load_file
    from ingest.text import Section

    model = load_embedder(model_name, "cpu", dtype="fp32")
    chunker = Chunker(model.tokenizer, 200, 32, max_text_tokens(model))
    documents: list[tuple[str, list[Section]]] = []
    if kind == "flat":
        from tests.ingest.hostile_files import flat_html

        documents.append(("flat", load_file(flat_html(folder / "flat.html"), 2**26)))
    else:
        for article in json.loads(SQUAD.read_text(encoding="utf-8"))["data"]:
            body = "\n\n".join(p["context"] for p in article["paragraphs"])
            documents.append((article["title"].replace("_", " "), [Section(body)]))
    texts: list[str] = []
    for title, sections in documents:
        texts.extend(chunker.embedded_text(c, title) for c in chunker.split(sections)[1])
    step = max(1, len(texts) // limit)  # an even sample across the documents
    return texts[::step][:limit]


# One run in a child process: load, warm up, time, report peak RSS.
_CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from ingest.embedding import embed, load_embedder
texts = json.load(open(sys.argv[2]))
how, size, *dtype = sys.argv[3].split(":")
model = load_embedder(sys.argv[4], "cpu", dtype=dtype[0] if dtype else "fp32" if how == "encode" else "auto")
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
model.encode(texts[:8], show_progress_bar=False)
cpu = resource.getrusage(resource.RUSAGE_SELF)
start = time.perf_counter()
if how == "encode":
    model.encode(texts, batch_size=int(size), normalize_embeddings=True, show_progress_bar=False)
else:
    embed(model, texts, 0 if size == "auto" else int(size), progress=False)
seconds = time.perf_counter() - start
used = resource.getrusage(resource.RUSAGE_SELF)
cpu_s = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "cpu_s": cpu_s, "loaded_mb": round(loaded), "peak_mb": round(peak)}))
"""


def run_child(spec: str, model: str, texts_file: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(ROOT), str(texts_file), spec, model],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(f"run {spec} failed: {done.stderr.strip().splitlines()[-1:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", choices=("flat", "squad"), default="flat", help="which chunks to embed")
    parser.add_argument("--limit", type=int, default=512, help="how many chunks every run embeds")
    parser.add_argument(
        "--embedding-model", default="sentence-transformers/all-MiniLM-L6-v2", help="model name or path"
    )
    parser.add_argument(
        "--runs",
        nargs="+",
        default=list(DEFAULT_RUNS),
        help="encode:N, embed:N or embed:auto, each optionally :fp32 or :bf16; repeat to interleave",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        texts = chunk_texts(args.texts, args.embedding_model, args.limit, Path(tmp))
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts))
        print(f"{len(texts)} {args.texts} chunks, {sum(map(len, texts)) / len(texts):.0f} characters each on average")
        rows: list[dict[str, Any]] = []
        for run in args.runs:
            row = run_child(run, args.embedding_model, texts_file)
            row["chunks_s"] = len(texts) / row["seconds"]
            row["chunks_cpu_s"] = len(texts) / row["cpu_s"]
            row["ratio"] = row["chunks_s"] / rows[0]["chunks_s"] if rows else 1.0
            row["cpu_ratio"] = row["chunks_cpu_s"] / rows[0]["chunks_cpu_s"] if rows else 1.0
            rows.append({"run": run, **row})
            print(
                f"{run:<22} {row['chunks_s']:7.1f} chunks/s  x{row['ratio']:.2f}  "
                f"{row['chunks_cpu_s']:7.1f} chunks per CPU-second  x{row['cpu_ratio']:.2f}  "
                f"peak RSS {row['peak_mb']:>5} MB (after load {row['loaded_mb']} MB)",
                flush=True,
            )
    print(
        json.dumps(
            {
                "bench": "embed_backends",
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{platform.machine()} python {sys.version.split()[0]}",
                "texts": args.texts,
                "chunks": len(texts),
                "runs": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
