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

import dataclasses
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.answer import ask
from assistant.config import AssistantConfig
from assistant.errors import AssistantError
from assistant.events import Answer
from assistant.retrieval import Hit, Retriever
from finetune.metrics import exact_match, f1, mean_reciprocal_rank, recall_at
from ingest import store
from ingest.config import IngestConfig
from ingest.embedding import embed, embed_queries
from ingest.pipeline import ingest

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
    decision: str = ""  # PubMedQA: the gold yes / no / maybe


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


def _pubmedqa_rows(data: Any) -> list[dict[str, Any]] | None:
    """PubMedQA's ``{PMID: {QUESTION, CONTEXTS, final_decision, LONG_ANSWER}}``, as rows; None for another format."""
    if not isinstance(data, dict) or not data or "data" in data:
        return None
    first = next(iter(data.values()))
    if not isinstance(first, dict) or "QUESTION" not in first:
        return None
    return [
        {
            "id": str(pmid),
            "question": item["QUESTION"],
            "answers": [item.get("LONG_ANSWER") or item["final_decision"]],
            "context": " ".join(item["CONTEXTS"]),
            "title": f"PMID {pmid}",
            "decision": str(item.get("final_decision", "")),
        }
        for pmid, item in data.items()
    ]


def load_dataset(path: str | Path, limit: int | None = None) -> Dataset:
    """Read SQuAD v1.1 JSON (XQuAD too), PubMedQA JSON, or JSONL of {question, answers, context[, id, title]}.

    PubMedQA questions are scored on their long answer (F1) and their yes/no/maybe decision.

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
    elif (pubmed := _pubmedqa_rows(_json_or_none(raw))) is not None:
        rows = pubmed
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
        if spans or row.get("decision"):
            questions.append(
                Question(
                    row["id"],
                    row["question"],
                    tuple(row["answers"]),
                    name,
                    tuple(spans),
                    context,
                    row.get("decision", ""),
                )
            )
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return Dataset(f"{re.sub(r'[^a-zA-Z0-9]+', '-', path.stem).strip('-')[:40]}-{digest}", questions, texts)


def _json_or_none(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return None


def _file_name(title: str) -> str:
    return re.sub(r"[^\w.-]+", "_", title)[:80] + ".txt"


def prepare(dataset: Dataset, ingest_config: IngestConfig) -> tuple[IngestConfig, Path]:
    """Write the documents and ingest them into the set's own collection (incrementally)."""
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


def evaluate_retrieval(
    dataset: Dataset,
    ingest_config: IngestConfig,
    device: str = "auto",
    embedder: Callable[[str, str], Any] | None = None,
) -> dict[str, Any]:
    """recall@1/5/10 and MRR of ragtune's retriever and of the LangChain baseline.

    Args:
        dataset: The question set and its documents.
        ingest_config: The data home (the set gets its own collection there).
        device: Device of the embedder.
        embedder: Loads an embedder by (name, device); None loads a fresh one.
        others: More adapter folders to score, by label (e.g. the adapter training started from).
    """
    from tqdm import tqdm

    config, folder = prepare(dataset, ingest_config)
    retriever = Retriever(config, candidates=30, min_score=-1.0, device=device, embedder=embedder)  # rank everything
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
            vectors = embed(self.embedder, texts, 64, False)
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
        vector = embed_queries(self.embedder, [query])
        got: Any = self.collection.query(query_embeddings=vector.tolist(), n_results=k, include=["metadatas"])
        return [(m["source"], int(m["start"]), int(m["end"])) for m in got["metadatas"][0]]


_DECISION = re.compile(r"\b(yes|no|maybe)\b", re.IGNORECASE)


def decision_of(answer: str) -> str:
    """The yes / no / maybe an answer gives (its first such word), "" for none."""
    found = _DECISION.search(answer)
    return found.group(1).lower() if found else ""


def _holds_gold(hit: Hit, question: Question, folder: Path | None) -> bool:
    """Whether a cited chunk holds a gold answer: its span (or, without spans, its document or chunk)."""
    if hit.id == "oracle" or hit.id == question.id:
        return True
    if folder is None or hit.source != str(folder / question.document):
        return False
    if not question.spans:  # PubMedQA: the answer is the abstract's conclusion; the right document counts
        return True
    start, end = int(hit.metadata.get("start_char", -1)), int(hit.metadata.get("end_char", -1))
    return any(start <= a and b <= end for a, b in question.spans)


def _row(question: Question, answer: Answer, folder: Path | None) -> dict[str, Any]:
    text = _CITATIONS.sub("", answer.text)
    checked = answer.checked
    cited = checked.cited if checked is not None else answer.cited
    holds = [_holds_gold(answer.sources[n - 1], question, folder) for n in cited if 0 < n <= len(answer.sources)]
    row: dict[str, Any] = {
        "id": question.id,
        "question": question.question,
        "gold": list(question.answers),
        "answer": answer.cited_text(),
        "em": exact_match(text, question.answers),
        "f1": f1(text, question.answers),
        "citations": cited,
        "cited_holds_gold": holds,
        "unsupported": [s.text for s in checked.unsupported] if checked is not None else [],
        "claims": len(checked.claims) if checked is not None else 0,
        "looped": answer.looped,
        "relevant": answer.relevant,
    }
    if question.decision:
        row["decision"] = {"gold": question.decision, "answer": decision_of(text)}
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """EM/F1 and what users see, over per-question rows: loop rate, cited answers, citation precision, unsupported.

    Rates are percentages. Citation precision counts every citation of every answer; the unsupported
    rate is the share of claims no source supports; cited answers count answers that make claims.
    """
    n = len(rows) or 1
    holds = [h for r in rows for h in r["cited_holds_gold"]]
    claims = sum(r["claims"] for r in rows)
    claiming = [r for r in rows if r["claims"]]
    out: dict[str, Any] = {
        "em": 100 * sum(r["em"] for r in rows) / n,
        "f1": 100 * sum(r["f1"] for r in rows) / n,
        "loop_rate": 100 * sum(bool(r["looped"]) for r in rows) / n,
        "cited_rate": 100 * sum(bool(r["citations"]) for r in claiming) / len(claiming) if claiming else None,
        "citation_precision": 100 * sum(holds) / len(holds) if holds else None,
        "unsupported_rate": 100 * sum(len(r["unsupported"]) for r in rows) / claims if claims else None,
        "answer_words": sum(len(r["answer"].split()) for r in rows) / n,
    }
    decisions = [r["decision"] for r in rows if "decision" in r]
    if decisions:
        out["decision_accuracy"] = 100 * sum(d["gold"] == d["answer"] for d in decisions) / len(decisions)
    return out


def evaluate_answers(
    dataset: Dataset,
    ingest_config: IngestConfig,
    config: AssistantConfig,
    model: Any,
    arms: list[str],
    adapter: str = "",
    answer_tokens: int | None = None,
    embedder: Callable[[str, str], Any] | None = None,
    others: dict[str, str] | None = None,
) -> dict[str, Any]:
    """EM/F1 and what users see, for each arm (closed-book, rag, oracle), with the base model and adapters.

    Answers are generated as users get them: ``config.answer_tokens`` long unless ``answer_tokens`` says
    otherwise, with the configured loop guard and citation check. Citation markers such as ``[1]``
    are removed before EM/F1: they are not part of the answer. ``rows`` holds one row per question
    and arm (question, gold, answer, EM, F1, citations and whether each cited chunk holds a gold
    answer, unsupported sentences, loop).

    Args:
        dataset: The questions (and their documents, unless they are in the collection already).
        ingest_config: The data home and collection.
        config: Retrieval and answer settings.
        model: The base model (a view whose ``with_adapter`` switches adapters).
        arms: Which of closed-book, rag and oracle to run.
        adapter: An adapter folder to score as well.
        answer_tokens: Tokens per answer; None: ``config.answer_tokens``.
        embedder: Loads an embedder by (name, device); None loads a fresh one.
        others: More adapter folders to score, by label (e.g. the adapter training started from).
    """
    from tqdm import tqdm

    tokens = config.answer_tokens if answer_tokens is None else answer_tokens
    collection_config, folder = ingest_config, None
    if "rag" in arms and not dataset.in_collection:
        collection_config, folder = prepare(dataset, ingest_config)
    retriever = Retriever.from_config(collection_config, config, embedder) if "rag" in arms else None
    variants = [("base", ""), *(others or {}).items()] + ([("adapter", adapter)] if adapter else [])
    results: dict[str, Any] = {
        "dataset": dataset.name,
        "questions": len(dataset.questions),
        "answer_tokens": tokens,
        "arms": {},
        "rows": {},
    }
    for label, adapter_path in variants:
        variant = model.with_adapter(adapter_path)
        for arm in arms:
            started = time.perf_counter()
            rows = []
            for q in tqdm(dataset.questions, desc=f"{label}/{arm}", unit="question", disable=None):
                context = None
                if arm == "oracle":
                    context = [Hit("oracle", q.context, {"source": q.document}, 1.0, 1.0, 1, 1)]
                events = ask(
                    q.question,
                    variant,
                    retriever if arm == "rag" else None,
                    k=config.k,
                    answer_tokens=tokens,
                    context=context,
                    loop_guard=config.loop_guard,
                    citations=config.check_citations,
                )
                answer = next(e for e in events if isinstance(e, Answer))
                rows.append(_row(q, answer, folder))
            results["arms"][f"{label}/{arm}"] = {
                **summarise(rows),
                "seconds": round(time.perf_counter() - started, 1),
            }
            results["rows"][f"{label}/{arm}"] = rows
    return results
