"""Where the best source stands in the prompt: first (as before) or last, next to the question (as now).

Ingests the SQuAD dev half into a data home (once; later runs reuse it), loads the
bundled chat model (no adapter) and answers a fixed sample of questions as ``ragtune
ask`` does (retrieval, packing, greedy decoding, the configured answer length, loop
stop and citation check), twice each: with the packed sources shown in rank order
([1] first) and in reverse ([1] last, right before the question). Same retrieval,
same numbers, only the order of the source blocks differs.

Prints per arm: F1 and EM (citation markers removed), the share of answers with a
checked citation, citation precision (cited sources that hold a gold answer span),
words per answer; then one JSON line.

Run:  python bench/source_order.py --questions 100 [--home DIR] [--out rows.jsonl]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

# bench/ingest.py shares its name with the package: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-dev" / "squad-v1.1-dev-half.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--data", default=str(SQUAD), help="SQuAD v1.1 JSON")
    parser.add_argument("--home", default=".ragtune-bench", help="data home for the collection and the model")
    parser.add_argument("--seed", type=int, default=15, help="seed of the question sample")
    parser.add_argument("--out", help="also write one JSON row per question and arm to this file")
    args = parser.parse_args()

    import assistant.answer
    from assistant.answer import Answer, ask
    from assistant.backends import load_model
    from assistant.config import AssistantConfig
    from assistant.evaluate import load_dataset, prepare
    from assistant.prompt import Packed, pack, source_block
    from assistant.retrieval import Retriever
    from finetune.metrics import exact_match, f1
    from ingest import IngestConfig

    def best_first(question: str, hits: list[Any], history: list[Any], count: Any, budget: int) -> Packed:
        """The prompt as packed before: the same sources and numbers, [1] first."""
        packed = pack(question, hits, history, count, budget)
        if packed.sources:
            blocks = [source_block(n, h) for n, h in enumerate(packed.sources, start=1)]
            user = "Sources:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"
            packed.messages = [*packed.messages[:-1], {"role": "user", "content": user}]
        return packed

    config = AssistantConfig()
    dataset = load_dataset(args.data)
    collection, folder = prepare(dataset, IngestConfig(home=args.home))
    retriever = Retriever(
        collection, candidates=config.candidates, rrf_k=config.rrf_k, min_score=config.min_score, device=config.device
    )
    model = load_model(config, Path(args.home), "none")
    sample = random.Random(args.seed).sample(dataset.questions, args.questions)
    out = open(args.out, "w", encoding="utf-8") if args.out else None  # noqa: SIM115

    def holds_gold(q: Any, hit: Any) -> bool:
        if hit.source != str(folder / q.document):
            return False
        start, end = int(hit.metadata["start_char"]), int(hit.metadata["end_char"])
        return any(start <= a and b <= end for a, b in q.spans)

    rows: dict[str, list[dict[str, Any]]] = {"best first": [], "best last": []}
    started = time.perf_counter()
    for i, q in enumerate(sample, start=1):
        for arm, packer in (("best first", best_first), ("best last", pack)):
            assistant.answer.pack = packer  # type: ignore[attr-defined]
            events = ask(q.question, model, retriever, k=config.k, answer_tokens=config.answer_tokens)
            answer = next(e for e in events if isinstance(e, Answer))
            plain = re.sub(r"\s*\[\d+(?:,\s*\d+)*\]", "", answer.text)
            cited = answer.checked.cited if answer.checked is not None else []
            holds = [holds_gold(q, answer.sources[n - 1]) for n in cited if 0 < n <= len(answer.sources)]
            row = {
                "arm": arm,
                "question": q.question,
                "gold": list(q.answers),
                "answer": answer.text,
                "f1": f1(plain, q.answers),
                "em": exact_match(plain, q.answers),
                "cited": bool(cited),
                "cited_hold_gold": holds,
                "words": len(plain.split()),
            }
            rows[arm].append(row)
            if out:
                out.write(json.dumps(row) + "\n")
                out.flush()
        print(f"[{i}/{len(sample)}] {q.question[:60]!r}", file=sys.stderr)
    assistant.answer.pack = pack  # type: ignore[attr-defined]

    summary = {arm: _summary(arm_rows) for arm, arm_rows in rows.items()}
    for arm, s in summary.items():
        print(
            f"{arm:10s}  F1 {s['f1']:5.2f}  EM {s['em']:5.2f}  cited {s['cited']:5.1f}%  "
            f"citation precision {s['precision']:5.1f}%  words {s['words']:5.1f}"
        )
    print(
        json.dumps(
            {
                "bench": "source_order",
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{platform.machine()} python {sys.version.split()[0]}",
                "questions": len(sample),
                "seconds": round(time.perf_counter() - started, 1),
                "arms": summary,
            }
        )
    )


def _summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    holds = [h for r in rows for h in r["cited_hold_gold"]]
    return {
        "f1": round(100 * sum(r["f1"] for r in rows) / len(rows), 2),
        "em": round(100 * sum(r["em"] for r in rows) / len(rows), 2),
        "cited": round(100 * sum(r["cited"] for r in rows) / len(rows), 1),
        "precision": round(100 * sum(holds) / len(holds), 1) if holds else 0.0,
        "words": round(sum(r["words"] for r in rows) / len(rows), 1),
    }


if __name__ == "__main__":
    main()
