"""Ingest throughput against raw ``SentenceTransformer.encode``, and re-ingest speed.

In one process, on the same chunk texts, after a warm-up that imports the
libraries and reads the model once (its time is printed, not counted):
1. ``ingest()`` of a corpus into a fresh data home, end to end: model load,
   parsing, chunking, embedding, Chroma writes, manifest; with the configured
   ``embedding_dtype`` (``--dtype``, default auto: bf16 on a CPU with bf16 in hardware);
2. ``SentenceTransformer.encode`` of exactly the chunk texts that ingest stored,
   with the same model, batch size 64 and device, in fp32 (the raw baseline);
3. ``ingest()`` again over the unchanged corpus.

Then, as a user runs it, whole processes alternately (``--processes`` times each):
``ragtune ingest CORPUS`` into a fresh data home, against a process that only
imports sentence-transformers, loads the same model in fp32 and encodes the same
chunk texts.

Prints throughput of 1 over throughput of 2 (target >= 2.0), the speed-up of 3
over 1 (target >= 50x), the whole-process ratio (target >= 1.8), and one JSON
line with every number.

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
from typing import Any

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


# The raw baseline as a whole process: import sentence-transformers, load the model in fp32, encode.
_RAW = """
import json, sys
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], device=sys.argv[3])
model.encode(json.load(open(sys.argv[2])), batch_size=64, show_progress_bar=False)
"""


def matmul_flops(dtype: Any, seconds: float = 2.0) -> float:
    """This machine's measured matrix-multiply throughput (FLOP/s) at an embedder layer's shape, in ``dtype``."""
    import torch

    a, b = torch.randn(4096, 384, dtype=dtype), torch.randn(384, 1536, dtype=dtype)
    torch.mm(a, b)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        runs += 1
    return 2 * 4096 * 384 * 1536 * runs / (time.perf_counter() - start)


def chunk_flops(model: Any, tokens: float) -> float:
    """FLOPs to embed one chunk of ``tokens`` tokens: 2 per weight of the layers per token, plus attention."""
    bert = model[0].auto_model
    layers, width = bert.config.num_hidden_layers, bert.config.hidden_size
    weights = sum(p.numel() for n, p in bert.named_parameters() if ".layer." in n and p.dim() == 2)
    return 2 * weights * tokens + 4 * layers * tokens * tokens * width


def whole_processes(corpus: Path, texts: list[str], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Time ``ragtune ingest`` and the raw encode as whole processes, alternately; medians and their ratio."""
    import os
    import statistics
    import subprocess

    from ingest.embedding import pick_device, resolve_model_path

    texts_file = tmp / "texts.json"
    texts_file.write_text(json.dumps(texts))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    raw = [sys.executable, "-c", _RAW, resolve_model_path(args.embedding_model), str(texts_file)]
    raw.append(pick_device(args.device))
    ours, base = [], []
    for n in range(args.processes):
        command = [sys.executable, "-m", "assistant", "ingest", str(corpus), "--home", str(tmp / f"whole{n}")]
        command += ["--set", f"ingest.embedding_dtype={args.dtype}", "--set", f"ingest.device={args.device}"]
        for times, cmd in ((base, raw), (ours, command)):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)
            times.append(time.perf_counter() - start)
    ingest_s, raw_s = statistics.median(ours), statistics.median(base)
    return {
        "ingest_s": round(ingest_s, 2),
        "raw_s": round(raw_s, 2),
        "ratio": round(raw_s / ingest_s, 3),
        "ingest_runs_s": [round(x, 2) for x in ours],
        "raw_runs_s": [round(x, 2) for x in base],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", help="folder to ingest (default: the SQuAD dev half, else the sample corpus)")
    parser.add_argument(
        "--embedding-model", default="sentence-transformers/all-MiniLM-L6-v2", help="model name or path"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=0, help="ingest's embedding batch size (0: auto)")
    parser.add_argument("--dtype", default="auto", help="ingest's embedding_dtype: auto, fp32 or bf16")
    parser.add_argument("--processes", type=int, default=2, help="whole-process runs of each (0: none)")
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
            embedding_dtype=args.dtype,
        )

        start = time.perf_counter()
        # warm-up: imports, model files into the page cache
        load_embedder(args.embedding_model, args.device, dtype=args.dtype)
        warmup_s = time.perf_counter() - start

        start = time.perf_counter()
        first = ingest([corpus], config, progress=False)
        ingest_s = time.perf_counter() - start

        collection = open_collection(open_client(config.home_path), config.collection, config.embedding_model, False)
        assert collection is not None
        texts = collection.get(include=["documents"])["documents"]
        assert len(texts) == first.chunks_added
        model = load_embedder(args.embedding_model, args.device, dtype="fp32")
        start = time.perf_counter()
        model.encode(texts, batch_size=64, show_progress_bar=False)
        raw_s = time.perf_counter() - start

        start = time.perf_counter()
        again = ingest([corpus], config, progress=False)
        reingest_s = time.perf_counter() - start
        assert again.chunks_added == 0 and again.count("unchanged") == first.count("added")
        processes = whole_processes(corpus, texts, args, Path(tmp)) if args.processes else {}
        import torch

        from ingest.embedding import pick_dtype

        dtype = pick_dtype(args.dtype, pick_device(args.device))
        tokens = sum(len(i) for i in model.tokenizer(texts)["input_ids"]) / len(texts)
        flops = chunk_flops(model, tokens)
        bound = matmul_flops(torch.bfloat16 if dtype == "bf16" else torch.float32) / flops
        raw_bound = bound if dtype == "fp32" else matmul_flops(torch.float32) / flops

    chunks = len(texts)
    ratio = (chunks / ingest_s) / (chunks / raw_s)
    speedup = ingest_s / reingest_s
    print(f"corpus: {corpus.name}, {first.count('added')} files, {chunks} chunks, device {pick_device(args.device)}")
    print(f"warm-up:        {warmup_s:7.2f} s  (imports and first model load; not counted)")
    print(f"raw encode:     {raw_s:7.2f} s  {chunks / raw_s:8.1f} chunks/s")
    print(f"ingest:         {ingest_s:7.2f} s  {chunks / ingest_s:8.1f} chunks/s", end="  ")
    print(f"ratio {ratio:.2f} of raw fp32 encode (target >= 2.0)")
    print(f"re-ingest:      {reingest_s:7.2f} s  {speedup:8.1f}x faster than the first ingest (target >= 50x)")
    print(
        f"bound:          {bound:8.1f} chunks/s at this machine's {dtype} matmul throughput for "
        f"{flops / 1e9:.2f} GFLOP a chunk ({tokens:.0f} tokens): ingest is {chunks / ingest_s / bound:.0%} of it; "
        f"raw fp32 encode {chunks / raw_s / raw_bound:.0%} of the fp32 bound ({raw_bound:.1f} chunks/s)"
    )
    if processes:
        print(
            f"whole processes: ragtune ingest {processes['ingest_s']} s, raw fp32 encode {processes['raw_s']} s; "
            f"median ratio {processes['ratio']:.2f} (target >= 1.8)"
        )
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
                "dtype": args.dtype,
                "ingest_vs_raw": round(ratio, 3),
                "reingest_speedup": round(speedup, 1),
                "processes": processes,
                "bound_chunks_s": round(bound, 1),
                "fp32_bound_chunks_s": round(raw_bound, 1),
                "gflop_per_chunk": round(flops / 1e9, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
