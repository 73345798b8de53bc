"""Training examples: the user's own files in any common chat format, deduplicated and split.

Every example is a chat in OpenAI messages form plus where it came from::

    {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}],
     "origin": "examples.jsonl:12", "chunk_ids": []}

``chunk_ids`` names the ingested chunks an example was built from (empty for the
user's own examples), so training data, retrieval and evaluation share one index.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from finetune.base_model import load_chat_tokenizer, render_chat, resolve_model_path

Example = dict[str, Any]
ROLES = ("system", "user", "assistant", "tool")
_SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


class RowError(ValueError):
    """One unusable row of a user's file; the message says what is wrong with it."""


@dataclass
class Loaded:
    """The examples read from one file, and the rows that were not usable (``file:line: reason``)."""

    examples: list[Example] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unreadable: str = ""  # why the file as a whole could not be read (also the first problem); "" when it could


def read_examples(path: str | os.PathLike[str]) -> Loaded:
    """Read chat-messages, alpaca, sharegpt or grounded examples from a JSONL file or a JSON array.

    The format is recognised per row, so files may mix them. A bad row is reported
    with its line (or item) number and the rest are kept. A grounded row is a
    question, its answer and the passage that holds it (``{"question", "answer",
    "context", "source"}``, SQuAD-like); the dataset build shows the passage among
    distractors, as retrieval would, and the answer cites it.

    Args:
        path: A ``.jsonl`` file (one example per line) or a ``.json`` file holding a list.
    """
    path = Path(path)
    loaded = Loaded()
    text, problem = _read_text(path)
    if problem:
        loaded.unreadable = problem
        loaded.problems.append(f"{path}: {problem}")
        return loaded
    rows: list[tuple[str, Any]] = []
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as e:
            loaded.problems.append(f"{path.name}:{e.lineno}: not valid JSON ({e.msg})")
            return loaded
        except RecursionError:
            loaded.unreadable = _TOO_DEEP
            loaded.problems.append(f"{path.name}: {_TOO_DEEP}")
            return loaded
        if not isinstance(items, list):
            loaded.problems.append(f"{path.name}:1: not valid JSON (a list of examples was cut short)")
            return loaded
        rows = [(f"{path.name} item {n}", item) for n, item in enumerate(items, start=1)]
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((f"{path.name}:{number}", json.loads(line)))
            except json.JSONDecodeError as e:
                loaded.problems.append(f"{path.name}:{number}: not valid JSON ({e.msg})")
            except RecursionError:
                loaded.problems.append(f"{path.name}:{number}: {_TOO_DEEP}")
    for where, row in rows:
        try:
            if isinstance(row, dict) and "context" in row and "question" in row:
                loaded.examples.append({"grounded": to_grounded(row), "origin": where, "chunk_ids": []})
            else:
                loaded.examples.append({"messages": to_messages(row), "origin": where, "chunk_ids": []})
        except RowError as e:
            loaded.problems.append(f"{where}: {e}")
    return loaded


def to_grounded(row: dict[str, Any]) -> dict[str, str]:
    """A grounded row (question, answer, the passage that holds it, optional source name), checked.

    ``answers`` (a list, SQuAD's form) may stand for ``answer``: its first item is used.

    Raises:
        RowError: a field is missing or empty.
    """
    answer = row.get("answer")
    if answer is None and isinstance(row.get("answers"), list) and row["answers"]:
        answer = row["answers"][0]
    source = row.get("source") or row.get("title") or "passage"
    return {
        "question": _text(row.get("question"), "question"),
        "answer": _text(answer, "answer"),
        "context": _text(row.get("context"), "context"),
        "source": _text(str(source), "source"),
    }


_TOO_DEEP = "JSON nested too deeply to read (thousands of levels): an example is a flat object; check the file"


def _read_text(path: Path) -> tuple[str, str]:
    """The file's text, or why it has none: (text, "") or ("", a reason that says what to do)."""
    if path.is_dir():
        return "", "is a folder, not a file: give the .jsonl or .json file inside it"
    try:
        data = path.read_bytes()
    except OSError as e:
        return "", f"cannot be read ({e.strerror or e})"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        with contextlib.suppress(UnicodeDecodeError):
            data = data.decode("utf-16").encode("utf-8")
    if not data.strip():
        return "", "is empty: write one example per line (chat messages, alpaca or sharegpt JSON)"
    if b"\x00" in data[:65536]:
        return "", "is binary, not JSON text: give a .jsonl or .json file of examples"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return "", (
            f"is not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}, perhaps latin-1 or cp1252): "
            "save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 FILE > NEW`"
        )
    return text, ""


def to_messages(row: Any) -> list[dict[str, str]]:
    """One row in chat-messages, alpaca or sharegpt form as a checked list of messages.

    Raises:
        RowError: the row is in no known form, or its chat is unusable for training.
    """
    if not isinstance(row, dict):
        raise RowError("expected a JSON object")
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list):
            raise RowError('"messages" must be a list')
        out = []
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                raise RowError(f"each message needs a role among {', '.join(ROLES)}")
            out.append({"role": m["role"], "content": _text(m.get("content"), m["role"])})
    elif "instruction" in row or "output" in row:
        instruction = _text(row.get("instruction"), "instruction")
        extra = row.get("input") or ""
        if not isinstance(extra, str):
            raise RowError('"input" must be a string')
        out = [{"role": "system", "content": _text(row["system"], "system")}] if row.get("system") else []
        out += [
            {"role": "user", "content": f"{instruction}\n\n{extra.strip()}" if extra.strip() else instruction},
            {"role": "assistant", "content": _text(row.get("output"), "output")},
        ]
    elif "conversations" in row:
        turns = row["conversations"]
        if not isinstance(turns, list):
            raise RowError('"conversations" must be a list')
        out = []
        for turn in turns:
            speaker = turn.get("from") if isinstance(turn, dict) else None
            if speaker not in _SHAREGPT_ROLES:
                raise RowError(f'each turn needs "from" among {", ".join(_SHAREGPT_ROLES)}')
            out.append({"role": _SHAREGPT_ROLES[speaker], "content": _text(turn.get("value"), speaker)})
    else:
        raise RowError('unknown format: expected "messages", "instruction"/"output" (alpaca) or "conversations"')
    if not any(m["role"] == "user" for m in out):
        raise RowError("no user message")
    if out[-1]["role"] != "assistant":
        raise RowError("the last message must be the assistant's (what the model learns to say)")
    return out


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"{what} is empty or not a string")
    return value.strip()


def question_of(example: Example) -> str:
    """The example's question (its ``question`` field, else its first user message), normalised: what splits key on.

    Synthetic examples carry the question they ask, so its closed-book, context and
    tool-use forms land in the same split.
    """
    first = example.get("question") or next(m["content"] for m in example["messages"] if m["role"] == "user")
    return " ".join(re.sub(r"[^\w\s]", " ", first.lower()).split())


def _fingerprint(example: Example) -> str:
    text = json.dumps([[m["role"], " ".join(m["content"].split())] for m in example["messages"]])
    return hashlib.sha256(text.encode()).hexdigest()


def deduplicate(examples: Iterable[Example]) -> tuple[list[Example], int]:
    """Drop examples whose whole chat repeats an earlier one (whitespace aside); returns (kept, dropped)."""
    seen: set[str] = set()
    kept: list[Example] = []
    dropped = 0
    for example in examples:
        key = _fingerprint(example)
        if key in seen:
            dropped += 1
        else:
            seen.add(key)
            kept.append(example)
    return kept, dropped


def filter_length(
    examples: Iterable[Example], count_tokens: Callable[..., int], max_tokens: int
) -> tuple[list[Example], list[Example]]:
    """Split examples into those that fit ``max_tokens`` (as the chat template renders them) and those too long.

    ``count_tokens`` gets the messages, and the tool schemas when an example has them.
    """
    fits: list[Example] = []
    too_long: list[Example] = []
    for example in examples:
        tools = example.get("tools")
        tokens = count_tokens(example["messages"], tools) if tools else count_tokens(example["messages"])
        (fits if tokens <= max_tokens else too_long).append(example)
    return fits, too_long


def split(examples: Iterable[Example], val: float = 0.1, test: float = 0.1, seed: int = 0) -> dict[str, list[Example]]:
    """Assign examples to train/val/test by a hash of their question, so one question never spans two splits.

    The assignment depends only on the question (and ``seed``), so it is stable as data is
    added: an example never moves from test into train between builds.
    """
    if val < 0 or test < 0 or val + test >= 1:
        raise ValueError("val and test must be fractions that sum to less than 1")
    out: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for example in examples:
        digest = hashlib.sha256(f"{seed}:{question_of(example)}".encode()).digest()
        draw = int.from_bytes(digest[:8], "big") / 2**64
        name = "test" if draw < test else "val" if draw < test + val else "train"
        out[name].append(example)
    return out


def write_splits(splits: dict[str, list[Example]], folder: str | os.PathLike[str], report: dict[str, Any]) -> Path:
    """Write ``train/val/test.jsonl`` and ``report.json`` into ``folder``, all or nothing."""
    import shutil

    target = Path(folder)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, rows in splits.items():
        with open(tmp / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (tmp / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    old = target.with_name(f".{target.name}.old{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


# building a dataset -------------------------------------------------------------------


@dataclass
class Formats:
    """How examples look to the model; supplied by the assistant, whose prompts they must match.

    Args:
        answer_prompt: The prompt for a question, with numbered chunks (context) or None (closed-book).
        demonstrate: Turns a tool task into an agent transcript (``messages`` and ``tools``), None if it fails.
        tools: Names of the tools the agent has.
        generate: A chat model's reply to a prompt, for ``synthetic = "llm"``.
    """

    answer_prompt: Callable[[str, list[Any] | None], list[dict[str, Any]]]
    demonstrate: Callable[[Any], Example | None] | None = None
    tools: frozenset[str] = frozenset()
    generate: Callable[[list[dict[str, Any]]], str] | None = None


NOT_IN_SOURCES = "The documents do not say."


def build_dataset(
    config: Any,
    ingest_config: Any,
    model: str,
    formats: Formats,
    out: str | os.PathLike[str],
    extra_examples: Iterable[str | os.PathLike[str]] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Build train/val/test JSONL from the user's examples and the ingested chunks; returns the report.

    Args:
        config: A ``FinetuneConfig``.
        ingest_config: Where the chunks are (the same collection retrieval uses).
        model: The base model whose chat template measures example length.
        formats: The assistant's prompt formats.
        out: The dataset folder, replaced as a whole.
        extra_examples: More example files (the chat's saved feedback).
        progress: Show a progress bar while generating.

    Raises:
        FinetuneError: no usable example at all, an unreadable model, or a missing collection with nothing else.
    """
    import random
    from datetime import datetime

    from tqdm import tqdm

    from finetune.errors import FinetuneError
    from finetune.synth import (
        QA,
        Chunk,
        Neighbours,
        context_chunks,
        extractive_questions,
        llm_questions,
        load_chunks,
        styled_answer,
        tool_tasks,
    )

    examples: list[Example] = []
    grounded: list[Example] = []
    problems: list[str] = []
    counts: dict[str, int] = {}
    for path in [*config.examples, *extra_examples]:
        if not Path(path).exists():
            if path in config.examples:
                raise FinetuneError(f"examples file {path} not found: check the path in the examples setting")
            continue
        loaded = read_examples(path)
        if loaded.unreadable and path in config.examples:
            raise FinetuneError(f"examples file {path} {loaded.unreadable}")
        chats = [e for e in loaded.examples if "grounded" not in e]
        for example in chats:
            example["kind"] = "user"
        examples += chats
        grounded += [e for e in loaded.examples if "grounded" in e]
        problems += loaded.problems
        if chats:
            counts["user"] = counts.get("user", 0) + len(chats)

    chunks: list[Any] = []
    qas: list[QA] = []
    if config.synthetic != "none" or config.tool_examples:
        try:
            chunks = load_chunks(ingest_config, config.max_chunks)
        except FinetuneError:
            if not examples and not grounded:
                raise
    if config.synthetic == "llm" and formats.generate is None:
        raise FinetuneError("synthetic=llm needs a generator model: use synthetic=extractive")
    # A chunk the user's own examples ask about is asked about in their words: no synthetic questions from it,
    # and those questions become document-search tasks for the agent, answered from that chunk.
    by_document: dict[str, list[Any]] = {}
    for chunk in chunks:
        by_document.setdefault(Path(chunk.source).name, []).append(chunk)
    searched = [qa for row in grounded if (qa := _in_collection(row["grounded"], by_document)) is not None]
    examined = {qa.chunk_id for qa in searched}
    for chunk in tqdm(
        [c for c in chunks if c.id not in examined],
        desc="questions",
        unit="chunk",
        disable=not progress or None,
    ):
        if config.synthetic == "extractive":
            qas += extractive_questions(chunk, config.questions_per_chunk, config.seed)
        elif config.synthetic == "llm" and formats.generate is not None:
            qas += llm_questions(chunk, config.questions_per_chunk, formats.generate)

    # grounded rows bring their own passages: shown among distractors like the collection's chunks
    passages: dict[str, Chunk] = {}
    given: list[tuple[QA, str]] = []  # with the row each came from
    for row in grounded:
        g = row["grounded"]
        chunk_id = "passage-" + hashlib.sha256(f"{g['source']}\0{g['context']}".encode()).hexdigest()[:16]
        passages.setdefault(chunk_id, Chunk(chunk_id, g["context"], {"source": g["source"]}))
        given.append((QA(g["question"], g["answer"], g["answer"], chunk_id, g["source"]), row["origin"]))
    rng = random.Random(config.seed)
    neighbours = Neighbours([*chunks, *passages.values()])
    made = [(qa, "") for qa in qas] if config.synthetic != "none" else []
    for qa, row_origin in [*made, *given]:
        answer = qa.answer if row_origin else styled_answer(qa, config.answer_style)  # a grounded row's, as given
        origin = row_origin or "synthetic"
        meta = {
            "question": qa.question,
            "qa": {
                "answers": [qa.answer],
                "chunk_id": qa.chunk_id,
                "source": qa.source,
                "context": neighbours.chunks[neighbours.index[qa.chunk_id]].text,
            },
        }
        golden = rng.random() < config.golden_share
        shown = context_chunks(qa, neighbours, config.distractors, golden, rng)
        if golden:
            number = next(n for n, c in enumerate(shown, start=1) if c.id == qa.chunk_id)
            reply = f"{answer} [{number}]"
        else:
            reply = NOT_IN_SOURCES
        messages = [*formats.answer_prompt(qa.question, shown), {"role": "assistant", "content": reply}]
        examples.append(
            {
                "messages": messages,
                "origin": f"{origin}:context",
                "kind": "context" if golden else "abstain",
                "chunk_ids": [c.id for c in shown],
                **meta,
            }
        )
        if rng.random() < config.closed_book:
            messages = [*formats.answer_prompt(qa.question, None), {"role": "assistant", "content": answer}]
            examples.append(
                {
                    "messages": messages,
                    "origin": f"{origin}:closed_book",
                    "kind": "closed_book",
                    "chunk_ids": [qa.chunk_id],
                    **meta,
                }
            )
    if config.tool_examples and formats.demonstrate is not None and formats.tools:
        tasks = tool_tasks([*qas, *searched], set(formats.tools), config.tool_examples, config.seed)
        for task in tqdm(tasks, desc="tool examples", unit="task", disable=not progress or None):
            shown_example = formats.demonstrate(task)
            if shown_example is not None:
                examples.append(
                    {
                        **shown_example,
                        "origin": f"synthetic:tools:{task.kind}",
                        "kind": f"tool:{task.kind}",
                        "chunk_ids": task.chunk_ids,
                        "question": task.question,
                    }
                )
    for example in examples:
        kind = str(example.get("kind", "user")).split(":")[0]
        if kind != "user":
            counts[kind] = counts.get(kind, 0) + 1
    if not examples:
        why = f" ({problems[0]}{f', and {len(problems) - 1} more problems' if len(problems) > 1 else ''})"
        raise FinetuneError(
            f"no training examples{why if problems else ''}: ingest documents with prose (`ragtune ingest PATH`) "
            "or give examples files"
        )
    examples, duplicates = deduplicate(examples)
    count_chat = _template_counter(model, ingest_config.home_path)
    sizes: dict[int, int] = {}  # the length filter and the report count each chat once

    def count_tokens(messages: list[dict[str, Any]], tools: list[Any] | None = None) -> int:
        if id(messages) not in sizes:
            sizes[id(messages)] = count_chat(messages, tools)
        return sizes[id(messages)]

    examples, too_long = filter_length(examples, count_tokens, config.max_tokens)
    if not examples:
        raise FinetuneError(f"every example is longer than max_tokens={config.max_tokens}: raise max_tokens")
    splits = split(examples, config.val_share, config.test_share, config.seed)
    report = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model,
        "collection": ingest_config.collection,
        "chunks": len(chunks),
        "questions": len(qas),
        "sources": counts,
        "duplicates": duplicates,
        "too_long": len(too_long),
        "problems": problems,
        "splits": {name: len(rows) for name, rows in splits.items()},
        "tokens": {
            name: sum(count_tokens(r["messages"], r.get("tools")) for r in rows) for name, rows in splits.items()
        },
        "settings": {
            key: getattr(config, key)
            for key in (
                "synthetic",
                "questions_per_chunk",
                "answer_style",
                "closed_book",
                "distractors",
                "golden_share",
                "tool_examples",
                "max_tokens",
                "val_share",
                "test_share",
                "seed",
            )
        },
    }
    write_splits(splits, out, report)
    return report


def _in_collection(row: dict[str, str], by_document: dict[str, list[Any]]) -> Any:
    """A grounded row as a question about the collection: the chunk of its document (chunks by file name)
    that holds its answer and shares most words with its passage, or None when its document was not ingested."""
    from finetune.synth import QA

    passage = set(row["context"].lower().split())
    answer = row["answer"].lower()
    holding = [c for c in by_document.get(Path(row["source"]).name, []) if answer in c.text.lower()]
    if not holding:
        return None
    best = max(holding, key=lambda c: len(passage & set(c.text.lower().split())))
    return QA(row["question"], row["answer"], row["answer"], best.id, best.source)


def _template_counter(model: str, home: Path) -> Callable[..., int]:
    """Tokens of a chat as the model's template renders it (what training sees)."""
    tokenizer = load_chat_tokenizer(model, resolve_model_path(model, home))

    def count(messages: list[dict[str, Any]], tools: list[Any] | None = None) -> int:
        return len(tokenizer(render_chat(tokenizer, messages, tools, False), add_special_tokens=False)["input_ids"])

    return count
