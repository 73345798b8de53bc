"""``ragtune eval retrieval|answers``: recall@k/MRR and EM/F1 on SQuAD-style question sets.

The contexts of a question set are written as one text file per article (or per
context) under ``HOME/eval/<set>/docs`` and ingested into their own collection,
so evaluation runs the same ingest and retrieval code users run. A retrieved
chunk is a hit when its character span holds a gold answer span of the
question's own paragraph. The same run also measures the plain LangChain
pipeline most tutorials use (1000/200-character recursive splits, the same
embedder, Chroma similarity top-k) as a baseline.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.errors import AssistantError
from ingest.config import IngestConfig

KS = (1, 5, 10)
_CITATIONS = re.compile(r"\s*\[\d+(?:,\s*\d+)*\]")  # scored answers leave out citation markers


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    document: str  # file name of the context's document
    spans: tuple[tuple[int, int], ...]  # gold answer spans in the document's text
    context: str


@dataclass
class Dataset:
    name: str
    questions: list[Question]
    documents: dict[str, str]  # file name -> text
    in_collection: bool = False  # the questions are about the configured collection (a built dataset's test split)


def load_split(path: str | Path, limit: int | None = None) -> Dataset:
    """The questions of a ``ragtune dataset build`` split (a folder means its ``test.jsonl``).

    They ask about chunks of the collection the dataset was built from, so the RAG arm
    searches that collection; the oracle arm is handed the question's own chunk.

    Raises:
        AssistantError: the file is missing or holds no question/answer examples.
    """
    path = Path(path)
    file = path / "test.jsonl" if path.is_dir() else path
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise AssistantError(f"cannot read {file} ({e.strerror}): run `ragtune dataset build` first") from None
    questions: dict[str, Question] = {}
    for line in lines:
        row = json.loads(line) if line.strip() else {}
        qa = row.get("qa")
        if qa and row["question"] not in questions:
            questions[row["question"]] = Question(
                qa["chunk_id"], row["question"], tuple(qa["answers"]), qa.get("source", ""), (), qa.get("context", "")
            )
    if not questions:
        raise AssistantError(f"{file} holds no question/answer examples (built without synthetic questions?)")
    chosen = list(questions.values())[:limit] if limit else list(questions.values())
    digest = hashlib.sha256("".join(lines).encode()).hexdigest()[:8]
    return Dataset(f"{file.parent.name}-{file.stem}-{digest}", chosen, {}, in_collection=True)


def load_dataset(path: str | Path, limit: int | None = None) -> Dataset:
    """Read SQuAD v1.1 JSON, or JSONL of {question, answers, context[, id, title]}.

    Raises:
        AssistantError: the file is missing or in neither format.
    """
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as e:
        raise AssistantError(f"cannot read {path} ({e.strerror}): check the path") from None
    rows: list[dict[str, Any]] = []
    if path.suffix == ".jsonl":
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                answers = item["answers"]
                rows.append(
                    {
                        "id": str(item.get("id", number)),
                        "question": item["question"],
                        "answers": [answers] if isinstance(answers, str) else list(answers),
                        "context": item["context"],
                        "title": item.get("title") or hashlib.sha256(item["context"].encode()).hexdigest()[:12],
                    }
                )
            except (json.JSONDecodeError, KeyError, TypeError):
                raise AssistantError(
                    f"{path} line {number}: expected a JSON object with question, answers and context"
                ) from None
    else:
        try:
            articles = json.loads(raw)["data"]
            for article in articles:
                for paragraph in article["paragraphs"]:
                    for qa in paragraph["qas"]:
                        rows.append(
                            {
                                "id": qa["id"],
                                "question": qa["question"],
                                "answers": [a["text"] for a in qa["answers"]],
                                "context": paragraph["context"],
                                "title": article["title"],
                            }
                        )
        except (json.JSONDecodeError, KeyError, TypeError):
            raise AssistantError(f"{path} is neither SQuAD v1.1 JSON nor JSONL of question/answers/context") from None
    if not rows:
        raise AssistantError(f"{path} holds no questions")
    documents: dict[str, list[str]] = {}
    for row in rows:
        name = _file_name(row["title"])
        paragraphs = documents.setdefault(name, [row["title"]])
        context = " ".join(row["context"].split())
        if context not in paragraphs:
            paragraphs.append(context)
    texts = {name: "\n\n".join(paragraphs) for name, paragraphs in documents.items()}
    questions = []
    for row in rows[:limit] if limit else rows:
        name = _file_name(row["title"])
        context = " ".join(row["context"].split())
        base = texts[name].index("\n\n" + context) + 2
        spans = []
        for answer in row["answers"]:
            answer = " ".join(answer.split())
            at = context.find(answer)
            if answer and at >= 0:
                spans.append((base + at, base + at + len(answer)))
        if spans:
            questions.append(Question(row["id"], row["question"], tuple(row["answers"]), name, tuple(spans), context))
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return Dataset(f"{re.sub(r'[^a-zA-Z0-9]+', '-', path.stem).strip('-')[:40]}-{digest}", questions, texts)


def _file_name(title: str) -> str:
    return re.sub(r"[^\w.-]+", "_", title)[:80] + ".txt"


def prepare(dataset: Dataset, ingest_config: IngestConfig) -> tuple[IngestConfig, Path]:
    """Write the documents and ingest them into the set's own collection (incrementally)."""
    from ingest import ingest

    folder = ingest_config.home_path / "eval" / dataset.name / "docs"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in dataset.documents.items():
        path = folder / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    config = dataclasses.replace(ingest_config, collection=f"eval-{dataset.name}")
    ingest([folder], config, progress=sys.stderr.isatty())
    return config, folder.resolve()


def _first_hit(question: Question, folder: Path, spans: list[tuple[str, int, int]]) -> int | None:
    """1-based rank of the first chunk (source, start, end) that holds a gold answer span."""
    source = str(folder / question.document)
    for rank, (chunk_source, start, end) in enumerate(spans, start=1):
        if chunk_source == source and any(start <= a and b <= end for a, b in question.spans):
            return rank
    return None


def evaluate_retrieval(dataset: Dataset, ingest_config: IngestConfig, device: str = "auto") -> dict[str, Any]:
    """recall@1/5/10 and MRR of ragtune's retriever and of the LangChain baseline."""
    from tqdm import tqdm

    from assistant.retrieval import Retriever
    from finetune.metrics import mean_reciprocal_rank, recall_at

    config, folder = prepare(dataset, ingest_config)
    retriever = Retriever(config, candidates=30, min_score=-1.0, device=device)  # rank everything
    baseline = _Baseline(dataset, config, folder, retriever)
    ours: list[int | None] = []
    theirs: list[int | None] = []
    started = time.perf_counter()
    for q in tqdm(dataset.questions, desc="retrieval", unit="question", disable=None):
        hits = retriever.search(q.question, max(KS)).hits
        ours.append(_first_hit(q, folder, [(h.source, h.metadata["start_char"], h.metadata["end_char"]) for h in hits]))
        theirs.append(_first_hit(q, folder, baseline.search(q.question, max(KS))))
    seconds = time.perf_counter() - started

    def scores(ranks: list[int | None]) -> dict[str, float]:
        return {**{f"recall@{k}": recall_at(ranks, k) for k in KS}, "mrr": mean_reciprocal_rank(ranks)}

    return {
        "dataset": dataset.name,
        "questions": len(dataset.questions),
        "documents": len(dataset.documents),
        "ragtune": {"chunks": retriever.collection.count(), **scores(ours)},
        "baseline": {"chunks": baseline.collection.count(), **scores(theirs)},
        "seconds": round(seconds, 2),
    }


class _Baseline:
    """The tutorial pipeline: RecursiveCharacterTextSplitter(1000, 200), same embedder, Chroma top-k."""

    def __init__(self, dataset: Dataset, config: IngestConfig, folder: Path, retriever: Any) -> None:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        from ingest import store

        self.embedder = retriever.embedder
        client = store.open_client(config.home_path, config.chroma_url)
        name = f"{config.collection}-baseline"
        splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200, add_start_index=True)
        docs = splitter.create_documents(
            list(dataset.documents.values()),
            metadatas=[{"source": str(folder / n)} for n in dataset.documents],
        )
        self.collection = client.get_or_create_collection(
            name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )
        if self.collection.count() != len(docs):
            client.delete_collection(name)
            self.collection = client.create_collection(
                name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
            )
            texts = [d.page_content for d in docs]
            vectors = self.embedder.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
            metas = [
                {
                    "source": d.metadata["source"],
                    "start": d.metadata["start_index"],
                    "end": d.metadata["start_index"] + len(d.page_content),
                }
                for d in docs
            ]
            ids = [str(i) for i in range(len(docs))]
            store.upsert(self.collection, ids, vectors, texts, metas, client.get_max_batch_size())

    def search(self, query: str, k: int) -> list[tuple[str, int, int]]:
        vector = self.embedder.encode([query], normalize_embeddings=True, show_progress_bar=False)
        got: Any = self.collection.query(query_embeddings=vector.tolist(), n_results=k, include=["metadatas"])
        return [(m["source"], int(m["start"]), int(m["end"])) for m in got["metadatas"][0]]


def evaluate_answers(
    dataset: Dataset,
    ingest_config: IngestConfig,
    config: Any,
    arms: list[str],
    adapter: str = "",
    answer_tokens: int = 32,
) -> dict[str, Any]:
    """EM/F1 for each arm (closed-book, rag, oracle), with the base model and with an adapter.

    Citation markers such as ``[1]`` are removed before scoring: they are not part of the answer.
    """
    from tqdm import tqdm

    from assistant.answer import Answer, ask
    from assistant.model import load_model
    from assistant.retrieval import Hit, Retriever
    from finetune.metrics import exact_match, f1

    collection_config = ingest_config
    if "rag" in arms and not dataset.in_collection:
        collection_config, _ = prepare(dataset, ingest_config)
    retriever = (
        Retriever(
            collection_config,
            candidates=config.candidates,
            rrf_k=config.rrf_k,
            min_score=config.min_score,
            device=config.device,
        )
        if "rag" in arms
        else None
    )
    variants = [("base", "")] + ([("adapter", adapter)] if adapter else [])
    results: dict[str, Any] = {"dataset": dataset.name, "questions": len(dataset.questions), "arms": {}}
    for label, adapter_path in variants:
        model = load_model(config, ingest_config.home_path, adapter_path)
        for arm in arms:
            em = f1_total = 0.0
            started = time.perf_counter()
            for q in tqdm(dataset.questions, desc=f"{label}/{arm}", unit="question", disable=None):
                context = None
                if arm == "oracle":
                    context = [Hit("oracle", q.context, {"source": q.document}, 1.0, 1.0, 1, 1)]
                events = ask(
                    q.question,
                    model,
                    retriever if arm == "rag" else None,
                    k=config.k,
                    answer_tokens=answer_tokens,
                    context=context,
                )
                answer = _CITATIONS.sub("", next(e for e in events if isinstance(e, Answer)).text)
                em += exact_match(answer, q.answers)
                f1_total += f1(answer, q.answers)
            n = len(dataset.questions)
            results["arms"][f"{label}/{arm}"] = {
                "em": 100 * em / n,
                "f1": 100 * f1_total / n,
                "seconds": round(time.perf_counter() - started, 1),
            }
    return results


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    """Add ``eval retrieval``, ``eval answers`` and ``eval tools`` to a ``ragtune`` parser."""
    p = sub.add_parser("eval", help="measure retrieval, answers and tool use on an eval set")
    kinds = p.add_subparsers(dest="eval_command", required=True, metavar="{retrieval,answers,tools}")
    r = kinds.add_parser("retrieval", parents=[parent], help="recall@k and MRR, ours and the LangChain baseline")
    a = kinds.add_parser("answers", parents=[parent], help="EM/F1 for closed-book, RAG and oracle-context arms")
    for q in (r, a):
        q.add_argument(
            "data", metavar="DATA", help="SQuAD v1.1 JSON, JSONL of question/answers/context, or a built dataset"
        )
        q.add_argument("--limit", type=int, help="evaluate only the first N questions")
        q.add_argument("--out", help="also write the JSON result to this file")
        q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a.add_argument("--arms", default="closed-book,rag,oracle", help="comma-separated arms")
    a.add_argument("--adapter", help="also evaluate every arm with this adapter (registered name, folder or active)")
    a.add_argument("--answer-tokens", type=int, default=32, help="tokens per answer")
    r.set_defaults(func=cmd_eval_retrieval)
    a.set_defaults(func=cmd_eval_answers)

    from assistant.tool_eval import register as register_tools

    register_tools(kinds, parent)


def _emit(args: argparse.Namespace, result: dict[str, Any], table: list[str]) -> int:
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2) if args.json else "\n".join(table))
    return 0


def cmd_eval_retrieval(args: argparse.Namespace) -> int:
    from assistant.cli import configs

    ingest_config, config = configs(args)
    result = evaluate_retrieval(load_dataset(args.data, args.limit), ingest_config, config.device)
    table = [
        f"{result['dataset']}: {result['questions']} questions, {result['documents']} documents",
        f"{'pipeline':<10} {'chunks':>7} " + " ".join(f"{m:>9}" for m in ("recall@1", "recall@5", "recall@10", "mrr")),
    ]
    for name in ("ragtune", "baseline"):
        row = result[name]
        table.append(
            f"{name:<10} {row['chunks']:>7} "
            + " ".join(f"{row[m]:>9.3f}" for m in ("recall@1", "recall@5", "recall@10", "mrr"))
        )
    return _emit(args, result, table)


def cmd_eval_answers(args: argparse.Namespace) -> int:
    from assistant.cli import configs

    ingest_config, config = configs(args)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = set(arms) - {"closed-book", "rag", "oracle"}
    if unknown:
        raise AssistantError(f"unknown arms {sorted(unknown)}: choose from closed-book, rag, oracle")
    data = Path(args.data)
    split_file = data.is_dir() or (
        data.suffix == ".jsonl" and data.exists() and '"messages"' in data.read_text()[:5000]
    )
    dataset = load_split(data, args.limit) if split_file else load_dataset(data, args.limit)
    result = evaluate_answers(dataset, ingest_config, config, arms, args.adapter or "", args.answer_tokens)
    table = [f"{result['dataset']}: {result['questions']} questions", f"{'arm':<22} {'EM':>6} {'F1':>6}"]
    table += [f"{arm:<22} {row['em']:>6.1f} {row['f1']:>6.1f}" for arm, row in result["arms"].items()]
    return _emit(args, result, table)
