"""Follow-up questions that cannot invent: what retrieval may search for after earlier turns.

A small model asked to rewrite a follow-up into a standalone question often
writes an answer instead, with facts of its own ("The warranty for E116 lasts
12 months."), and retrieval then searches for the invented answer. Here:

- :func:`is_self_contained` says when a question needs no rewriting at all
  (no pronoun or "this"/"the same" pointing back, long enough to stand alone):
  such a question is searched as asked, never replaced;
- :func:`guard_rewrite` accepts a model's rewrite only when every content word
  in it comes from the question or the conversation, and it keeps the question's
  own content words;
- :func:`fused_queries` gives the queries to search and fuse by reciprocal rank
  (:func:`fuse`): the question, and the question joined with the previous user
  turn, which needs no model at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

from assistant.words import STOPWORDS, content_words, has_digit, words

__all__ = ["fuse", "fused_queries", "guard_rewrite", "is_self_contained", "new_words"]

T = TypeVar("T")

# Words that point back into the conversation unless the question names what they refer to:
# a person (a capitalised name before them), a thing (a name, a number or "the <noun>" before them).
_PERSON = frozenset(("he", "him", "his", "she", "her", "hers"))
_THING = frozenset(("it", "its", "they", "them", "their", "theirs"))
# Words that always point back: "this model", "the same", "the former".
_DEICTIC = frozenset(("this", "these", "those", "former", "latter", "same", "aforementioned"))
# Words that point back at the end of a question, whatever precedes them ("What happens there?", "at it?").
_BACK_AT_END = frozenset(("there", "that", "one", "ones", "it", "them", "this", "these", "those"))
_OPENERS = re.compile(
    r"^(?:and|but|so|also|or|then|what about|how about|what else|why not|and what|same for|and how|and why)\b",
    re.IGNORECASE,
)
_MIN_CONTENT_WORDS = 2
_ARTICLES = frozenset(("the", "a", "an"))
_QUESTION_END = ("?", "？", "؟")


def is_self_contained(question: str, history: Sequence[dict[str, Any]] | None = None) -> bool:
    """Whether ``question`` can be searched as asked, without the conversation.

    It is not when it opens like a continuation ("And the inverter?", "What about
    E117?"), has a pronoun or "this"/"the same" with nothing in the question it
    could refer to ("How do I reset it?"; but not "What did Tesla do after he
    left?"), ends on "there"/"that", or has fewer than two content words
    ("Why?", "How much?"). Without history every question is self-contained.

    Args:
        question: The user's question.
        history: Earlier turns (``role``/``content``), oldest first.
    """
    if not history:
        return True
    text = question.strip()
    if _OPENERS.match(text) or len(content_words(text)) < _MIN_CONTENT_WORDS:
        return False
    name = thing = False  # what a pronoun may refer to within the question itself
    previous = last = ""
    for position, token in enumerate(text.split()):
        capital = position > 0 and token.lstrip("\"'(“‘[")[:1].isupper()
        for word in words(token):
            if word in _DEICTIC or (word in _PERSON and not name) or (word in _THING and not (name or thing)):
                return False
            if (capital and word != "i") or has_digit(word):
                name = True
            elif previous in _ARTICLES and word not in STOPWORDS:
                thing = True
            previous = last = word
    return last not in _BACK_AT_END


def new_words(text: str, question: str, history: Sequence[dict[str, Any]]) -> set[str]:
    """Content words of ``text`` that appear in neither ``question`` nor any turn of ``history``."""
    known = content_words(question)
    for message in history:
        known |= content_words(str(message.get("content") or ""))
    return content_words(text) - known


def guard_rewrite(question: str, history: Sequence[dict[str, Any]], rewrite: str) -> str | None:
    """The model's standalone rewrite of a follow-up, or None when it must not be searched.

    A rewrite is thrown away when the question is self-contained (it is searched as
    asked), when it adds a content word found in neither the question nor the
    history (numbers count: "12 months" from nowhere), when it drops more than half
    of the question's own content words, or when a question was turned into a
    statement (the model answered instead of rewriting).

    Args:
        question: The user's follow-up as typed.
        history: Earlier turns (``role``/``content``), oldest first.
        rewrite: The model's reply to the rewrite prompt.
    """
    if is_self_contained(question, history):
        return None
    lines = [line.strip() for line in rewrite.strip().splitlines() if line.strip()]
    if not lines:
        return None
    line = re.sub(r"^(?:standalone question|rewritten question|question)\s*:\s*", "", lines[0], flags=re.IGNORECASE)
    line = line.strip().strip("\"'“”‘’").strip()
    if not line or len(line) > 4 * len(question) + 200:
        return None
    if new_words(line, question, history):
        return None
    own = content_words(question)
    if own and len(own & content_words(line)) * 2 < len(own):
        return None
    if question.rstrip().endswith(_QUESTION_END) and not line.endswith(_QUESTION_END):
        return None
    return line


def fused_queries(question: str, history: Sequence[dict[str, Any]]) -> list[str]:
    """The queries to search for ``question``, to be fused by reciprocal rank with :func:`fuse`.

    A self-contained question is searched alone. Otherwise: the question, and the
    previous user turn joined with the question ("How long is the warranty? Does it
    cover the inverter?"), so the follow-up's missing subject comes from the user's
    own words.

    Args:
        question: The user's question.
        history: Earlier turns (``role``/``content``), oldest first.
    """
    if is_self_contained(question, history):
        return [question]
    previous = next((str(m.get("content") or "") for m in reversed(history) if m.get("role") == "user"), "")
    if not previous.strip():
        return [question]
    return [question, f"{previous.strip()} {question.strip()}"]


def fuse(rankings: Sequence[Sequence[T]], key: Callable[[T], Hashable] = lambda item: item, k: int = 60) -> list[T]:
    """Reciprocal-rank fusion of several rankings: score ``sum(1 / (k + rank))``, best first.

    An item in several rankings appears once (its first occurrence is kept); ties keep
    the order of first appearance.

    Args:
        rankings: Lists of results, each best first (e.g. the hits of each query).
        key: What identifies an item across rankings (e.g. ``lambda hit: hit.id``).
        k: The RRF constant (60 in the original paper).
    """
    scores: dict[Hashable, float] = {}
    items: dict[Hashable, T] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            ident = key(item)
            scores[ident] = scores.get(ident, 0.0) + 1.0 / (k + rank)
            items.setdefault(ident, item)
    order = sorted(scores, key=lambda ident: -scores[ident])  # stable: ties keep first appearance
    return [items[ident] for ident in order]
