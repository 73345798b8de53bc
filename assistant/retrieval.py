"""Hybrid retrieval over the ingested collection: dense + BM25, fused by reciprocal rank.

Dense search asks Chroma; lexical search asks the BM25 index that ingest keeps
in step with the collection. Their rankings are fused by reciprocal-rank fusion
(RRF); optionally re-ranked for diversity with maximal marginal relevance (MMR);
and filtered by a cosine-similarity threshold, so a question the documents do
not cover yields an explicit "nothing relevant" instead of noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.config import AssistantConfig
from assistant.errors import AssistantError
from ingest import lexical, list_documents, store
from ingest.config import IngestConfig
from ingest.embedding import embed_queries, load_embedder

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.retrievers import BaseRetriever


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk with its scores."""

    id: str
    text: str
    metadata: dict[str, Any]
    score: float  # fused RRF score: what the ranking is by
    similarity: float  # cosine similarity of query and chunk
    dense_rank: int | None  # 1-based rank in dense search, None when not in its candidates
    lexical_rank: int | None  # 1-based rank in BM25 search, None when not in its candidates

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", ""))

    @property
    def page(self) -> int | None:
        page = self.metadata.get("page")
        return int(page) if page is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "page": self.page,
            "section": self.metadata.get("section"),
            "start_char": self.metadata.get("start_char"),
            "end_char": self.metadata.get("end_char"),
            "score": round(self.score, 6),
            "similarity": round(self.similarity, 4),
            "dense_rank": self.dense_rank,
            "lexical_rank": self.lexical_rank,
            "text": self.text,
        }


@dataclass
class SearchResult:
    """The hits for one query; ``relevant`` is False when nothing passed the threshold."""

    query: str
    hits: list[Hit]
    seconds: float = 0.0
    below_threshold: list[Hit] = field(default_factory=list)

    @property
    def relevant(self) -> bool:
        return bool(self.hits)


class Retriever:
    """Hybrid search over one collection of a data home.

    Args:
        ingest_config: Where the collection is (home, name, Chroma server).
        candidates: How many chunks each of dense and BM25 search contributes.
        rrf_k: The RRF constant (60 in the original paper).
        min_score: Cosine similarity a chunk needs to count as relevant.
        device: Device of the query embedder.
        embedder: Loads an embedder by (model name, device), e.g. a cache shared with ingest;
            None loads one with :func:`ingest.embedding.load_embedder`.
        fresh: Open a new Chroma client instead of the process's cached one: after another
            process wrote to the store (see :class:`ingest.store.StoreWatcher`).

    Raises:
        AssistantError: the collection does not exist or is empty.
    """

    def __init__(
        self,
        ingest_config: IngestConfig,
        *,
        candidates: int = 30,
        rrf_k: int = 60,
        min_score: float = 0.2,
        device: str = "auto",
        embedder: Callable[[str, str], Any] | None = None,
        fresh: bool = False,
    ) -> None:
        home, name = ingest_config.home_path, ingest_config.collection
        client = store.open_client(home, ingest_config.chroma_url, fresh=fresh)
        collection = None
        records = list_documents(ingest_config)
        model_name = ingest_config.embedding_model
        if records:
            from chromadb.errors import NotFoundError

            try:  # the collection knows which embedder built it; queries must use the same one
                existing = client.get_collection(name, embedding_function=None)
            except (NotFoundError, ValueError):
                raise AssistantError(
                    f"collection {name!r} is listed in the manifest but missing from the store: "
                    f"re-ingest with `ragtune ingest PATH --collection {name}`"
                ) from None
            model_name = (existing.metadata or {}).get("embedding_model") or model_name
            collection = store.open_collection(client, name, model_name, create=False)
        if collection is None or not records:
            raise AssistantError(f"collection {name!r} is empty: add documents first with `ragtune ingest PATH`")
        self.collection = collection
        if embedder is None:
            c = ingest_config
            self.embedder = load_embedder(model_name, device, home, c.query_prompt, c.passage_prompt, c.embedding_dtype)
        else:
            self.embedder = embedder(model_name, device)
        ids = [i for r in records for i in r.chunk_ids]
        self.lexical = lexical.load(home, name, ids) or lexical.build(home, name, collection, ids)
        self.candidates, self.rrf_k, self.min_score = candidates, rrf_k, min_score

    @classmethod
    def from_config(
        cls,
        ingest_config: IngestConfig,
        config: AssistantConfig,
        embedder: Callable[[str, str], Any] | None = None,
        fresh: bool = False,
    ) -> Retriever:
        """The retriever the ``[assistant]`` settings describe, over the collection ``ingest_config`` names."""
        return cls(
            ingest_config,
            candidates=config.candidates,
            rrf_k=config.rrf_k,
            min_score=config.min_score,
            device=config.device,
            embedder=embedder,
            fresh=fresh,
        )

    def embed_query(self, query: str) -> np.ndarray:
        return embed_queries(self.embedder, [query])[0]

    def search(
        self,
        query: str,
        k: int = 5,
        *,
        source: str | None = None,
        mmr: bool = False,
        mmr_lambda: float = 0.7,
    ) -> SearchResult:
        """The ``k`` best chunks for ``query``.

        Args:
            query: The search text.
            k: How many chunks to return at most.
            source: Only chunks of this file (a path, or a file name).
            mmr: Re-rank the relevant candidates for diversity.
            mmr_lambda: Relevance weight in MMR (1: no diversity).
        """
        import numpy as np

        started = time.perf_counter()
        if not query.strip():
            raise AssistantError("the query is empty: type a question or some keywords")
        vector = self.embed_query(query)
        where = _source_filter(source)
        # Ranks first (ids and distances only), texts later for the few chunks that make the cut.
        dense: Any = self.collection.query(
            query_embeddings=[vector.tolist()], n_results=self.candidates, where=where, include=["distances"]
        )
        dense_rank = {cid: rank for rank, cid in enumerate(dense["ids"][0], start=1)}
        similarity = {cid: 1.0 - float(d) for cid, d in zip(dense["ids"][0], dense["distances"][0], strict=True)}
        lexical_ids = [cid for cid, _ in self.lexical.search(query, self.candidates * (1 if where is None else 4))]
        if where is not None:  # keep the BM25 hits of the wanted source only
            unknown = [cid for cid in lexical_ids if cid not in dense_rank]
            got: Any = self.collection.get(ids=unknown, include=["metadatas"]) if unknown else None
            allowed = (
                set(dense_rank)
                | {cid for cid, m in zip(got["ids"], got["metadatas"], strict=True) if _matches(m, where)}
                if got
                else set(dense_rank)
            )
            lexical_ids = [cid for cid in lexical_ids if cid in allowed]
        lexical_rank = {cid: rank for rank, cid in enumerate(lexical_ids[: self.candidates], start=1)}

        def fused(cid: str) -> float:
            return sum(1.0 / (self.rrf_k + r) for r in (dense_rank.get(cid), lexical_rank.get(cid)) if r is not None)

        order = sorted(set(dense_rank) | set(lexical_rank), key=lambda c: (-fused(c), dense_rank.get(c, 10**9)))
        relevant: list[Hit] = []
        below: list[Hit] = []
        vectors: dict[str, Any] = {}
        # At most two fetches: the best window, then the rest if too few of it pass the threshold.
        cut = len(order) if mmr else k + 5
        for window in (order[:cut], order[cut:]):
            if not window:
                break
            got = self.collection.get(ids=window, include=["documents", "metadatas", "embeddings"])
            rows = {
                cid: (doc, dict(meta), np.asarray(emb, dtype=np.float32))
                for cid, doc, meta, emb in zip(
                    got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True
                )
            }
            for cid in window:
                text, meta, emb = rows[cid]
                vectors[cid] = emb
                sim = similarity[cid] if cid in similarity else float(np.dot(vector, emb))
                hit = Hit(cid, text, meta, fused(cid), sim, dense_rank.get(cid), lexical_rank.get(cid))
                (relevant if sim >= self.min_score else below).append(hit)
            if len(relevant) >= k:
                break
        if mmr and relevant:
            relevant = _mmr(relevant, vectors, k, mmr_lambda)
        return SearchResult(query, relevant[:k], time.perf_counter() - started, below[:k])

    def as_langchain(self, k: int = 5, **search_kwargs: Any) -> BaseRetriever:
        """This retriever as a LangChain ``BaseRetriever`` (documents carry the hit's scores)."""
        return make_langchain_retriever(self, k, search_kwargs)


def _source_filter(source: str | None) -> dict[str, Any] | None:
    if not source:
        return None
    path = Path(source).expanduser()
    if path.exists():
        return {"source": str(path.resolve())}
    return {"$or": [{"source": source}, {"file_name": source}]}


def _matches(meta: Any, where: dict[str, Any]) -> bool:
    """Whether chunk metadata passes a filter made by :func:`_source_filter`."""
    clauses = where.get("$or", [where])
    return any(all(meta.get(key) == value for key, value in clause.items()) for clause in clauses)


def _mmr(hits: list[Hit], vectors: dict[str, Any], k: int, weight: float) -> list[Hit]:
    import numpy as np

    chosen: list[Hit] = []
    pool = list(hits)
    while pool and len(chosen) < k:

        def value(h: Hit) -> float:
            redundancy = max((float(np.dot(vectors[h.id], vectors[c.id])) for c in chosen), default=0.0)
            return weight * h.similarity - (1 - weight) * redundancy

        best = max(pool, key=value)
        chosen.append(best)
        pool.remove(best)
    return chosen


def make_langchain_retriever(retriever: Retriever, k: int, search_kwargs: dict[str, Any]) -> BaseRetriever:
    """Wrap a :class:`Retriever` for use in LangChain chains."""
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    class RagtuneRetriever(BaseRetriever):
        """ragtune's hybrid retriever (dense + BM25, RRF, threshold) as a LangChain retriever."""

        inner: Any
        k: int = 5
        search_kwargs: dict[str, Any] = {}  # noqa: RUF012 (pydantic copies field defaults)

        def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
            result = self.inner.search(query, self.k, **self.search_kwargs)
            return [
                Document(
                    page_content=h.text,
                    metadata={**h.metadata, "id": h.id, "score": h.score, "similarity": h.similarity},
                )
                for h in result.hits
            ]

    return RagtuneRetriever(inner=retriever, k=k, search_kwargs=search_kwargs)
