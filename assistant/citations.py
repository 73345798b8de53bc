"""A citation on every claim, checked against the sources the model was given.

After generation, the answer is split into sentences and each sentence is
matched to the numbered sources that support it: most of its content words are
in the source (optionally, or the embedder finds a source sentence close to it),
and every number in it is in the source too. Then:

- a sentence the model did not cite gets ``[n]`` of its best supporting source;
- a model-written ``[n]`` whose source does not support the sentence is replaced
  by one that does (``corrected``), or removed and the sentence marked unsupported;
- a claim no source supports is marked unsupported;
- numbers and names (capitalised words not opening a sentence) that appear in no
  source, nor in the question, are listed as ``unknown_terms``.

Words are not enough where one says "not": "The battery can charge in freezing
weather" shares every content word with "the battery cannot charge in freezing
weather without its heater". So each clause of a claim must agree on negation
(both negated or neither) with the clause of the passage that shares most of its
words for the passage to support the claim.

Sentences end at ``. ! ?`` followed by a space and a capital (abbreviations,
initials and decimals do not end one), at the CJK full stop, exclamation and question
marks, and at line breaks; a
citation right after the full stop stays with its sentence.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from assistant.words import STOPWORDS, content_words, has_digit, has_letter, stem, word_spans, words

__all__ = ["CitedAnswer", "SentenceCheck", "check_citations", "split_sentences"]

Embed = Callable[[list[str]], Sequence[Sequence[float]]]

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_MARKERS = r"(?:\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\])*"
_END = re.compile(rf"(?:[.!?…]+[\"'”’)]*{_MARKERS}(?=\s|$)|[。！？]+[”’」』)）]*{_MARKERS}|\n)")
_CITATION = re.compile(r"\s*\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_NUMBER = re.compile(r"\d[\d.,]*")  # a quantity (codes such as E116 have no unit)
_LIST_MARKER = re.compile(r"^\s*(?:[-*•·–]|\(?\d{1,3}[.)]|[a-zA-Z][.)])\s+")
_FINAL_PUNCT = re.compile(r"[.!?…。！？]+[\"'”’」』)）]*$")
_ABBREVIATIONS = frozenset(
    ("e.g", "i.e", "etc", "vs", "cf", "dr", "mr", "mrs", "ms", "prof", "st", "jr", "sr", "no", "nos", "fig", "figs")
) | frozenset(("p", "pp", "vol", "approx", "ca", "inc", "ltd", "co", "corp", "dept", "est", "jan", "feb", "mar"))
_NOT_NAMES = _ABBREVIATIONS | {"i"}
# Words that negate a statement, in the languages the assistant answers in most ("no" doubles as
# Spanish/Italian; words ending in "n't" are negations too). "not only" (... "but also") is not one.
_NEGATIONS = (
    frozenset(("not", "no", "never", "cannot", "none", "nothing", "nobody", "nowhere", "neither", "nor"))  # en
    | frozenset(("nicht", "kein", "keine", "keinen", "keinem", "keiner", "keines", "nie", "niemals"))  # de
    | frozenset(("ne", "pas", "jamais", "aucun", "aucune", "non"))  # fr
    | frozenset(
        ("nunca", "jamás", "ninguno", "ninguna", "nada", "nem", "não", "nenhum", "nenhuma", "mai", "nessuno")
    )  # es, pt, it
)
# Where a sentence's clauses part: the negation of one ("No action needed") says nothing of the next.
_CLAUSE = re.compile(r"[;:,()]|\s[–—-]\s|\b(?:but|because|although|though|while|whereas|so|and then)\b", re.IGNORECASE)
_NO_CLAIM = re.compile(
    r"\b(?:do(?:es)?\s+not\s+(?:say|mention|contain|specify|state|cover)|don't\s+know|do\s+not\s+know|"
    r"no\s+information|not\s+(?:mentioned|specified|stated|covered)|cannot\s+(?:find|answer|tell))\b",
    re.IGNORECASE,
)


@dataclass
class SentenceCheck:
    """One sentence of an answer and what the sources say about it."""

    text: str  # the sentence without citation markers
    cited: list[int]  # the sources it cites after checking
    supported: bool  # a cited source supports it (always True for a sentence that makes no claim)
    corrected: bool  # the model cited a source that does not support it (replaced, or removed)
    unknown_terms: list[str]  # numbers and names in it that appear in no source
    model_cited: list[int] = field(default_factory=list)  # what the model wrote
    claim: bool = True  # False for "Yes.", "The documents do not say.", a question back
    start: int = 0  # span of the sentence in the model's answer
    end: int = 0

    @property
    def added(self) -> bool:
        """The citation was attached after generation (the model cited nothing here)."""
        return bool(self.cited) and not self.model_cited


@dataclass
class CitedAnswer:
    """An answer with each sentence checked against its sources; ``text`` has the ``[n]`` markers."""

    original: str
    sentences: list[SentenceCheck]
    source_count: int

    @property
    def text(self) -> str:
        return self.render()

    @property
    def cited(self) -> list[int]:
        """Every source number the checked answer cites."""
        return sorted({n for s in self.sentences for n in s.cited})

    @property
    def has_citation(self) -> bool:
        return bool(self.cited)

    @property
    def claims(self) -> list[SentenceCheck]:
        return [s for s in self.sentences if s.claim]

    @property
    def unsupported(self) -> list[SentenceCheck]:
        """Claims no source supports."""
        return [s for s in self.sentences if s.claim and not s.supported]

    @property
    def unsupported_rate(self) -> float:
        """Share of the claims that no source supports (0 when there are none)."""
        claims = self.claims
        return len(self.unsupported) / len(claims) if claims else 0.0

    @property
    def corrected(self) -> list[SentenceCheck]:
        """Sentences whose model-written citation was wrong."""
        return [s for s in self.sentences if s.corrected]

    @property
    def unknown_terms(self) -> list[str]:
        """Numbers and names of the answer found in no source, in order, once each."""
        return list(dict.fromkeys(t for s in self.sentences for t in s.unknown_terms))

    def render(self, unsupported_mark: str = "") -> str:
        """The answer with each sentence's ``[n]`` before its full stop, and ``unsupported_mark`` on unsupported claims.

        Text between sentences (spaces, line breaks) is kept as the model wrote it.
        """
        out = []
        at = 0
        for sentence in self.sentences:
            out.append(self.original[at : sentence.start])
            marks = "".join(f"[{n}]" for n in sentence.cited)
            if sentence.claim and not sentence.supported:
                marks += unsupported_mark
            out.append(_with_marks(sentence.text, marks))
            at = sentence.end
        out.append(self.original[at:])
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        """What an API client needs: the cited text, each sentence's check, and the flags."""
        return {
            "text": self.text,
            "cited": self.cited,
            "unsupported": [s.text for s in self.unsupported],
            "corrected": [s.text for s in self.corrected],
            "unknown_terms": self.unknown_terms,
            "sentences": [
                {
                    "text": s.text,
                    "cited": s.cited,
                    "model_cited": s.model_cited,
                    "supported": s.supported,
                    "corrected": s.corrected,
                    "claim": s.claim,
                    "unknown_terms": s.unknown_terms,
                }
                for s in self.sentences
            ],
        }


def split_sentences(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``, surrounding whitespace left out.

    A citation right after a full stop (``fact. [2]``) belongs to the sentence before it.
    """
    spans = []
    start = 0
    for match in _END.finditer(text):
        end = match.end()
        if match.group(0) != "\n" and match.group(0)[0] in ".!?…" and not _ends_sentence(text, match.start(), end):
            continue
        spans.append((start, end))
        start = end
    spans.append((start, len(text)))
    out = []
    for begin, end in spans:
        chunk = text[begin:end]
        if chunk.strip():
            lead = len(chunk) - len(chunk.lstrip())
            out.append((begin + lead, begin + len(chunk.rstrip())))
    return out


def _ends_sentence(text: str, stop: int, end: int) -> bool:
    """Whether the full stop at ``stop`` ends a sentence: not an abbreviation or initial, next word not lower-case."""
    following = text[end:].lstrip()
    if following[:1].islower():
        return False
    if text[stop] != ".":
        return True
    if re.fullmatch(r"\(?\d{1,3}", text[text.rfind("\n", 0, stop) + 1 : stop].strip()):
        return False  # a list item's number
    if re.search(r"\d\s?[A-Za-z]$", text[:stop]):
        return True  # a unit after a number ("253 V. The battery ..."), not an initial
    before = re.search(r"([\w.]+)$", text[:stop])
    word = before.group(1).lower() if before else ""
    return not (word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()))


def check_citations(
    answer: str,
    sources: Sequence[tuple[int, str]],
    *,
    question: str = "",
    embed: Embed | None = None,
    min_overlap: float = 0.5,
    min_similarity: float = 0.6,
    max_citations: int = 1,
) -> CitedAnswer:
    """Check and complete the citations of ``answer`` against the numbered ``sources``.

    Args:
        answer: The model's answer, with or without ``[n]`` markers.
        sources: ``(number, text)`` of each source the model was given.
        question: The question; its numbers and names are not flagged as unknown.
        embed: Optional embedder (texts -> vectors); a source sentence at cosine similarity
            ``min_similarity`` or more supports a sentence with half the usual word overlap.
        min_overlap: Share of a sentence's content words a source must hold to support it.
        min_similarity: See ``embed``.
        max_citations: Most citations attached to a sentence the model did not cite.
    """
    numbered = {int(n): text for n, text in sources}
    # A claim is checked against each passage of a source: a sentence and its neighbour, so a number
    # in one sentence and words in another (the battery's "10.2 kWh", a claim of "10.2 years") do not add up.
    # A number with its unit ("10.2 years") must stand with that unit in the passage too.
    source_terms = {n: _passages(text) for n, text in numbered.items()}
    known_words = set(words(question))
    for text in numbered.values():
        known_words |= set(words(text))
    known_numbers = {w.replace(",", "") for w in known_words if has_digit(w)}
    # The question's quantities need not be in a passage ("Is 48 V enough?" -> "yes, 40 to 60 V"),
    # but a code it names (E116) must: a passage about E106 does not say what E116 means.
    question_numbers = {w.replace(",", "") for w in words(question) if has_digit(w) and not has_letter(w)}
    spans = split_sentences(answer)
    bodies = [_body(answer[a:b]) for a, b in spans]
    similarity = _similarities(bodies, numbered, embed) if embed is not None else None

    checks = []
    for index, ((start, end), body) in enumerate(zip(spans, bodies, strict=True)):
        model_cited = _cited(answer[start:end])
        claim_text = _LIST_MARKER.sub("", body)
        terms = content_words(claim_text)
        numbers = {t for t in terms if has_digit(t)} - question_numbers
        units = {pair for pair in _units(claim_text) if pair[0] in numbers}
        claim = bool(terms) and not _NO_CLAIM.search(claim_text) and not claim_text.rstrip().endswith(("?", "？"))
        scores: dict[int, float] = {}
        claim_clauses = [(words & terms, negated) for words, negated in _clauses(claim_text)]
        for n, passages in source_terms.items():
            fitting = [
                held
                for held, pairs, sentences in passages
                if numbers <= held and units <= pairs and _agrees(claim_clauses, sentences)
            ]
            if not fitting:
                continue  # no passage of the source has the sentence's numbers: it cannot support it
            overlap = max(len(terms & held) / len(terms) if terms else 0.0 for held in fitting)
            close = similarity is not None and similarity[index].get(n, 0.0) >= min_similarity
            if overlap >= min_overlap or (close and overlap >= min_overlap / 2):
                scores[n] = overlap + (similarity[index].get(n, 0.0) if similarity is not None else 0.0)
        supporting = sorted(scores, key=lambda n: (-scores[n], n))
        valid = [n for n in model_cited if n in scores]
        wrong = bool(model_cited) and len(valid) < len(model_cited)
        if valid:
            cited = valid
        elif claim:
            cited = supporting[: max(1, len(model_cited)) if model_cited else max_citations]
        else:
            cited = []
        checks.append(
            SentenceCheck(
                text=body,
                cited=cited,
                supported=bool(cited) or not claim,
                corrected=wrong,
                unknown_terms=_unknown(claim_text, known_words, known_numbers),
                model_cited=model_cited,
                claim=claim,
                start=start,
                end=end,
            )
        )
    return CitedAnswer(answer, checks, len(numbered))


Passage = tuple[set[str], set[tuple[str, str]], list[tuple[set[str], bool]]]  # words, units, clauses


def _passages(text: str) -> list[Passage]:
    """Each window of two neighbouring sentences of ``text``: its content words, its number-unit pairs,
    and each of its clauses' content words and whether the clause is negated."""
    pieces = [text[a:b] for a, b in split_sentences(text)] or [text]
    sentences = [(content_words(piece), _units(piece), _clauses(piece)) for piece in pieces]
    windows = [sentences] if len(sentences) == 1 else [list(pair) for pair in itertools.pairwise(sentences)]
    return [
        (set().union(*(w[0] for w in window)), set().union(*(w[1] for w in window)), [c for w in window for c in w[2]])
        for window in windows
    ]


def _clauses(sentence: str) -> list[tuple[set[str], bool]]:
    """Content words and negation of each clause of ``sentence`` ("No action needed; it reconnects" is two)."""
    parts = [part for part in _CLAUSE.split(sentence) if part and part.strip()]
    return [(content_words(part), _negated(part)) for part in parts] or [(set(), False)]


def _negated(text: str) -> bool:
    """Whether ``text`` says "not" (or "never", "cannot", "n't", "kein", ...), "not only" aside."""
    found = words(text)
    return any(
        (word in _NEGATIONS or word.endswith("n't")) and not (word == "not" and following == "only")
        for word, following in itertools.zip_longest(found, found[1:], fillvalue="")
    )


def _agrees(claim: list[tuple[set[str], bool]], clauses: list[tuple[set[str], bool]]) -> bool:
    """Whether each clause of a claim meets a passage clause that shares most of its words and is negated
    exactly when it is ("outside the range, or in a place that does not meet the clearances" is two)."""
    for terms, negated in claim:
        if not terms or (len(terms) < 2 and not negated):
            continue  # a bare answer ("20%", "Russia") states no predicate that a "no" nearby could deny
        most = max(len(terms & words) for words, _ in clauses)
        if not any(len(terms & words) == most and is_negated == negated for words, is_negated in clauses):
            return False
    return True


def _units(text: str) -> set[tuple[str, str]]:
    """``(number, stem of the word after it)`` for each quantity followed by a word that is not a stopword."""
    found = [w for _, _, w in word_spans(text)]
    return {
        (word.replace(",", ""), stem(after))
        for word, after in itertools.pairwise(found)
        if _NUMBER.fullmatch(word) and after.isalpha() and after not in STOPWORDS
    }


def _cited(sentence: str) -> list[int]:
    found = []
    for group in _CITATION.findall(sentence):
        found += [int(n) for n in re.findall(r"\d+", group)]
    return list(dict.fromkeys(found))


def _body(sentence: str) -> str:
    """A sentence without its citation markers (and the spaces they leave)."""
    body = _CITATION.sub("", sentence)
    return re.sub(r"\s+([.,;:!?。！？])", r"\1", body).strip()


def _unknown(sentence: str, known_words: set[str], known_numbers: set[str]) -> list[str]:
    """Numbers, and capitalised words past the first, of ``sentence`` that no source or the question has."""
    found = []
    for position, (start, end, word) in enumerate(word_spans(sentence)):
        raw = sentence[start:end]
        if has_digit(word):
            if word.replace(",", "") not in known_numbers:
                found.append(raw)
        elif position > 0 and raw[:1].isupper() and word not in known_words and word not in _NOT_NAMES:
            found.append(raw)
    return list(dict.fromkeys(found))


def _with_marks(sentence: str, marks: str) -> str:
    if not marks:
        return sentence
    final = _FINAL_PUNCT.search(sentence)
    head, tail = (sentence[: final.start()], final.group(0)) if final else (sentence, "")
    cjk = bool(head[-1:]) and re.match(rf"[{_CJK}]", head[-1]) is not None
    gap = "" if cjk or marks[0].isspace() else " "
    return f"{head}{gap}{marks}{tail}"


def _similarities(bodies: list[str], sources: dict[int, str], embed: Embed) -> list[dict[int, float]]:
    """For each answer sentence, the best cosine similarity to a sentence of each source."""
    import numpy as np

    pieces: list[tuple[int, str]] = [
        (n, text[a:b]) for n, text in sources.items() for a, b in split_sentences(text) if text[a:b].strip()
    ]
    if not bodies or not pieces:
        return [{} for _ in bodies]
    vectors = np.asarray(embed([*bodies, *(p for _, p in pieces)]), dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    cosine = vectors[: len(bodies)] @ vectors[len(bodies) :].T
    best: list[dict[int, float]] = [{} for _ in bodies]
    for column, (n, _) in enumerate(pieces):
        for row in range(len(bodies)):
            value = float(cosine[row, column])
            if value > best[row].get(n, -1.0):
                best[row][n] = value
    return best
