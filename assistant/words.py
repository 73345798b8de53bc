"""Content words of a text: the terms that carry meaning, compared across questions, answers and sources.

Shared by the follow-up guard (:mod:`assistant.rewrite`) and the citation check
(:mod:`assistant.citations`). Text is NFKC-normalised and lower-cased; words are
Unicode letter/digit runs, and each CJK character (which has no spaces between
words) is a word of its own. English stopwords are dropped and a crude suffix
stripping makes "warranties", "warranty" and "warranted" one term. Numbers are
content: ``12`` and ``E116`` are terms like any name.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["STOPWORDS", "content_words", "has_digit", "stem", "word_spans", "words"]

# CJK ideographs, kana and hangul: written without spaces, so each character is a word.
_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
# A number keeps its inner separators (1.5, 1,000, 12:30); a word keeps inner apostrophes and hyphens.
_W = rf"[^\W_{_CJK}]"  # a letter or digit outside CJK
_WORD = re.compile(rf"[{_CJK}]|{_W}+(?:(?:(?<=\d)[.,:](?=\d)|['’-](?={_W})){_W}+)*")

_STOPWORDS = """
    a about above after again against all also am an and any are aren't as at be because been before being
    below between both but by can cannot could couldn't did didn't do does doesn't doing don't down during each
    either else ever every few for from further had hadn't has hasn't have haven't having he her here hers herself
    him himself his how however i if in into is isn't it it's its itself just let's me more most much must my
    myself neither no nor not now of off on once one only or other ought our ours ourselves out over own per
    please same shall she should shouldn't so some such than that that's the their theirs them themselves then
    there there's these they this those through thus to too under until up upon us very via was wasn't we were
    weren't what what's when where where's whether which while who who's whom whose why will with within without
    won't would wouldn't yes yet you your yours yourself yourselves
    describe explain give know mean meaning question answer tell say says said
"""
STOPWORDS = frozenset(_STOPWORDS.split())
_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "ness", "ly", "es", "ed", "s")


def words(text: str) -> list[str]:
    """The words of ``text``, lower-cased, in order (punctuation dropped, CJK split by character)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    found = [m.group(0) for m in _WORD.finditer(text) if m.group(0)]
    return [w[:-2] if w.endswith("'s") and len(w) > 2 else w.strip("'-") for w in found if w.strip("'-")]


def stem(word: str) -> str:
    """A crude, symmetric root: ``batteries``/``battery`` -> ``batter``, ``lasts``/``lasted`` -> ``last``.

    Numbers and words with digits are kept whole. Collisions only make comparisons more lenient.
    """
    if has_digit(word) or len(word) <= 3:
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word[-1] in "ey":
        word = word[:-1]
    return word


def has_digit(word: str) -> bool:
    return any(ch.isdigit() for ch in word)


def has_letter(word: str) -> bool:
    return any(ch.isalpha() for ch in word)


def content_words(text: str) -> set[str]:
    """The stems of the words of ``text`` that are not stopwords; numbers included (``1,000`` as ``1000``)."""
    terms = set()
    for word in words(text):
        if word in STOPWORDS:
            continue
        terms.add(word.replace(",", "") if has_digit(word) else stem(word))
    return terms


def word_spans(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, word)`` for each word of ``text``: offsets into ``text``, the word as :func:`words` has it."""
    spans = []
    for match in _WORD.finditer(text):
        found = words(match.group(0))
        if found:
            spans.append((match.start(), match.end(), found[0]))
    return spans
