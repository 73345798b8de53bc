"""Answer and retrieval metrics: SQuAD's official EM/F1 normalisation, recall@k, MRR."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, squeeze whitespace (SQuAD v1.1 evaluate script)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: Iterable[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer."""
    answer = normalize_answer(prediction)
    return float(any(answer == normalize_answer(g) for g in gold))


def f1(prediction: str, gold: Iterable[str]) -> float:
    """Best token-overlap F1 of the prediction against the gold answers."""
    predicted = normalize_answer(prediction).split()
    best = 0.0
    for answer in gold:
        expected = normalize_answer(answer).split()
        common = sum((Counter(predicted) & Counter(expected)).values())
        if common:
            precision, recall = common / len(predicted), common / len(expected)
            best = max(best, 2 * precision * recall / (precision + recall))
        elif not predicted and not expected:
            best = 1.0
    return best


def recall_at(ranks: Sequence[int | None], k: int) -> float:
    """Share of queries whose first hit is at rank <= k (ranks are 1-based; None: no hit)."""
    return sum(1 for r in ranks if r is not None and r <= k) / len(ranks) if ranks else 0.0


def mean_reciprocal_rank(ranks: Sequence[int | None]) -> float:
    """Mean of 1/rank of the first hit (0 for none)."""
    return sum(1.0 / r for r in ranks if r) / len(ranks) if ranks else 0.0
