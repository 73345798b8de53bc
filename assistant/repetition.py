"""Answers that cannot loop: find where a reply starts repeating itself, and stop it there.

Small models fall into loops: a sentence said again and again, one phrase
repeated to the token limit, a numbered list whose items are all the same, or a
made-up "Question: ... Answer: ..." exchange after a correct answer. A
:class:`LoopGuard` reads a reply as it streams, from any backend (it only sees
text), stops at the first sign of such a loop and keeps the reply up to the end
of the first occurrence. It also holds back text that may turn out to be a
repeat (a sentence that so far matches an earlier one, a line that starts like
``Question:``), so a stopped loop is rarely shown at all.

The rules, each on the words of the reply (lower-cased, punctuation and
citation markers ignored, each CJK character a word):

- ``repeated_phrase``: a run of words repeated back to back, at least 3 times
  and 10 words in all ("no no no ...", "the battery the battery the battery ...");
- ``repeated_ngram``: the same ``ngram`` words (8) occurring ``ngram_repeats``
  times (3) anywhere;
- ``repeated_sentence``: a sentence of at least ``sentence_words`` words (4)
  said a second time;
- ``runaway_list``: ``list_lines`` lines (4) in a row that are the same but for
  their numbers (with at least 3 other words) or exactly the same, or
  ``similar_lines`` lines (6) in a row each nearly the same as the one before;
- ``invented_turn``: after some answer text, a line or sentence that starts
  with ``Question:``, ``Q:``, ``User:``, ``Answer:``... (the model writing the
  rest of a conversation).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from assistant.words import word_spans

__all__ = ["Loop", "LoopGuard", "find_loop", "guard_stream", "stopping_criteria", "trim_loop"]

_CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u3000-\u303f\uff01-\uff1f"
_STABLE = re.compile(rf"[\s{_CJK_CHARS}]")  # text up to the last such character is tokenised for good
# A sentence ends at . ! ? … followed by space (citation markers stay with it), at CJK 。！？ or a line break.
_UNIT_END = re.compile(r"[.!?…]+(?:\s*\[\d{1,3}\])*(?=\s)|[。！？]+(?:\[\d{1,3}\])*|\n")
_CITATION = re.compile(r"\[\d{1,3}(?:\s*,\s*\d{1,3})*\]")
_LIST_MARKER = re.compile(r"^\s*(?:[-*•·–]|\(?\d{1,3}[.)]|[a-zA-Z][.)])\s+")
_TURN = re.compile(
    r"(?:^|(?<=\n)|(?<=[.!?。！？]\s))[ \t]*(?:#{1,4}\s*|\*\*)?"
    r"(?:question|q|user|human|answer|a|assistant)[ \t]*\d{0,3}[ \t]*\**[ \t]*[:：]",
    re.IGNORECASE,
)
_TURN_LABELS = ("question", "q", "user", "human", "answer", "a", "assistant")
_TRAILING = " \t\r\n,;:-–—(["


@dataclass(frozen=True)
class Loop:
    """Where a reply started repeating: keep ``text[:cut]``; ``repeated`` is the text that repeats."""

    kind: str  # repeated_phrase | repeated_ngram | repeated_sentence | runaway_list | invented_turn
    cut: int
    repeated: str


@dataclass
class _Unit:
    start: int
    key: tuple[str, ...]


@dataclass
class LoopGuard:
    """Reads a reply piece by piece and stops it at the first loop (see the module docstring for the rules).

    ``feed`` returns the text that is safe to show now; ``finish`` returns the rest once
    the reply has ended. ``text`` is the reply without its loop, ``loop`` what was found,
    and ``retracted`` the part already shown that lies beyond the cut (rare: a repeat
    only recognisable late, such as a repeated 8-word phrase inside a new sentence).

    Args:
        sentence_words: Shortest sentence (in words) whose second occurrence is a loop.
        ngram: Length in words of a phrase whose repeated occurrence is a loop.
        ngram_repeats: How many occurrences of such a phrase make a loop.
        phrase_words: Fewest words a back-to-back repeated run must span.
        list_lines: Lines in a row, equal but for their numbers, that make a runaway list.
        similar_lines: Lines in a row, each nearly equal to the previous one, that make a runaway list.
        max_period: Longest run of words (in words) checked for back-to-back repetition.
    """

    sentence_words: int = 4
    ngram: int = 8
    ngram_repeats: int = 3
    phrase_words: int = 10
    list_lines: int = 4
    similar_lines: int = 6
    max_period: int = 32
    raw: str = field(default="", init=False)
    loop: Loop | None = field(default=None, init=False)
    shown: int = field(default=0, init=False)  # raw[:shown] was returned by feed or finish
    _pos: int = field(default=0, init=False, repr=False)  # raw[:_pos] has been split into words
    _unit_pos: int = field(default=0, init=False, repr=False)  # start of the sentence being read
    _line_pos: int = field(default=0, init=False, repr=False)  # start of the line being read
    _words: list[tuple[int, int, str]] = field(default_factory=list, init=False, repr=False)
    _runs: list[int] = field(default_factory=list, init=False, repr=False)  # per period p: words equal to p back
    _ngrams: dict[tuple[str, ...], list[int]] = field(default_factory=dict, init=False, repr=False)
    _seen: set[tuple[str, ...]] = field(default_factory=set, init=False, repr=False)  # sentence keys
    _prefixes: set[tuple[str, ...]] = field(default_factory=set, init=False, repr=False)  # their prefixes
    _lines: list[tuple[int, list[str]]] = field(default_factory=list, init=False, repr=False)  # similar run
    _equal_run: int = field(default=0, init=False, repr=False)
    _similar_run: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._runs = [0] * (self.max_period + 1)

    @property
    def stopped(self) -> bool:
        return self.loop is not None

    @property
    def text(self) -> str:
        """The reply so far, cut before its loop."""
        return self.raw[: self.loop.cut] if self.loop else self.raw

    @property
    def retracted(self) -> str:
        """Text already returned by ``feed`` that lies beyond the cut."""
        gone = self.raw[self.loop.cut : self.shown] if self.loop and self.shown > self.loop.cut else ""
        return gone if gone.strip() else ""

    def feed(self, piece: str) -> str:
        """Add ``piece`` of the reply; return the text that may be shown now ("" once stopped)."""
        if self.loop:
            return ""
        self.raw += piece
        stable = 0
        for match in _STABLE.finditer(self.raw, self._pos):
            stable = match.end()
        self._scan(max(stable, self._pos))
        return self._release(final=False)

    def finish(self) -> str:
        """The reply has ended: check its last sentence and line, and return the text still held back."""
        if not self.loop:
            self._scan(len(self.raw), final=True)
        return self._release(final=True)

    # -- scanning ---------------------------------------------------------------------------------------------

    def _scan(self, upto: int, final: bool = False) -> None:
        """Read ``raw`` up to ``upto`` in order: its words, and each sentence and line as it ends."""
        for match in _UNIT_END.finditer(self.raw, self._unit_pos, upto):
            self._words_upto(match.end())
            if self.loop:
                return
            self._unit(self._unit_pos, match.end())
            if not self.loop and match.group(0) == "\n":
                self._line(self._line_pos, match.start())
                self._line_pos = match.end()
            if self.loop:
                return
            self._unit_pos = match.end()
        self._words_upto(upto)
        if not self.loop:
            self._turns(upto)
        if final and not self.loop:
            self._unit(self._unit_pos, len(self.raw))
            if not self.loop:
                self._line(self._line_pos, len(self.raw))

    def _words_upto(self, end: int) -> None:
        if end <= self._pos:
            return
        for start, stop, word in word_spans(self.raw[self._pos : end]):
            self._word(self._pos + start, self._pos + stop, word)
            if self.loop:
                return
        self._pos = end

    def _word(self, start: int, end: int, word: str) -> None:
        self._words.append((start, end, word))
        n = len(self._words) - 1
        for p in range(1, min(self.max_period, n) + 1):
            run = self._runs[p] + 1 if self._words[n - p][2] == word else 0
            self._runs[p] = run
            if run and run + p >= max(3 * p, self.phrase_words) and run % p == 0:
                first = n - run - p + 1  # the repetition's first word
                second = self._words[first + p][0]
                self._stop("repeated_phrase", second, self.raw[self._words[first][0] : second])
                return
        if n + 1 >= self.ngram:
            gram = tuple(w for _, _, w in self._words[n + 1 - self.ngram :])
            starts = self._ngrams.setdefault(gram, [])
            if not starts or starts[-1] + self.ngram <= n + 1 - self.ngram:
                starts.append(n + 1 - self.ngram)
            if len(starts) >= self.ngram_repeats:
                first_end = self._words[starts[0] + self.ngram - 1][1]
                second = self._words[starts[1]][0]
                unit = _sentence_start(self.raw, second)
                # mid-sentence, the cut falls back to the last clause break after the first occurrence:
                # "...from the energy meter" rather than "...from the energy meter, which means that"
                clause = max(self.raw.rfind(mark, first_end, second) for mark in ",;:")
                cut = unit if unit >= first_end else clause if clause >= first_end else second
                self._stop("repeated_ngram", cut, self.raw[self._words[starts[0]][0] : first_end])

    def _unit(self, start: int, end: int) -> None:
        key = _key(self.raw[start:end])
        if len(key) < self.sentence_words:
            return
        if key in self._seen:
            self._stop("repeated_sentence", _line_start_if_marker(self.raw, start), self.raw[start:end].strip())
            return
        self._seen.add(key)
        self._prefixes.update(key[:i] for i in range(1, len(key) + 1))

    def _line(self, start: int, end: int) -> None:
        line = self.raw[start:end]
        body = [w for _, _, w in word_spans(_LIST_MARKER.sub("", _CITATION.sub("", line)))]
        if not body:
            return  # blank lines neither break nor extend a run
        previous = self._lines[-1][1] if self._lines else None
        masked = _masked(body)
        equal = previous is not None and (
            body == previous or (masked == _masked(previous) and len(masked) - masked.count("#") >= 3)
        )
        similar = (
            previous is not None
            and min(len(body), len(previous)) >= 4
            and difflib.SequenceMatcher(None, previous, body).ratio() >= 0.8
        )
        self._equal_run = self._equal_run + 1 if equal else 1
        self._similar_run = self._similar_run + 1 if similar else 1
        self._lines = [*self._lines, (start, body)] if equal or similar else [(start, body)]
        if self._equal_run >= self.list_lines or self._similar_run >= self.similar_lines:
            run = max(self._equal_run, self._similar_run)
            first, second = self._lines[-run][0], self._lines[-run + 1][0]
            self._stop("runaway_list", second, self.raw[first:second].strip())

    def _turns(self, upto: int) -> None:
        for match in _TURN.finditer(self.raw, 0, upto):
            if word_spans(self.raw[: match.start()]):
                self._stop("invented_turn", match.start(), match.group(0).strip())
                return

    def _stop(self, kind: str, cut: int, repeated: str) -> None:
        self.loop = Loop(kind, _clean_cut(self.raw, cut), repeated)

    # -- releasing --------------------------------------------------------------------------------------------

    def _release(self, final: bool) -> str:
        if self.loop:
            safe = self.loop.cut
        elif final:
            safe = len(self.raw)
        else:
            # the word being written (after the last space) is held until it is complete
            safe = min(self._pos, self._hold_sentence(), self._hold_turn(), self._hold_phrase())
        out = self.raw[self.shown : safe] if safe > self.shown else ""
        self.shown = max(self.shown, safe)
        return out

    def _hold_sentence(self) -> int:
        """The start of the sentence being written when it so far repeats the start of an earlier one."""
        key = _key(self.raw[self._unit_pos : self._pos])
        if key and key in self._prefixes:
            return _line_start_if_marker(self.raw, self._unit_pos)
        return len(self.raw)

    def _hold_turn(self) -> int:
        """The start of a line (or sentence) that so far reads like the start of ``Question:`` and the like."""
        begin = max(self._line_pos, self._unit_pos)
        head = self.raw[begin:].lstrip(" \t#*").lower()
        if head and word_spans(self.raw[:begin]):
            label = re.sub(r"[\s\d*]+", "", head.rstrip(":："))
            if any(name.startswith(label) for name in _TURN_LABELS) and len(head) <= 16:
                return begin
        return len(self.raw)

    def _hold_phrase(self) -> int:
        """The start of the second copy of words being repeated back to back at the end of the reply."""
        n = len(self._words)
        hold = len(self.raw)
        for p in range(1, min(self.max_period, n - 1) + 1):
            run = self._runs[p]
            if run >= p:
                hold = min(hold, self._words[n - run][0])
        return hold


def find_loop(text: str, **thresholds: Any) -> Loop | None:
    """The first loop in a whole reply, or None. ``thresholds`` are :class:`LoopGuard`'s arguments."""
    guard = LoopGuard(**thresholds)
    guard.feed(text)
    guard.finish()
    return guard.loop


def trim_loop(text: str, **thresholds: Any) -> str:
    """``text`` up to its first loop (all of it when there is none)."""
    loop = find_loop(text, **thresholds)
    return text[: loop.cut] if loop else text


def guard_stream(pieces: Iterable[str], guard: LoopGuard | None = None) -> Iterator[str]:
    """Yield the pieces of a streamed reply that are safe to show, and stop reading at a loop.

    When a loop is found the source iterator is closed, which ends the generation
    (a local model's thread, an HTTP stream). Read ``guard.text`` afterwards for the
    reply without its loop.

    Args:
        pieces: The reply as it streams, e.g. ``model.stream(...)``.
        guard: The guard to use (pass one to read ``text`` and ``loop`` after); a new one by default.
    """
    guard = guard if guard is not None else LoopGuard()
    source = iter(pieces)
    try:
        for piece in source:
            shown = guard.feed(piece)
            if shown:
                yield shown
            if guard.stopped:
                break
        rest = guard.finish()
        if rest:
            yield rest
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def stopping_criteria(tokenizer: Any, prompt_length: int, **thresholds: Any) -> Any:
    """A transformers ``StoppingCriteria`` that ends generation at the first loop of each sequence.

    It decodes the new tokens at every step and runs a :class:`LoopGuard` per
    sequence; ``criteria.guards[i].text`` is then reply ``i`` without its loop
    (generation stops a few tokens past the cut). Use it with any decoding
    setting; it needs no streamer.

    Args:
        tokenizer: The model's tokenizer (for ``decode``).
        prompt_length: Length of the prompt in tokens (input_ids columns before the reply).
        thresholds: :class:`LoopGuard`'s arguments.
    """
    import torch
    from transformers import StoppingCriteria

    class LoopStoppingCriteria(StoppingCriteria):
        def __init__(self) -> None:
            self.guards: list[LoopGuard] = []
            self.decoded: list[str] = []

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            rows = input_ids.shape[0]
            while len(self.guards) < rows:
                self.guards.append(LoopGuard(**thresholds))
                self.decoded.append("")
            done = []
            for i in range(rows):
                # a character still missing bytes decodes as U+FFFD: wait for the rest of it
                text = tokenizer.decode(input_ids[i, prompt_length:], skip_special_tokens=True).rstrip("\ufffd")
                if not text.startswith(self.decoded[i]):  # decoding changed earlier text: read it again
                    self.guards[i], self.decoded[i] = LoopGuard(**thresholds), ""
                self.guards[i].feed(text[len(self.decoded[i]) :])
                self.decoded[i] = text
                done.append(self.guards[i].stopped)
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return LoopStoppingCriteria()


def _masked(words: list[str]) -> list[str]:
    return ["#" if any(ch.isdigit() for ch in w) else w for w in words]


def _key(sentence: str) -> tuple[str, ...]:
    """A sentence's words without citation markers or a leading list marker."""
    return tuple(w for _, _, w in word_spans(_LIST_MARKER.sub("", _CITATION.sub("", sentence))))


def _sentence_start(text: str, at: int) -> int:
    """The start of the sentence holding position ``at``."""
    start = 0
    for match in _UNIT_END.finditer(text, 0, at):
        start = match.end()
    while start < at and text[start].isspace():
        start += 1
    return start


def _line_start_if_marker(text: str, at: int) -> int:
    """``at``, or the start of its line when only a list marker stands between them."""
    line = text.rfind("\n", 0, at) + 1
    before = text[line:at]
    return line if before.strip() and _LIST_MARKER.fullmatch(before + " ") else at


def _clean_cut(text: str, cut: int) -> int:
    """Move a cut back over whitespace, separators and a dangling list marker."""
    while True:
        previous = cut
        while cut > 0 and text[cut - 1] in _TRAILING:
            cut -= 1
        line = text.rfind("\n", 0, cut) + 1
        if _LIST_MARKER.fullmatch(text[line:cut] + " "):
            cut = line
        if cut == previous:
            return cut
