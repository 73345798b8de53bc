"""Synthetic training data from the ingested chunks: questions from answers, context examples, tool tasks.

- :func:`extractive_questions` turns a chunk's sentences into question/answer
  pairs without a model: it picks an answer span (a quantity, a year, a name, a
  code, or what a subject "is") and asks for it. Deterministic for a seed.
- :func:`llm_questions` asks any chat model for pairs and keeps only those whose
  answer is copied from the chunk.
- :func:`context_chunks` picks the chunks a context example shows: the right one
  among look-alike distractors (RAFT), or only distractors, to learn to abstain.
- :func:`tool_tasks` writes tasks for the agent's tools (arithmetic, dates,
  document search, listing, and chat that needs no tool); the assistant turns
  each into the exact prompt the agent would build.

Every pair keeps the id of the chunk it came from.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ingest.config import IngestConfig

Message = dict[str, Any]


@dataclass
class Chunk:
    """One stored chunk, as training data sees it."""

    id: str
    text: str
    metadata: dict[str, Any]
    embedding: Any = None  # numpy vector when the store returned one

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", ""))


@dataclass
class QA:
    """A question, its short answer (a span of ``sentence``), and the chunk both came from."""

    question: str
    answer: str
    sentence: str
    chunk_id: str
    source: str


@dataclass
class ToolTask:
    """A request and the tool calls that serve it; the assistant renders it as the agent's prompt.

    ``answer`` may hold ``{result}`` (the first call's output), ``{value}`` (the part
    after its last ``=``) and ``{cite}`` (the citation number of ``cite_chunk``).
    """

    kind: str
    question: str
    calls: list[tuple[str, dict[str, Any]]]
    answer: str
    cite_chunk: str = ""
    chunk_ids: list[str] = field(default_factory=list)


def load_chunks(config: IngestConfig, limit: int = 0, embeddings: bool = True) -> list[Chunk]:
    """Every chunk of the configured collection (the first ``limit`` by id when limit > 0), in a stable order.

    Raises:
        FinetuneError: the collection is missing or empty.
    """
    import numpy as np

    from finetune.errors import FinetuneError
    from ingest import store

    client = store.open_client(config.home_path, config.chroma_url)
    collection = store.open_collection(client, config.collection, config.embedding_model, create=False)
    if collection is None or collection.count() == 0:
        raise FinetuneError(
            f"collection {config.collection!r} holds no documents: run `ragtune ingest PATH` first "
            "(or `ragtune ingest` for the sample corpus)"
        )
    include: Any = ["documents", "metadatas", *(["embeddings"] if embeddings else [])]
    chunks: list[Chunk] = []
    page = 1000
    for offset in range(0, collection.count(), page):
        got: Any = collection.get(include=include, limit=page, offset=offset)
        vectors = got.get("embeddings")
        for n, chunk_id in enumerate(got["ids"]):
            vector = np.asarray(vectors[n], dtype=np.float32) if vectors is not None else None
            chunks.append(Chunk(chunk_id, got["documents"][n] or "", dict(got["metadatas"][n] or {}), vector))
    chunks.sort(key=lambda c: (c.source, int(c.metadata.get("chunk_index", 0) or 0), c.id))
    return chunks[:limit] if limit else chunks


# questions from answers -----------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")
_UNITS = (
    r"%|percent|kWh|Wh|kW|W|V|A|mAh|Ah|°C|°F|mm|cm|km|m|kg|g|lb|lbs|GB|MB|TB|Hz|kHz|MHz|GHz|"
    r"years?|months?|weeks?|days?|hours?|minutes?|seconds?|miles?|metres?|meters?|feet|inches|dollars?|euros?"
)
_QUANTITY = re.compile(rf"(?<![\w.])(\$?\d[\d,]*(?:\.\d+)?\s?(?:{_UNITS}))(?![\w])")
_YEAR = re.compile(r"(?<![\w.])((?:1[0-9]|20)\d\d)(?![\w.])")
_COUNT = re.compile(r"(?<![\w.-])(\d[\d,]*) ([a-z]{3,}s)\b")
_NAME = re.compile(r"(?:(?<=\s)|^)([A-Z][\w'-]*[a-z0-9][\w'-]*(?:\s+(?:of\s+|the\s+|and\s+|de\s+)?[A-Z][\w'-]+)*)")
_CODE = re.compile(r"(?<![\w-])([A-Z]{1,4}-?\d{1,5}[A-Za-z]?)(?![\w-])")
_COPULA = re.compile(r"^(?P<subject>[A-Z][^,;:]{2,60}?) (?P<verb>is|are|was|were) (?P<rest>[^;]{3,120})$")
_STARTERS = {
    "It",
    "This",
    "That",
    "These",
    "Those",
    "There",
    "They",
    "He",
    "She",
    "We",
    "You",
    "I",
    "If",
    "When",
    "Once",
    "While",
    "Although",
    "Because",
    "Since",
    "Until",
    "Unless",
    "So",
    "But",
    "And",
    "Or",
}
_ARTICLES = {
    "The",
    "A",
    "An",
    "Its",
    "Their",
    "Your",
    "Our",
    "Each",
    "Every",
    "All",
    "Some",
    "Most",
    "My",
    "His",
    "Her",
}
_NOT_NAMES = _STARTERS | {"The", "A", "An", "In", "On", "At", "For", "To", "Of", "As", "By", "After", "Before", "Each"}


def sentences(text: str) -> list[str]:
    """Prose sentences of a chunk: markup, table rows and fragments are skipped."""
    out = []
    for raw in _SENTENCE_END.split(text):
        line = re.sub(r"^[#>*\-\s\d.)]+(?=[A-Z])", "", raw.strip())  # headings, bullets, numbering
        line = re.sub(r"[*_`]+", "", line).strip()
        words = line.split()
        if not 5 <= len(words) <= 45 or "|" in line or line.count(",") > len(words) / 3:
            continue
        letters = sum(ch.isalpha() for ch in line)
        if letters < 0.6 * len(line.replace(" ", "")):
            continue
        out.append(line)
    return out


def _question_from(sentence: str) -> Iterator[tuple[str, str]]:
    """Candidate (question, answer) pairs of one sentence, best kinds first."""
    body = sentence.rstrip(" .!?;:")
    copula = _COPULA.match(body)
    if copula and copula.group("subject").split()[0] not in _STARTERS:
        subject = copula.group("subject")
        subject = subject[0].lower() + subject[1:] if subject.split()[0] in _ARTICLES else subject
        rest = copula.group("rest")
        if len(rest.split()) <= 8 and "," not in rest and not rest.split()[0].endswith(("ed", "ing")):
            yield f"What {copula.group('verb')} {subject}?", rest
    seen: set[str] = set()
    for pattern, wh in ((_QUANTITY, "how much"), (_YEAR, "in what year"), (_CODE, "what"), (_NAME, "what")):
        for match in pattern.finditer(body):
            span = match.group(1)
            if span in seen or body.count(span) > 1:
                continue
            seen.add(span)
            before, after = body[: match.start(1)], body[match.end(1) :]
            if pattern is _YEAR:
                if before.endswith(("the ", ", ")):
                    continue
                wh = "in what year" if before.endswith("in ") else "what year"
                before = before[:-3] if before.endswith("in ") else before
            if pattern is _NAME and span.split()[0] in _NOT_NAMES:
                continue
            if not before:  # the subject: "Brightwell Energy makes it" -> "What makes it?"
                if len(span.split()) > 1 and after[:2].strip() == "" and after.strip()[:1].islower():
                    yield _echo("What" + after), span
            else:
                yield _echo(before + wh + after), span
    for match in _COUNT.finditer(body):
        number = match.group(1)
        if body.count(number) == 1:
            yield _echo(body[: match.start(1)] + "how many" + body[match.end(1) :]), number


def _echo(text: str) -> str:
    text = " ".join(text.split())
    return text[0].upper() + text[1:] + "?"


def extractive_questions(chunk: Chunk, count: int, seed: int = 0) -> list[QA]:
    """Up to ``count`` question/answer pairs from different sentences of ``chunk``, without a model.

    Args:
        chunk: The chunk to ask about.
        count: Most pairs to return.
        seed: Picks among sentences and answer kinds, reproducibly.
    """
    rng = random.Random(f"{seed}:{chunk.id}")
    pairs: list[QA] = []
    candidates = sentences(chunk.text)
    rng.shuffle(candidates)
    for sentence in candidates:
        options = [(q, a) for q, a in _question_from(sentence) if 3 <= len(q.split()) <= 40 and a.strip()]
        if not options:
            continue
        question, answer = options[0] if rng.random() < 0.6 else rng.choice(options)
        pairs.append(QA(question, answer.strip(), sentence, chunk.id, chunk.source))
        if len(pairs) >= count:
            break
    return pairs


LLM_PROMPT = (
    "Read the passage and write {count} question(s) that it answers, each with a short answer copied word for "
    "word from the passage. Reply with lines of the form:\nQ: <question>\nA: <answer>\n\nPassage:\n{text}"
)


def llm_questions(chunk: Chunk, count: int, generate: Callable[[list[Message]], str]) -> list[QA]:
    """Question/answer pairs written by a chat model; answers not found in the chunk are dropped.

    Args:
        chunk: The chunk to ask about.
        count: Pairs to ask for.
        generate: Returns the model's reply to a chat (any backend).
    """
    reply = generate([{"role": "user", "content": LLM_PROMPT.format(count=count, text=chunk.text)}])
    pairs = []
    for question, answer in re.findall(r"Q:\s*(.+?)\s*\n\s*A:\s*(.+)", reply):
        answer = answer.strip().strip('"').rstrip(".")
        if not question.endswith("?") or not answer or answer.lower() not in chunk.text.lower():
            continue
        sentence = next((s for s in sentences(chunk.text) if answer.lower() in s.lower()), answer)
        pairs.append(QA(question.strip(), answer, sentence, chunk.id, chunk.source))
    return pairs[:count]


def styled_answer(qa: QA, style: str) -> str:
    """The answer to train on: the span, the supporting sentence, or the sentence then the span."""
    if style == "sentence":
        return qa.sentence.rstrip() if qa.sentence.endswith((".", "!", "?")) else qa.sentence + "."
    if style == "rationale":
        return f"{qa.sentence.rstrip(' .')}. So the answer is {qa.answer}."
    return qa.answer


# context examples (RAFT) -----------------------------------------------------------------


class Neighbours:
    """Chunks most similar to a given one: hard distractors.

    By stored embedding where the chunk has one; otherwise (passages of grounded
    examples) the nearest passages of the same source, in document order.
    """

    def __init__(self, chunks: list[Chunk]) -> None:
        import numpy as np

        self.chunks = chunks
        self.index = {c.id: n for n, c in enumerate(chunks)}
        self.embedded = [n for n, c in enumerate(chunks) if c.embedding is not None]
        self.rows = {n: row for row, n in enumerate(self.embedded)}
        self.by_source: dict[str, list[int]] = {}
        for n, c in enumerate(chunks):
            self.by_source.setdefault(c.source, []).append(n)
        self.matrix = None
        if self.embedded:
            matrix = np.stack([chunks[n].embedding for n in self.embedded])
            self.matrix = matrix / np.clip(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-9, None)

    def near(self, chunk_id: str, count: int) -> list[Chunk]:
        import numpy as np

        n = self.index[chunk_id]
        if self.matrix is not None and n in self.rows:
            order = np.argsort(-(self.matrix @ self.matrix[self.rows[n]]))[: count + 1]
            return [self.chunks[self.embedded[i]] for i in order if self.embedded[i] != n][:count]
        same = sorted((i for i in self.by_source[self.chunks[n].source] if i != n), key=lambda i: abs(i - n))
        return [self.chunks[i] for i in same[:count]]


RANKED_SHARE = 0.7  # context examples shown in ranked order; about retrieval's recall@1 on SQuAD chunks


def context_chunks(qa: QA, neighbours: Neighbours, count: int, golden: bool, rng: random.Random) -> list[Chunk]:
    """The chunks a context example shows: ``count`` distractors (similar ones first) plus, if ``golden``, the source.

    A distractor never contains the answer, so "only distractors" really lacks it.
    Mostly (``RANKED_SHARE``) they come in the order retrieval would rank them,
    most words shared with the question first, so the prompt places them as it
    does for a real question (the best source last, next to the question); the
    rest are shuffled, so the right source is also learnt where retrieval ranks it lower.
    """
    chunks = neighbours.chunks
    gold = chunks[neighbours.index[qa.chunk_id]]
    answer = qa.answer.lower()
    similar = [c for c in neighbours.near(qa.chunk_id, count * 3) if answer not in c.text.lower()]
    picked = rng.sample(similar, min(len(similar), max(count - 1, 1))) if similar else []
    tries = 0
    while len(picked) < count and tries < 20 * count and len(chunks) > 1:
        tries += 1
        other = rng.choice(chunks)
        if other.id != gold.id and other not in picked and answer not in other.text.lower():
            picked.append(other)
    shown = picked[:count] + ([gold] if golden else [])
    rng.shuffle(shown)  # ties keep a random order
    if rng.random() < RANKED_SHARE:
        words = _words(qa.question)
        shown.sort(key=lambda c: -len(words & _words(c.text)))
    return shown


def _words(text: str) -> set[str]:
    """Lower-cased words of three letters or more: the overlap :func:`context_chunks` ranks by."""
    return {w for w in re.findall(r"\w{3,}", text.lower())}


# tool tasks -------------------------------------------------------------------------------

_ARITHMETIC = [
    ("What is {a} times {b}?", "{a} * {b}", "{a} times {b} is {value}."),
    ("Multiply {a} by {b}.", "{a} * {b}", "{a} multiplied by {b} is {value}."),
    ("How much is {a} plus {b}?", "{a} + {b}", "{a} plus {b} is {value}."),
    ("Add {a} and {b}.", "{a} + {b}", "The sum is {value}."),
    ("What do you get if you subtract {b} from {a}?", "{a} - {b}", "{a} minus {b} is {value}."),
    ("What is {a} divided by {b}?", "{a} / {b}", "{a} divided by {b} is {value}."),
    ("Calculate ({a} + {b}) * {c}.", "({a} + {b}) * {c}", "({a} + {b}) × {c} = {value}."),
    ("What is {p}% of {a}?", "{p} / 100 * {a}", "{p}% of {a} is {value}."),
    ("What is the square root of {sq}?", "sqrt({sq})", "The square root of {sq} is {value}."),
    ("What is {c} to the power of {n}?", "{c} ^ {n}", "{c} to the power of {n} is {value}."),
    ("If I have {a} items and use {b}, how many are left?", "{a} - {b}", "{value} are left."),
    ("Split {a} equally among {c} people: how much does each get?", "{a} / {c}", "Each gets {value}."),
    ("What is {n} factorial?", "{n}!", "{n}! is {value}."),
    ("Compute {a} * {b} - {c}.", "{a} * {b} - {c}", "{a} × {b} − {c} = {value}."),
]
_DATES = [
    ("What is the date today?", {}, "Today is {result}."),
    ("Which day of the week is it?", {}, "It is {result}."),
    ("What time is it right now?", {}, "It is {result}."),
    ("What year are we in?", {}, "It is {result}."),
    ("What time is it in {city}?", {"timezone": "{zone}"}, "In {city} it is {result}."),
    ("Tell me the current date and time in {city}.", {"timezone": "{zone}"}, "In {city} it is {result}."),
    ("Is it morning or evening in {city} now?", {"timezone": "{zone}"}, "In {city} it is now {result}."),
    ("What's the date today in {city}?", {"timezone": "{zone}"}, "In {city} it is {result}."),
    ("Which day of the week is it in {city}?", {"timezone": "{zone}"}, "In {city} it is {result}."),
    ("What year is it in {city}?", {"timezone": "{zone}"}, "In {city} it is {result}."),
]
_CITIES = [
    ("Tokyo", "Asia/Tokyo"),
    ("London", "Europe/London"),
    ("New York", "America/New_York"),
    ("Sydney", "Australia/Sydney"),
    ("Berlin", "Europe/Berlin"),
    ("São Paulo", "America/Sao_Paulo"),
    ("Mumbai", "Asia/Kolkata"),
    ("Los Angeles", "America/Los_Angeles"),
    ("Madrid", "Europe/Madrid"),
    ("Toronto", "America/Toronto"),
    ("Cairo", "Africa/Cairo"),
    ("Seoul", "Asia/Seoul"),
    ("Mexico City", "America/Mexico_City"),
    ("Singapore", "Asia/Singapore"),
    ("Chicago", "America/Chicago"),
    ("Stockholm", "Europe/Stockholm"),
]
_LISTING = [
    "Which documents can you look in?",
    "List the files you have access to.",
    "What documents are in your collection?",
    "Show me the documents you know about.",
    "Which files can you read?",
    "What sources do you have?",
    "Which documents have I uploaded?",
    "Give me the list of indexed documents.",
]
# Prompts that need no tool, made from templates so that "no tool" is learnt as often as each tool
# (a few dozen fixed chats were too few: an adapter then called a tool for "Hello!"). What the shipped
# tool eval asks (`assistant/evals/tools.jsonl`: France, Romeo and Juliet, "thank you" in Spanish, hello in
# German, the opposite of cold, ...) is left out, so that its no-tool prompts stay unseen.
_CAPITALS = [
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Germany", "Berlin"),
    ("Japan", "Tokyo"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("Egypt", "Cairo"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Portugal", "Lisbon"),
    ("Greece", "Athens"),
    ("Poland", "Warsaw"),
    ("Ireland", "Dublin"),
    ("Kenya", "Nairobi"),
    ("Argentina", "Buenos Aires"),
    ("Peru", "Lima"),
    ("China", "Beijing"),
    ("India", "New Delhi"),
    ("Russia", "Moscow"),
    ("Austria", "Vienna"),
    ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"),
    ("Mexico", "Mexico City"),
    ("Thailand", "Bangkok"),
    ("Turkey", "Ankara"),
    ("the Netherlands", "Amsterdam"),
    ("Belgium", "Brussels"),
    ("Hungary", "Budapest"),
    ("Chile", "Santiago"),
]
_WORDS = {  # English -> (Spanish, French, German, Italian)
    "hello": ("hola", "bonjour", None, "ciao"),
    "goodbye": ("adiós", "au revoir", "auf Wiedersehen", "arrivederci"),
    "please": ("por favor", "s'il vous plaît", "bitte", "per favore"),
    "water": ("agua", "eau", "Wasser", "acqua"),
    "house": ("casa", "maison", "Haus", "casa"),
    "dog": ("perro", "chien", "Hund", "cane"),
    "book": ("libro", "livre", "Buch", "libro"),
    "friend": ("amigo", "ami", "Freund", "amico"),
    "yes": ("sí", "oui", "ja", "sì"),
    "bread": ("pan", "pain", "Brot", "pane"),
    "thank you": (None, "merci", "danke", "grazie"),
    "good night": ("buenas noches", "bonne nuit", "gute Nacht", "buona notte"),
}
_LANGUAGES = ("Spanish", "French", "German", "Italian")
_OPPOSITES = [
    ("big", "small"),
    ("fast", "slow"),
    ("early", "late"),
    ("light", "dark"),
    ("up", "down"),
    ("open", "closed"),
    ("full", "empty"),
    ("old", "young"),
    ("strong", "weak"),
    ("happy", "sad"),
    ("high", "low"),
    ("wet", "dry"),
    ("loud", "quiet"),
    ("rich", "poor"),
    ("hard", "soft"),
    ("long", "short"),
    ("thick", "thin"),
    ("clean", "dirty"),
    ("begin", "end"),
]
_SYNONYMS = [
    ("big", "large"),
    ("fast", "quick"),
    ("smart", "clever"),
    ("begin", "start"),
    ("angry", "furious"),
    ("tired", "sleepy"),
    ("small", "little"),
    ("easy", "simple"),
    ("buy", "purchase"),
    ("help", "assist"),
    ("funny", "amusing"),
    ("quiet", "silent"),
    ("brave", "courageous"),
    ("rich", "wealthy"),
    ("sad", "unhappy"),
]
_BACKWARDS = [
    "house",
    "garden",
    "window",
    "pencil",
    "rocket",
    "planet",
    "coffee",
    "summer",
    "yellow",
    "bottle",
    "market",
    "travel",
    "silver",
    "dragon",
    "forest",
    "engine",
    "number",
    "orange",
    "cable",
    "switch",
]
_MIXES = [
    ("red", "yellow", "orange"),
    ("red", "blue", "purple"),
    ("black", "white", "grey"),
    ("red", "white", "pink"),
    ("blue", "white", "light blue"),
    ("red", "green", "brown"),
]
_AUTHORS = [
    ("1984", "George Orwell"),
    ("Don Quixote", "Miguel de Cervantes"),
    ("War and Peace", "Leo Tolstoy"),
    ("The Odyssey", "Homer"),
    ("Oliver Twist", "Charles Dickens"),
    ("Frankenstein", "Mary Shelley"),
    ("The Old Man and the Sea", "Ernest Hemingway"),
    ("Moby-Dick", "Herman Melville"),
    ("Les Misérables", "Victor Hugo"),
    ("Faust", "Johann Wolfgang von Goethe"),
    ("The Divine Comedy", "Dante Alighieri"),
    ("Jane Eyre", "Charlotte Brontë"),
]
_JOKES = [
    "Why did the scarecrow win an award? Because he was outstanding in his field.",
    "I told my computer a joke about UDP. I'm not sure it got it.",
    "Why don't eggs tell jokes? They'd crack each other up.",
    "What do you call a fish without eyes? A fsh.",
]
_GREETINGS = [
    ("Hello!", "Hello! How can I help you today?"),
    ("Hi, how are you?", "I'm well, thank you! What can I do for you?"),
    ("Good afternoon!", "Good afternoon! How can I help?"),
    ("Hey!", "Hi! What would you like to know?"),
    ("Thanks for your help.", "You're welcome! Glad I could help."),
    ("Great, thank you.", "You're welcome!"),
    ("OK, bye for now.", "Bye! Come back any time."),
    ("Perfect, that's what I needed.", "Glad to hear it! Anything else?"),
]


def _general(rng: random.Random) -> tuple[str, str]:
    """A prompt answered from general knowledge or language skill, and its answer."""
    kind = rng.randrange(9)
    if kind == 0:
        country, city = rng.choice(_CAPITALS)
        form = rng.choice(
            ["What is the capital of {c}?", "Which city is the capital of {c}?", "Name the capital of {c}."]
        )
        return form.format(c=country), f"The capital of {country} is {city}."
    if kind == 1:
        word, translations = rng.choice(list(_WORDS.items()))
        language = rng.randrange(4)
        if translations[language] is None:
            language = (language + 1) % 4
        form = rng.choice(["Translate '{w}' into {l}.", "How do you say '{w}' in {l}?", "What is '{w}' in {l}?"])
        answer = f"'{word.capitalize()}' in {_LANGUAGES[language]} is '{translations[language]}'."
        return form.format(w=word, l=_LANGUAGES[language]), answer
    if kind == 2:
        word, opposite = rng.choice(_OPPOSITES)
        form = rng.choice(
            ["What is the opposite of '{w}'?", "Give me an antonym of '{w}'.", "What's the antonym of '{w}'?"]
        )
        return form.format(w=word), f"The opposite of '{word}' is '{opposite}'."
    if kind == 3:
        word, synonym = rng.choice(_SYNONYMS)
        form = rng.choice(
            ["Give me a synonym for '{w}'.", "What is another word for '{w}'?", "Suggest a synonym of '{w}'."]
        )
        return form.format(w=word), f"A synonym for '{word}' is '{synonym}'."
    if kind == 4:
        word = rng.choice(_BACKWARDS)
        form = rng.choice(
            ["Spell the word '{w}' backwards.", "Write '{w}' backwards.", "Reverse the letters of '{w}'."]
        )
        return form.format(w=word), f"'{word}' backwards is '{word[::-1]}'."
    if kind == 5:
        first, second, result = rng.choice(_MIXES)
        if rng.random() < 0.5:
            first, second = second, first
        form = rng.choice(["What colour do you get by mixing {a} and {b}?", "What do {a} and {b} make when mixed?"])
        return form.format(a=first, b=second), f"Mixing {first} and {second} gives {result}."
    if kind == 6:
        book, author = rng.choice(_AUTHORS)
        form = rng.choice(["Who wrote {b}?", "Who is the author of {b}?", "Which writer wrote {b}?"])
        return form.format(b=book), f"{book} was written by {author}."
    if kind == 7:
        return rng.choice(["Tell me a joke.", "Do you know a good joke?", "Make me laugh."]), rng.choice(_JOKES)
    return rng.choice(_GREETINGS)


_CHAT = [
    ("Hi there!", "Hello! How can I help you today?"),
    ("Good morning.", "Good morning! What can I do for you?"),
    ("Thank you so much!", "You're welcome! Let me know if there is anything else."),
    (
        "What can you do?",
        "I can answer questions from your documents, do exact arithmetic, and tell the date and time.",
    ),
    ("Who are you?", "I am an assistant for your documents. Ask me anything about them."),
    ("Goodbye!", "Goodbye! Have a nice day."),
    ("Can you help me?", "Of course. What would you like to know?"),
    ("Please answer in short sentences.", "Sure, I will keep my answers short."),
    ("What is a synonym for 'big'?", "A synonym for 'big' is 'large'."),
    ("What is the plural of 'mouse'?", "The plural of 'mouse' is 'mice'."),
    ("How many days are in a week?", "A week has seven days."),
    ("What is the boiling point of water at sea level in Celsius?", "Water boils at 100 °C at sea level."),
    ("Name the largest ocean on Earth.", "The Pacific Ocean is the largest."),
    ("Which planet is known as the Red Planet?", "Mars is known as the Red Planet."),
    ("What language is spoken in Brazil?", "Portuguese is the main language of Brazil."),
    ("Give me an antonym of 'early'.", "An antonym of 'early' is 'late'."),
    ("How do you say 'good night' in French?", "'Good night' in French is 'bonne nuit'."),
    ("Write a short welcome message for a team chat.", "Welcome to the team chat! We're glad to have you here."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("How many continents are there?", "There are seven continents."),
    ("What is the freezing point of water in Fahrenheit?", "Water freezes at 32 °F."),
    ("Suggest a name for a pet cat.", "How about Luna?"),
    ("Which is heavier, a kilogram of feathers or a kilogram of iron?", "Neither: both weigh one kilogram."),
    ("Hey, how's it going?", "I'm doing well, thanks! What can I help you with?"),
    ("Nice to meet you.", "Nice to meet you too! Ask me anything."),
    ("That's all, thanks.", "You're welcome! Have a good day."),
    ("Good evening!", "Good evening! How can I help?"),
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("Who wrote 'Pride and Prejudice'?", "Jane Austen wrote 'Pride and Prejudice'."),
    ("Who discovered penicillin?", "Alexander Fleming discovered penicillin."),
    ("Translate 'good morning' into Spanish.", "'Good morning' in Spanish is 'buenos días'."),
    ("Translate 'cat' into German.", "'Cat' in German is 'Katze'."),
    ("Say goodbye in Italian.", "'Goodbye' in Italian is 'arrivederci'."),
    ("Give me a synonym for 'fast'.", "A synonym for 'fast' is 'quick'."),
    ("What is the opposite of 'heavy'?", "The opposite of 'heavy' is 'light'."),
    ("What colour do you get by mixing red and white?", "Mixing red and white gives pink."),
    ("What colour is the sky on a clear day?", "On a clear day the sky is blue."),
    ("Spell the word 'house' backwards.", "'house' backwards is 'esuoh'."),
    ("Tell me a fun fact.", "Octopuses have three hearts."),
    ("Write a one-line thank-you note to a teacher.", "Thank you for your patience and for everything you taught me!"),
    ("Suggest a title for a blog post about gardening.", "Growing Green: A Beginner's Guide to Gardening."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("Which animal is known as the king of the jungle?", "The lion is known as the king of the jungle."),
    ("What do bees make?", "Bees make honey."),
    ("Is a tomato a fruit or a vegetable?", "Botanically, a tomato is a fruit."),
    ("What is the main gas in the air we breathe?", "Nitrogen: about 78% of the air."),
    ("Recommend a good habit for better sleep.", "Go to bed at the same time every night."),
    ("Rephrase 'I am very tired' more formally.", "I am quite exhausted."),
    ("What does CPU stand for?", "CPU stands for central processing unit."),
    ("Complete the phrase: an apple a day...", "...keeps the doctor away."),
    ("Can you keep a secret?", "I don't remember anything between chats, so your secret is safe."),
    ("Are you a human?", "No, I am an AI assistant."),
    ("Which month comes after March?", "April comes after March."),
]


def tool_tasks(qas: list[QA], tools: set[str], count: int, seed: int = 0) -> list[ToolTask]:
    """``count`` tasks for the tools in ``tools`` (and some that need none), in a reproducible mix.

    Document questions come from ``qas``: the task searches with the question and
    answers with the span, citing the source chunk.
    """
    rng = random.Random(seed)
    makers: list[Callable[[], ToolTask | None]] = []
    if "calculator" in tools:
        makers += [lambda: _arithmetic(rng)] * 4
    if "current_datetime" in tools:
        makers += [lambda: _date(rng)] * 3
    if "search_documents" in tools and qas:
        makers += [lambda: _search(rng.choice(qas))] * 6
    if "list_documents" in tools:
        makers.append(lambda: ToolTask("list", rng.choice(_LISTING), [("list_documents", {})], "{result}"))
    # prompts that need no tool: about a third, as many as document searches, so that tools are not overused
    makers += [lambda: _chat(rng)] * 8
    tasks: list[ToolTask] = []
    keys: set[str] = set()
    for _ in range(count * 20):
        if len(tasks) >= count:
            break
        task = rng.choice(makers)()
        if task is None:
            continue
        key = json.dumps([task.question, task.calls], sort_keys=True)
        if key not in keys:
            keys.add(key)
            tasks.append(task)
    return tasks


def _chat(rng: random.Random) -> ToolTask:
    question, answer = rng.choice(_CHAT) if rng.random() < 0.3 else _general(rng)
    return ToolTask("no_tool", question, [], answer)


def _arithmetic(rng: random.Random) -> ToolTask:
    question, expression, answer = rng.choice(_ARITHMETIC)
    values = {
        "a": rng.randint(12, 9999),
        "b": rng.randint(2, 999),
        "c": rng.randint(2, 40),
        "n": rng.randint(2, 9),
        "p": rng.choice([5, 10, 12.5, 15, 20, 25, 33, 40, 75]),
        "sq": rng.randint(2, 120) ** 2,
    }
    fill = {k: f"{v:g}" if isinstance(v, float) else str(v) for k, v in values.items()}
    return ToolTask(
        "arithmetic",
        question.format(**fill),
        [("calculator", {"expression": expression.format(**fill)})],
        answer.replace("{value}", "\0").format(**fill).replace("\0", "{value}"),
    )


def _date(rng: random.Random) -> ToolTask:
    question, arguments, answer = rng.choice(_DATES)
    city, zone = rng.choice(_CITIES)
    args = {k: v.format(zone=zone) for k, v in arguments.items()}
    fill = question.format(city=city)
    return ToolTask("dates", fill, [("current_datetime", args)], answer.replace("{city}", city))


def _search(qa: QA) -> ToolTask:
    return ToolTask(
        "documents",
        qa.question,
        [("search_documents", {"query": qa.question, "k": 2})],
        f"{qa.answer} [{{cite}}]",
        cite_chunk=qa.chunk_id,
        chunk_ids=[qa.chunk_id],
    )
