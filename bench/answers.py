"""What users see in answers, measured on SQuAD: loops, citations, F1, and follow-up retrieval.

Ingests every article of the SQuAD dev half into a data home (once; later runs
reuse it), loads the bundled chat model (no adapter) and takes a fixed sample
of questions. Then:

1. answers: each question is answered as ``ragtune ask`` does (retrieval, packing,
   greedy decoding, the configured 256-token answer) but without its loop stop and
   citation check. Each answer is scored as generated (the assistant before both)
   and as a LoopGuard would have stopped it while streaming, with
   post-hoc citations (lexical, and with the collection's embedder): loop rate,
   model-cited rate, cited-answer rate, citation precision (a cited chunk holds a
   gold answer span), unsupported rate (answers with an unsupported claim, and
   claims), EM/F1 (citation markers removed) and words per answer.
2. grid: on the first ``--grid`` questions, the same prompts decoded with
   no_repeat_ngram_size 0/3/4 x repetition_penalty 1.0/1.1/1.2: loop rate and
   F1 raw and after the loop cut, words, cited-answer rate.
3. follow-ups: pairs of questions on one paragraph; the second becomes a pronoun
   follow-up ("Which team won Super Bowl 50?" -> "Which team won it?") asked after
   the first. recall@5 of: the question asked standalone, the raw follow-up, today's
   model rewrite, the guarded rewrite, the fused queries (question + previous user
   turn, reciprocal-rank fusion), and guarded rewrite + fusion. Also: how many
   standalone questions (asked after another question) would have had their query
   changed by each method.

Run:  python bench/answers.py --questions 30 --grid 8 --followups 30 [--home DIR] [--out rows.jsonl]
      python bench/answers.py --summarize rows.jsonl [--recheck --home DIR --out rechecked.jsonl]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# bench/ingest.py shares its name with the package: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-dev" / "squad-v1.1-dev-half.json"
PEOPLE = {"Nikola_Tesla.txt", "Martin_Luther.txt", "Genghis_Khan.txt"}  # titles a follow-up calls "he"


def ragtune() -> SimpleNamespace:
    """The assistant's answering code this bench drives (the one place to update when modules move)."""
    from assistant.answer import Answer, Token, ask
    from assistant.backends import load_model
    from assistant.config import AssistantConfig
    from assistant.evaluate import load_dataset, prepare
    from assistant.model import complete
    from assistant.prompt import clean_rewrite, pack, rewrite_messages
    from assistant.retrieval import Retriever
    from finetune.metrics import exact_match, f1

    return SimpleNamespace(
        Answer=Answer,
        Token=Token,
        ask=ask,
        AssistantConfig=AssistantConfig,
        load_dataset=load_dataset,
        prepare=prepare,
        complete=complete,
        clean_rewrite=clean_rewrite,
        pack=pack,
        rewrite_messages=rewrite_messages,
        Retriever=Retriever,
        exact_match=exact_match,
        f1=f1,
        load_model=load_model,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=30, help="questions answered in part 1")
    parser.add_argument("--grid", type=int, default=8, help="questions of part 1 decoded with each grid setting")
    parser.add_argument("--followups", type=int, default=30, help="follow-up pairs in part 3")
    parser.add_argument("--data", default=str(SQUAD), help="SQuAD v1.1 JSON")
    parser.add_argument("--home", default=".ragtune-bench", help="data home for the collection and the model")
    parser.add_argument("--seed", type=int, default=15, help="seed of the question sample")
    parser.add_argument("--out", help="also write one JSON row per question and arm to this file")
    parser.add_argument("--summarize", metavar="ROWS", help="only summarise the rows a run wrote (a stopped run too)")
    parser.add_argument(
        "--recheck",
        action="store_true",
        help="with --summarize: check the rows' answers again with today's citation check (written to --out)",
    )
    args = parser.parse_args()
    if args.summarize and not args.recheck:
        summarize(Path(args.summarize))
        return

    from assistant.citations import check_citations
    from assistant.repetition import LoopGuard, find_loop
    from ingest import IngestConfig

    rt = ragtune()
    config = rt.AssistantConfig()
    dataset = rt.load_dataset(args.data)
    collection, folder = rt.prepare(dataset, IngestConfig(home=args.home))
    retriever = rt.Retriever(
        collection, candidates=config.candidates, rrf_k=config.rrf_k, min_score=config.min_score, device=config.device
    )
    rows = _Rows(Path(args.out) if args.out else None)

    def embed(texts: list[str]) -> Any:
        return retriever.embedder.encode(texts, normalize_embeddings=True, show_progress_bar=False)

    def holds_gold(q: Any, hit: Any) -> bool:
        if hit.source != str(folder / q.document):
            return False
        start, end = int(hit.metadata["start_char"]), int(hit.metadata["end_char"])
        return any(start <= a and b <= end for a, b in q.spans)

    def score(q: Any, text: str, sources: list[Any]) -> dict[str, Any]:
        plain = re.sub(r"\s*\[\d+(?:,\s*\d+)*\]", "", text)
        numbered = [(n, h.text) for n, h in enumerate(sources, start=1)]
        lexical = check_citations(text, numbered, question=q.question)
        dense = check_citations(text, numbered, question=q.question, embed=embed)
        return {
            "words": len(plain.split()),
            "looped": find_loop(text) is not None,
            "model_cited": bool(re.search(r"\[\d+\]", text)),
            "em": rt.exact_match(plain, q.answers),
            "f1": rt.f1(plain, q.answers),
            **{
                f"{name}_{key}": value
                for name, checked in (("lex", lexical), ("emb", dense))
                for key, value in _checks(checked, sources, q, holds_gold).items()
            },
        }

    if args.recheck:  # the same answers, their sources retrieved again (retrieval is deterministic)
        by_question = {q.question: q for q in dataset.questions}
        out = Path(args.out or Path(args.summarize).with_suffix(".rechecked.jsonl"))
        rows = _Rows(out)
        for row in (json.loads(line) for line in Path(args.summarize).read_text().splitlines() if line.strip()):
            if row["part"] == "answers":
                q = by_question[row["question"]]
                sources = retriever.search(q.question, config.k).hits
                if any(holds_gold(q, h) for h in sources) != row["recall@5"]:
                    print(f"[recheck] sources differ from the run's: {q.question!r}", file=sys.stderr)
                for arm in ("full", "stopped"):
                    row[arm] = {"answer": row[arm]["answer"], **score(q, row[arm]["answer"], sources)}
            rows.append(row)
        summarize(out)
        return

    model = rt.load_model(config, Path(args.home), "none")
    sample = random.Random(args.seed).sample(dataset.questions, args.questions)

    # 3. follow-ups first: cheaper than the answers, and complete when a long run is stopped early
    followups = _followups(rt, model, retriever, dataset, args.followups, args.seed, holds_gold, rows)
    print(f"[follow-ups] {json.dumps(followups)}", file=sys.stderr)

    # 1. answers as users get them
    started = time.perf_counter()
    answers = []
    for i, q in enumerate(sample, start=1):
        pieces: list[str] = []
        answer = None
        # generated as before the loop stop and the citation check (both applied below, to the same text)
        events = rt.ask(
            q.question,
            model,
            retriever,
            k=config.k,
            answer_tokens=config.answer_tokens,
            loop_guard=False,
            citations=False,
        )
        for event in events:
            if isinstance(event, rt.Token):
                pieces.append(event.text)
            elif isinstance(event, rt.Answer):
                answer = event
        assert answer is not None
        guard = LoopGuard()
        read = 0
        for piece in pieces:
            guard.feed(piece)
            read += 1
            if guard.stopped:
                break
        guard.finish()
        answers.append((q, answer))
        row = {
            "question": q.question,
            "gold": list(q.answers),
            "recall@5": any(holds_gold(q, h) for h in answer.sources),
            "pieces": len(pieces),
            "pieces_read_with_stop": read,
            "loop": guard.loop.kind if guard.loop else "",
            "full": {"answer": answer.text, **score(q, answer.text, answer.sources)},
            "stopped": {"answer": guard.text.strip(), **score(q, guard.text.strip(), answer.sources)},
        }
        rows.append({"part": "answers", **row})
        print(f"[answers {i}/{len(sample)}] loop={row['loop'] or '-'} f1={row['full']['f1']:.2f}", file=sys.stderr)
    answer_seconds = time.perf_counter() - started
    part1 = [r for r in rows if r["part"] == "answers"]

    # 2. decoding grid on the same prompts
    grid: dict[str, dict[str, float]] = {}
    for nrng in (0, 3, 4):
        for penalty in (1.0, 1.1, 1.2):
            scores = []
            for q, answer in answers[: args.grid]:
                text = (  # greedy without repetition settings is the answer part 1 already has
                    answer.text
                    if (nrng, penalty) == (0, 1.0) and config.repetition_penalty == 1.0
                    else _generate(rt, model, q.question, answer.sources, config.answer_tokens, nrng, penalty)
                )
                loop = find_loop(text)
                trimmed = text[: loop.cut] if loop else text
                full, cut = score(q, text, answer.sources), score(q, trimmed, answer.sources)
                scores.append((full, cut))
                rows.append({"part": "grid", "nrng": nrng, "penalty": penalty, "question": q.question, "answer": text})
            grid[f"nrng={nrng} rp={penalty}"] = {
                "loop_rate": _mean(s[0]["looped"] for s in scores),
                "f1": 100 * _mean(s[0]["f1"] for s in scores),
                "f1_cut": 100 * _mean(s[1]["f1"] for s in scores),
                "words": _mean(s[0]["words"] for s in scores),
                "words_cut": _mean(s[1]["words"] for s in scores),
                "model_cited": _mean(s[0]["model_cited"] for s in scores),
                "cited_cut": _mean(s[1]["lex_cited"] for s in scores),
            }
            print(f"[grid {nrng} {penalty}] {grid[f'nrng={nrng} rp={penalty}']}", file=sys.stderr)

    summary = {
        "bench": "answers",
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "device": str(getattr(model, "device", "")),
        "questions": len(part1),
        "answer_tokens": config.answer_tokens,
        "answer_seconds": round(answer_seconds, 1),
        **_answers(part1),
        "grid_questions": min(args.grid, len(answers)),
        "grid": grid,
        "followups": followups,
    }
    _print(summary)
    print(json.dumps(summary))


def summarize(path: Path) -> None:
    """Print the answers and follow-ups measures of the rows in ``path`` (as many as the run wrote)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    part1 = [r for r in rows if r["part"] == "answers"]
    pairs = [r for r in rows if r["part"] == "followups"]
    summary = {
        "bench": "answers",
        "rows": str(path),
        "questions": len(part1),
        **_answers(part1),
        "followups": {
            "pairs": len(pairs),
            **{f"recall@5 {arm}": _mean(r["hits"][arm] for r in pairs) for arm in (pairs[0]["hits"] if pairs else {})},
            "rewrites_rejected": sum(r["guarded"] is None for r in pairs),
        },
    }
    _print(summary)
    print(json.dumps(summary))


def _answers(part1: list[dict[str, Any]]) -> dict[str, Any]:
    """Retrieval recall, the share of pieces read with the loop stop, and each arm's measures, over part 1's rows."""
    return {
        "retrieval_recall@5": _mean(r["recall@5"] for r in part1),
        "pieces_read_share_with_stop": sum(r["pieces_read_with_stop"] for r in part1)
        / max(1, sum(r["pieces"] for r in part1)),
        "answers": {arm: _summary([r[arm] for r in part1]) for arm in ("full", "stopped")},
    }


class _Rows(list[dict[str, Any]]):
    """The per-question rows, each also appended to ``path`` as it is made (a stopped run keeps what it measured)."""

    def __init__(self, path: Path | None) -> None:
        super().__init__()
        self.path = path
        if path is not None:
            path.write_text("")

    def append(self, row: dict[str, Any]) -> None:
        super().append(row)
        if self.path is not None:
            with self.path.open("a") as out:
                out.write(json.dumps(row) + "\n")


def _checks(checked: Any, sources: list[Any], q: Any, holds_gold: Any) -> dict[str, Any]:
    cited = checked.cited
    return {
        "cited": checked.has_citation,
        "citations": len(cited),
        "precise": sum(holds_gold(q, sources[n - 1]) for n in cited if 0 < n <= len(sources)),
        "unsupported_answer": bool(checked.unsupported),
        "claims": len(checked.claims),
        "unsupported_claims": len(checked.unsupported),
        "unknown_terms": checked.unknown_terms,
        "text": checked.text,
    }


def _summary(arm: list[dict[str, Any]]) -> dict[str, float]:
    out = {
        "loop_rate": _mean(r["looped"] for r in arm),
        "em": 100 * _mean(r["em"] for r in arm),
        "f1": 100 * _mean(r["f1"] for r in arm),
        "words": _mean(r["words"] for r in arm),
        "model_cited_rate": _mean(r["model_cited"] for r in arm),
    }
    for name in ("lex", "emb"):
        citations = sum(r[f"{name}_citations"] for r in arm)
        claims = sum(r[f"{name}_claims"] for r in arm)
        out |= {
            f"{name}_cited_rate": _mean(r[f"{name}_cited"] for r in arm),
            f"{name}_citation_precision": sum(r[f"{name}_precise"] for r in arm) / citations if citations else 0.0,
            f"{name}_unsupported_answer_rate": _mean(r[f"{name}_unsupported_answer"] for r in arm),
            f"{name}_unsupported_claim_rate": sum(r[f"{name}_unsupported_claims"] for r in arm) / claims
            if claims
            else 0.0,
        }
    return out


def _generate(rt: Any, model: Any, question: str, sources: list[Any], tokens: int, nrng: int, penalty: float) -> str:
    """The reply to the prompt ``ask`` builds for these sources, greedy, with the given repetition settings."""
    import torch

    packed = rt.pack(question, sources, [], model.count_tokens, model.context_window - tokens)
    inputs = model.tokenizer.apply_chat_template(
        packed.messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    with torch.no_grad():
        out = model.model.generate(
            **inputs,
            max_new_tokens=tokens,
            do_sample=False,
            no_repeat_ngram_size=nrng,
            repetition_penalty=penalty,
            pad_token_id=model.tokenizer.eos_token_id,
        )
    return str(model.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)).strip()


def build_followups(dataset: Any, count: int, seed: int) -> list[tuple[Any, Any, str]]:
    """``(first, second, follow_up)``: two questions on one paragraph, the second's subject made a pronoun.

    The subject is the article's title as the question writes it ("Super Bowl 50", "Tesla"):
    "Which team won Super Bowl 50?" -> "Which team won it?"; "Tesla's" -> "his"/"its".
    """
    by_paragraph: dict[str, list[Any]] = {}
    for q in dataset.questions:
        by_paragraph.setdefault(q.context, []).append(q)
    pairs = []
    for questions in by_paragraph.values():
        for later in questions[1:]:
            follow_up = _pronoun(later)
            if follow_up:
                pairs.append((questions[0], later, follow_up))
                break
    random.Random(seed).shuffle(pairs)
    return pairs[:count]


def _pronoun(q: Any) -> str:
    """``q``'s question with its article's subject replaced by a pronoun, or "" when it has none to replace.

    The subject is the title (without a parenthesis or the part after a comma), or a person's surname.
    A mention used as a modifier ("the Scottish Parliament building", "triplet oxygen") is left alone.
    """
    from assistant.words import STOPWORDS

    title = Path(q.document).stem.replace("_", " ")
    person = q.document in PEOPLE
    names = {title, title.split(",")[0].strip(), re.sub(r"\s*\(.*\)", "", title)}
    if person:
        names.add(title.split()[-1])
    for name in sorted(names, key=len, reverse=True):
        pattern = re.compile(rf"(?:\b(?:the|The)\s+)?\b{re.escape(name)}\b('s)?", re.IGNORECASE)
        match = pattern.search(q.question)
        if not match:
            continue
        before = re.findall(r"[\w']+", q.question[: match.start()].lower())[-1:]
        after = re.findall(r"[\w']+|[^\w\s]", q.question[match.end() :].lower())[:1]
        if (before and before[0] not in STOPWORDS and not match.group(0).lower().startswith("the ")) or (
            after and after[0][0].isalnum() and after[0] not in STOPWORDS and not match.group(1)
        ):
            return ""
        objective = before and before[0] in ("to", "for", "of", "about", "with", "by", "from", "at", "on")
        pronoun = ("his" if person else "its") if match.group(1) else ("him" if objective else "he") if person else "it"
        return q.question[: match.start()] + pronoun + q.question[match.end() :]
    return ""


def _followups(
    rt: Any, model: Any, retriever: Any, dataset: Any, count: int, seed: int, holds_gold: Any, rows: list[Any]
) -> dict[str, Any]:
    from assistant.rewrite import fuse, fused_queries, guard_rewrite, is_self_contained

    def top5(queries: list[str]) -> list[Any]:
        rankings = [retriever.search(query, 5).hits for query in queries]
        return fuse(rankings, key=lambda hit: hit.id)[:5]

    pairs = build_followups(dataset, count, seed)
    arms = ("standalone", "follow_up", "rewrite_today", "rewrite_guarded", "fused", "guarded_fused")
    hits: dict[str, list[bool]] = {arm: [] for arm in arms}
    counts = {"follow_up_judged_self_contained": 0, "rewrites_rejected": 0, "standalone_changed_today": 0}
    counts |= {"standalone_judged_follow_up": 0, "standalone_changed_guarded": 0, "standalone_changed_fused": 0}
    for first, second, follow_up in pairs:
        history = [
            {"role": "user", "content": first.question},
            {"role": "assistant", "content": first.answers[0]},
        ]
        reply = rt.complete(model, rt.rewrite_messages(follow_up, history), max_new_tokens=64)
        today = rt.clean_rewrite(reply, follow_up)
        guarded = guard_rewrite(follow_up, history, reply)
        queries = {
            "standalone": [second.question],
            "follow_up": [follow_up],
            "rewrite_today": [today],
            "rewrite_guarded": [guarded or follow_up],
            "fused": fused_queries(follow_up, history),
            "guarded_fused": [guarded or follow_up, *fused_queries(follow_up, history)[1:]],
        }
        for arm, arm_queries in queries.items():
            hits[arm].append(any(holds_gold(second, h) for h in top5(arm_queries)))
        counts["follow_up_judged_self_contained"] += is_self_contained(follow_up, history)
        counts["rewrites_rejected"] += guarded is None
        # the standalone question asked after the first one: does any method change its query?
        standalone_reply = rt.complete(model, rt.rewrite_messages(second.question, history), max_new_tokens=64)
        counts["standalone_changed_today"] += rt.clean_rewrite(standalone_reply, second.question) != second.question
        counts["standalone_judged_follow_up"] += not is_self_contained(second.question, history)
        counts["standalone_changed_guarded"] += guard_rewrite(second.question, history, standalone_reply) is not None
        counts["standalone_changed_fused"] += fused_queries(second.question, history) != [second.question]
        rows.append(
            {
                "part": "followups",
                "first": first.question,
                "standalone": second.question,
                "follow_up": follow_up,
                "rewrite": reply,
                "guarded": guarded,
                "fused": queries["fused"],
                "hits": {arm: hits[arm][-1] for arm in arms},
            }
        )
        print(f"[follow-up] {follow_up!r} -> {today!r} guarded={guarded!r}", file=sys.stderr)
    return {"pairs": len(pairs), **{f"recall@5 {arm}": _mean(hits[arm]) for arm in arms}, **counts}


def _mean(values: Any) -> float:
    values = [float(v) for v in values]
    return statistics.fmean(values) if values else 0.0


def _print(summary: dict[str, Any]) -> None:
    """The summary as text: of a whole run, or of the rows a run wrote (no grid, no answer length)."""
    run = f"{summary['answer_tokens']}-token answers, device {summary['device']}" if "device" in summary else ""
    print(f"{summary['questions']} SQuAD questions" + (f", {run}" if run else f" (rows of {summary['rows']})"))
    print(
        f"retrieval recall@5 {summary['retrieval_recall@5']:.2f}; pieces read with the loop stop: "
        f"{summary['pieces_read_share_with_stop']:.0%}"
    )
    print(f"{'metric':<32} {'as generated':>13} {'loop-stopped':>13}")
    for key in summary["answers"]["full"]:
        print(f"{key:<32} {summary['answers']['full'][key]:>13.3f} {summary['answers']['stopped'][key]:>13.3f}")
    if "grid" in summary:
        print(f"grid on {summary['grid_questions']} questions:")
        for name, row in summary["grid"].items():
            print(f"  {name:<16} " + " ".join(f"{k}={v:.2f}" for k, v in row.items()))
    print(
        "follow-ups: "
        + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary["followups"].items())
    )


if __name__ == "__main__":
    main()
