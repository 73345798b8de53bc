"""The starter adapter against the bundled base model, on SQuAD articles it never saw.

Builds one collection from the held-out SQuAD articles of ``make starter`` (their
questions were not trained on) plus distractor articles, and answers, as ``ragtune
ask`` does (retrieval, packing, greedy decoding, the configured answer length, loop
stop and citation check), with the base model and with the adapter:

- answerable questions (their paragraph is in the collection): EM, F1, cited
  answers, citation precision (the cited chunk holds a gold span), loop rate, and
  how many get an answer rather than a refusal;
- unanswerable questions: those of one held-out article left out of the
  collection, so no chunk holds their answer: how many are refused ("the
  documents do not say", or the relevance threshold's refusal);
- general-text perplexity (``finetune/general.txt``), base and adapter.

Run:  python bench/starter.py --adapter starter [--questions 150] [--unanswerable 50] [--home DIR]
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
REFUSAL = re.compile(r"documents do not say|documents contain nothing relevant", re.I)  # trained, threshold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", default="starter", help="adapter to compare with the base model (name or folder)")
    parser.add_argument("--data", default=str(SQUAD), help="SQuAD v1.1 JSON (the dev half)")
    parser.add_argument("--home", default=".ragtune-bench", help="data home for the collection and the model")
    parser.add_argument("--questions", type=int, default=150, help="answerable questions")
    parser.add_argument("--unanswerable", type=int, default=50, help="questions whose article is not in the collection")
    parser.add_argument("--distractors", type=int, default=3, help="articles added that no question asks about")
    parser.add_argument("--seed", type=int, default=15, help="seed of the question sample")
    parser.add_argument("--out", help="also write one JSON row per question and variant to this file")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from build_starter import HELD_OUT

    from assistant.evaluate import Dataset, evaluate_answers, load_dataset
    from assistant.settings import load_settings
    from assistant.workspace import Workspace

    rng = random.Random(args.seed)
    data = json.loads(Path(args.data).read_text())
    titles = [a["title"] for a in data["data"]]
    held = [t for t in titles if t in HELD_OUT]
    absent = held[-1]  # its questions have no paragraph in the collection
    distractors = [t for t in titles if t not in HELD_OUT][: args.distractors]
    folder = Path(args.home).resolve() / "bench-starter"
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / "articles.json"
    part.write_text(json.dumps({"data": [a for a in data["data"] if a["title"] in held or a["title"] in distractors]}))
    full = load_dataset(part)
    documents = {name: text for name, text in full.documents.items() if not name.startswith(absent)}
    answerable = [q for q in full.questions if not q.document.startswith(absent) and q.document[:-4] in held]
    unanswerable = [q for q in full.questions if q.document.startswith(absent)]
    answerable = rng.sample(answerable, min(args.questions, len(answerable)))
    unanswerable = rng.sample(unanswerable, min(args.unanswerable, len(unanswerable)))
    name = f"starter-bench-{args.seed}"
    print(
        f"collection: {len(documents)} articles ({', '.join(sorted(d[:-4] for d in documents))}); "
        f"{len(answerable)} answerable questions, {len(unanswerable)} about {absent} (left out)",
        flush=True,
    )

    settings = load_settings(None, (), None, home=args.home)
    ws = Workspace(settings)
    adapter = ws.registry().resolve(args.adapter)
    model = ws.base_model()
    results = {}
    for label, questions in (("answerable", answerable), ("unanswerable", unanswerable)):
        started = time.perf_counter()
        results[label] = evaluate_answers(
            Dataset(name, questions, documents), ws.ingest, ws.config, model, ["rag"], adapter, embedder=ws.embedder
        )
        print(f"{label}: {time.perf_counter() - started:.0f} s", flush=True)

    def refused(row: dict[str, Any]) -> bool:
        return not row["relevant"] or bool(REFUSAL.search(row["answer"]))

    summary: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "adapter": args.adapter,
        "answer_tokens": results["answerable"]["answer_tokens"],
    }
    print(
        f"\n{'':<10}{'EM':>7}{'F1':>7}{'cited%':>8}{'prec%':>7}{'loop%':>7}{'answered%':>10}{'refused%':>9}{'words':>7}"
    )
    for variant in ("base", "adapter"):
        arm = results["answerable"]["arms"][f"{variant}/rag"]
        rows = results["answerable"]["rows"][f"{variant}/rag"]
        missing = results["unanswerable"]["rows"][f"{variant}/rag"]
        answered = 100 * sum(not refused(r) for r in rows) / len(rows)
        refusals = 100 * sum(refused(r) for r in missing) / len(missing) if missing else None
        summary[variant] = {**arm, "answered": answered, "refused_unanswerable": refusals}
        print(
            f"{variant:<10}{arm['em']:>7.1f}{arm['f1']:>7.1f}{arm['cited_rate'] or 0:>8.1f}"
            f"{arm['citation_precision'] or 0:>7.1f}{arm['loop_rate']:>7.1f}{answered:>10.1f}"
            f"{refusals if refusals is not None else float('nan'):>9.1f}{arm['answer_words']:>7.1f}"
        )
    from finetune.retention import GENERAL_TEXT, perplexity

    text = GENERAL_TEXT.read_text(encoding="utf-8")
    scores = {}
    for variant, view in (("base", model.with_adapter("")), ("adapter", model.with_adapter(adapter))):
        with view.hold() as torch_model:
            scores[variant] = perplexity(torch_model, view.tokenizer, text)
    summary["perplexity"] = {**scores, "ratio": scores["adapter"] / scores["base"]}
    print(
        f"general-text perplexity: base {scores['base']:.2f}, adapter {scores['adapter']:.2f} "
        f"({scores['adapter'] / scores['base']:.3f}x)"
    )
    base, tuned = summary["base"]["f1"], summary["adapter"]["f1"]
    print(f"F1 ratio adapter/base: {tuned / base:.2f}x" if base else "F1 ratio: base F1 is 0")
    if args.out:
        with open(args.out, "w") as out:
            for label, result in results.items():
                for arm, rows in result["rows"].items():
                    for row in rows:
                        out.write(json.dumps({"set": label, "variant": arm, **row}) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
