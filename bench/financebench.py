"""Page-level retrieval on FinanceBench: ingest its PDFs, then search each question.

A question's hit is a retrieved chunk from its document (``doc_name``) on one of
its evidence pages (``evidence_page_num``, 0-based, so page ``n + 1`` here).
Prints the share of questions whose document, and whose evidence page, is in the
top 1 / 5 / 10 (targets: page in the top 5 >= 75%, document in the top 5 >= 95%),
the ingest time with its PDF layout/table and OCR shares, and one JSON line.

Run:  python bench/financebench.py                       # ../shared/data/financebench-dev, fresh home
      python bench/financebench.py --docs 3M_2022_10K PEPSICO_2023_8K_dated-2023-05-05   # a subset
      python bench/financebench.py --set context_prefix=false --home /tmp/fb   # an ingest setting; keep the home
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
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
DATA = ROOT.parent / "shared" / "data" / "financebench-dev"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA), help="folder with pdfs/ and questions.jsonl")
    parser.add_argument("--docs", nargs="*", help="only these documents (doc_name) and their questions")
    parser.add_argument("--home", help="data home to ingest into and keep (default: a temporary one)")
    parser.add_argument("--set", action="append", default=[], help="an [ingest] setting, key=value (repeatable)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args()

    from assistant.retrieval import Retriever
    from ingest import IngestConfig, ingest
    from ingest.config import load_config, parse_assignments

    data = Path(args.data)
    questions = [json.loads(line) for line in (data / "questions.jsonl").read_text().splitlines() if line.strip()]
    if args.docs:
        questions = [q for q in questions if q["doc_name"] in args.docs]
    pdfs = sorted({data / "pdfs" / f"{q['doc_name']}.pdf" for q in questions})

    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"home": args.home or tmp, "device": args.device, **parse_assignments(args.set)}
        config = load_config(IngestConfig, "ingest", None, overrides)
        start = time.perf_counter()
        report = ingest(pdfs, config, progress=False)
        ingest_s = time.perf_counter() - start
        print(report.summary())
        retriever = Retriever(config, min_score=-1.0, device=args.device)
        ks = (1, 5, 10)
        doc_hits = dict.fromkeys(ks, 0)
        page_hits = dict.fromkeys(ks, 0)
        for q in questions:
            pages = {e["evidence_page_num"] + 1 for e in q["evidence"]}
            hits = retriever.search(q["question"], k=max(ks)).hits
            for k in ks:
                top = hits[:k]
                docs = [Path(h.metadata["source"]).stem for h in top]
                doc_hits[k] += q["doc_name"] in docs
                page_hits[k] += any(
                    Path(h.metadata["source"]).stem == q["doc_name"] and h.metadata.get("page") in pages for h in top
                )

    n = len(questions)
    print(f"{n} questions over {len(pdfs)} PDFs; ingest {ingest_s:.1f} s")
    for k in ks:
        print(f"top {k:2d}: right document {doc_hits[k] / n:6.1%}   evidence page {page_hits[k] / n:6.1%}")
    print(
        json.dumps(
            {
                "bench": "financebench",
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{platform.machine()} python {sys.version.split()[0]}",
                "settings": args.set,
                "questions": n,
                "pdfs": len(pdfs),
                "chunks": report.chunks_added,
                "ingest_s": round(ingest_s, 1),
                "table_s": round(report.table_seconds, 1),
                "ocr_pages": report.ocr_pages,
                "ocr_s": round(report.ocr_seconds, 1),
                "document_at": {k: round(doc_hits[k] / n, 3) for k in ks},
                "page_at": {k: round(page_hits[k] / n, 3) for k in ks},
            }
        )
    )


if __name__ == "__main__":
    main()
