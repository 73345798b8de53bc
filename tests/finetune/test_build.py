"""Training data from the index: questions from answers, context examples with distractors, tool transcripts."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from assistant.tool_eval import SHIPPED
from finetune.synth import QA, Chunk, Neighbours, context_chunks, extractive_questions, tool_tasks
from tests.conftest import SAMPLE, run_ragtune

PROSE = (
    "The Solstice HB-10 stores 10 kWh of usable energy. Brightwell Energy designed the battery in 2019. "
    "The warranty period is ten years. Drill four holes 12 mm in diameter before mounting the cabinet."
)


def test_questions_come_from_answers_in_the_chunk() -> None:
    chunk = Chunk("c1", PROSE, {"source": "guide.md"})
    pairs = extractive_questions(chunk, 4, seed=1)
    assert len(pairs) == 4 and pairs == extractive_questions(chunk, 4, seed=1)
    for qa in pairs:
        assert qa.question.endswith("?") and qa.answer in qa.sentence and qa.sentence in PROSE
        assert qa.answer not in qa.question and qa.chunk_id == "c1"
    assert {qa.answer for qa in pairs} <= {"10 kWh", "HB-10", "2019", "ten years", "12 mm", "Brightwell Energy"}
    assert extractive_questions(Chunk("t", "| a | b |\n|---|---|\n| 1 | 2 |", {}), 3) == []  # tables give none


def test_context_examples_show_distractors_that_lack_the_answer() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    texts = [PROSE] + [f"Section {n} covers firmware updates and error code E1{n:02d}." for n in range(8)]
    texts.append("Another page that repeats 10 kWh for no reason.")
    chunks = [Chunk(f"c{n}", t, {"source": "x"}, rng.normal(size=8)) for n, t in enumerate(texts)]
    qa = QA("The Solstice HB-10 stores how much of usable energy?", "10 kWh", PROSE.split(". ")[0], "c0", "x")
    neighbours = Neighbours(chunks)
    with_gold = context_chunks(qa, neighbours, 3, True, random.Random(0))
    without = context_chunks(qa, neighbours, 3, False, random.Random(0))
    assert len(with_gold) == 4 and "c0" in [c.id for c in with_gold]
    # mostly ranked as retrieval would (most words shared with the question first), sometimes shuffled
    first = [context_chunks(qa, neighbours, 3, True, random.Random(seed))[0].id == "c0" for seed in range(100)]
    assert 60 <= sum(first) < 100
    assert len(without) == 3 and all("10 kWh" not in c.text for c in without)


def test_tool_tasks_cover_every_tool_reproducibly() -> None:
    qa = extractive_questions(Chunk("c1", PROSE, {}), 1)
    tools = {"calculator", "current_datetime", "search_documents", "list_documents"}
    tasks = tool_tasks(qa, tools, 60, seed=2)
    assert len(tasks) == 60 and tasks == tool_tasks(qa, tools, 60, seed=2)
    kinds = {t.kind for t in tasks}
    assert kinds == {"arithmetic", "dates", "documents", "list", "no_tool"}
    search = next(t for t in tasks if t.kind == "documents")
    assert search.calls[0][0] == "search_documents" and search.cite_chunk == "c1" and "{cite}" in search.answer
    assert {t.kind for t in tool_tasks(qa, {"calculator"}, 20)} == {"arithmetic", "no_tool"}


def test_no_tool_prompts_are_many_varied_and_unseen_by_the_tool_eval() -> None:
    # as many chats that need no tool as document searches, so an adapter does not call a tool for "Hello!"
    qas = [QA(f"Where is part {n}?", f"shelf {n}", f"shelf {n}", f"c{n}", "parts.txt") for n in range(300)]
    tools = {"calculator", "current_datetime", "search_documents", "list_documents"}
    tasks = tool_tasks(qas, tools, 300, seed=0)
    chats = [t for t in tasks if t.kind == "no_tool"]
    searches = [t for t in tasks if t.kind == "documents"]
    assert len(tasks) == 300 and len(chats) >= 0.3 * 300 and len(chats) >= 0.9 * len(searches)
    assert all(not t.calls and "{" not in t.answer for t in chats)
    evaluated = {json.loads(line)["prompt"] for line in SHIPPED.read_text().splitlines() if line.strip()}
    assert not evaluated & {t.question for t in tool_tasks(qas, tools, 3000, seed=1) if t.kind in ("no_tool", "list")}
    backwards = next(t for t in tool_tasks(qas, tools, 3000, seed=1) if "backwards" in t.answer)
    word = backwards.answer.split("'")[1]
    assert f"'{word[::-1]}'" in backwards.answer


@pytest.fixture
def corpus(tiny_config, tiny_lm):
    """The sample corpus ingested with the tiny embedder; the tiny LM as the assistant's model."""
    from assistant.config import AssistantConfig
    from ingest import ingest

    ingest([SAMPLE], tiny_config, progress=False)
    return tiny_config, AssistantConfig(model=tiny_lm)


def test_a_dataset_from_the_index_and_the_users_examples(corpus, tmp_path: Path) -> None:
    from assistant.retrieval import Retriever
    from assistant.settings import Settings
    from assistant.tools import build_registry
    from assistant.training import training_formats
    from finetune.config import FinetuneConfig
    from finetune.data import build_dataset, question_of
    from finetune.synth import load_chunks

    ingest_config, config = corpus
    mine = tmp_path / "mine.jsonl"
    good = {"instruction": "Name the battery.", "output": "The Solstice HB-10."}
    mine.write_text(json.dumps(good) + "\n{broken\n" + json.dumps({"messages": []}) + "\n")
    tune = FinetuneConfig(examples=(str(mine),), tool_examples=30, max_tokens=2000, test_share=0.2)
    out = tmp_path / "ds"
    registry = build_registry(ingest_config, lambda: Retriever.from_config(ingest_config, config), ())
    formats = training_formats(Settings(ingest=ingest_config, assistant=config), registry)
    report = build_dataset(tune, ingest_config, config.model, formats, out)

    assert report["sources"]["user"] == 1 and report["problems"][0].startswith("mine.jsonl:2: not valid JSON")
    assert report["problems"][1].startswith("mine.jsonl:3:")
    assert {"context", "abstain", "closed_book", "tool"} <= set(report["sources"])
    assert report["chunks"] > 20 and report["questions"] > 20
    splits = {
        name: [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]
        for name in report["splits"]
    }
    assert {name: len(rows) for name, rows in splits.items()} == report["splits"]
    questions = {name: {question_of(e) for e in rows} for name, rows in splits.items()}
    assert not (questions["train"] & questions["test"]) and not (questions["train"] & questions["val"])
    assert not (questions["val"] & questions["test"])

    known = {c.id for c in load_chunks(ingest_config, embeddings=False)}
    examples = [e for rows in splits.values() for e in rows]
    for example in examples:
        assert example["messages"][-1]["role"] == "assistant"
        if example["kind"] != "user":
            assert example["chunk_ids"] or example["kind"].startswith("tool:")
            assert set(example["chunk_ids"]) <= known
        if example["kind"] == "context":  # the answer cites the right chunk's number
            number = int(example["messages"][-1]["content"].rsplit("[", 1)[1].rstrip("]"))
            assert example["chunk_ids"][number - 1] == example["qa"]["chunk_id"]
            assert f"[{number}] (" in example["messages"][-2]["content"]
        if example["kind"] == "abstain":
            assert example["qa"]["chunk_id"] not in example["chunk_ids"]
    tool_calls = [e for e in examples if e["kind"] == "tool:arithmetic"]
    assert tool_calls and "<tool_call>" in tool_calls[0]["messages"][2]["content"]
    assert "<tool_response>" in tool_calls[0]["messages"][3]["content"]


def test_the_cli_builds_trains_activates_and_a_killed_run_changes_nothing(corpus, tiny_embedder, tiny_lm) -> None:
    common = ["--set", f"embedding_model={tiny_embedder}", "--set", f"model={tiny_lm}", "--set", "chunk_tokens=48"]
    common += ["--set", "chunk_overlap=8", "--set", "ingest.device=cpu", "--set", "assistant.device=cpu"]
    small = ["--set", "tool_examples=10", "--set", "questions_per_chunk=1", "--set", "eval_every=2"]
    build = run_ragtune("dataset", "build", *common, *small)
    assert build.returncode == 0, build.stderr
    assert "train " in build.stdout and "examples by source" in build.stdout

    first = run_ragtune(
        "finetune", "--name", "first", "--activate", *common, "--set", "steps=4", "--set", "eval_questions=3"
    )
    assert first.returncode == 0, first.stderr
    assert "adapter first: completed after 4 steps" in first.stdout and "activated first" in first.stdout
    assert "general-text perplexity" in first.stdout and "tuned+RAG" in first.stdout
    listed = run_ragtune("adapters", "list", "--json", *common)
    meta = json.loads(listed.stdout)[0]
    assert meta["name"] == "first" and meta["active"] and "adapter/rag" in meta["evaluation"]["answers"]
    asked = run_ragtune("ask", "What does error E116 mean?", *common, "--set", "answer_tokens=8")
    assert asked.returncode == 0, asked.stderr

    # a run killed mid-training leaves the active adapter and the registry as they were
    home = Path(os.environ["RAGTUNE_HOME"])
    code = "import sys; from assistant.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [
        "finetune",
        "--name",
        "second",
        "--no-eval",
        *common,
        "--set",
        "steps=200",
        "--set",
        "eval_every=1",
        "--set",
        "patience=0",
    ]
    process = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoint = home / "runs" / "second" / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert checkpoint.exists(), process.stderr.read().decode() if process.poll() is not None else "no checkpoint"
    process.send_signal(signal.SIGKILL)
    process.wait()
    listed = json.loads(run_ragtune("adapters", "list", "--json", *common).stdout)
    assert [(a["name"], a["active"]) for a in listed if a["name"] != "starter"] == [("first", True)]
    assert json.loads((home / "adapters" / "active.json").read_text())["active"] == "first"

    again = run_ragtune("finetune", "--resume", "second", "--no-eval", *common, "--set", "steps=2")
    assert again.returncode == 0, again.stderr  # the run's own settings (200 steps) are kept on resume
    assert "adapter second: completed after 200 steps" in again.stdout
    assert run_ragtune("adapters", "activate", "second", *common).returncode == 0
    assert run_ragtune("adapters", "rollback", *common).stdout.strip() == "active adapter: first"
    refused = run_ragtune("adapters", "remove", "first", *common)
    assert refused.returncode == 2 and refused.stderr.startswith("error: adapter 'first' is active")
    assert run_ragtune("adapters", "remove", "second", *common).returncode == 0
    wrong = run_ragtune("adapters", "activate", "first", *common[:2], "--set", "model=org/Other-7B")
    assert wrong.returncode == 2 and "was trained on" in wrong.stderr and "\n" not in wrong.stderr.strip()


def test_model_written_questions_keep_only_answers_copied_from_the_chunk(scripted) -> None:
    from assistant.model import complete
    from finetune.synth import llm_questions

    scripted.enqueue(
        "Q: How much energy does the HB-10 store?\nA: 10 kWh\n"
        "Q: Who makes it?\nA: A company on the Moon\n"  # not in the chunk: dropped
        "Q: When was the battery designed?\nA: 2019."
    )
    chunk = Chunk("c1", PROSE, {"source": "guide.md"})
    pairs = llm_questions(chunk, 3, lambda messages: complete(scripted, messages, max_new_tokens=200))
    assert [(p.question, p.answer) for p in pairs] == [
        ("How much energy does the HB-10 store?", "10 kWh"),
        ("When was the battery designed?", "2019"),
    ]
    assert pairs[1].sentence == "Brightwell Energy designed the battery in 2019." and pairs[0].chunk_id == "c1"
    assert "Passage:\n" + PROSE in scripted.prompts[0][0]["content"]


def test_grounded_rows_show_their_passage_among_distractors_and_cite_it(tiny_lm: str, tmp_path: Path) -> None:
    from assistant.config import AssistantConfig
    from assistant.settings import Settings
    from assistant.training import training_formats
    from finetune.config import FinetuneConfig
    from finetune.data import NOT_IN_SOURCES, build_dataset
    from ingest.config import IngestConfig

    rows = [
        {
            "question": f"What does section {n} cover?",
            "answer": f"topic {n}",
            "context": f"Section {n} of the manual covers topic {n}. It is short.",
            "source": "manual.txt",
        }
        for n in range(12)
    ]
    rows.append({"question": "Is it safe?", "answers": ["Yes. It is safe."], "context": "It was safe.", "title": "P 1"})
    rows.append({"question": " ", "answer": "x", "context": "y"})
    file = tmp_path / "rows.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ingest_config = IngestConfig(home=str(tmp_path / "home"))
    tune = FinetuneConfig(
        examples=(str(file),), synthetic="none", tool_examples=0, closed_book=0.0, max_tokens=4000, val_share=0.0
    )
    tune = dataclasses.replace(tune, test_share=0.0, golden_share=0.75, distractors=2)
    formats = training_formats(Settings(ingest=ingest_config, assistant=AssistantConfig(model=tiny_lm)), None)
    report = build_dataset(tune, ingest_config, tiny_lm, formats, tmp_path / "ds")

    assert report["problems"] == ["rows.jsonl:14: question is empty or not a string"]
    examples = [json.loads(line) for line in (tmp_path / "ds" / "train.jsonl").read_text().splitlines()]
    assert len(examples) == 13 and {e["kind"] for e in examples} == {"context", "abstain"}
    for example in examples:
        prompt, reply = example["messages"][-2]["content"], example["messages"][-1]["content"]
        passage = example["qa"]["context"]
        if example["kind"] == "context":
            number = int(reply.rsplit("[", 1)[1].rstrip("]"))
            assert reply == f"{example['qa']['answers'][0]} [{number}]"
            assert prompt.split(f"[{number}] (", 1)[1].split("\n", 1)[1].startswith(passage)
        else:
            assert reply == NOT_IN_SOURCES and passage not in prompt
        if example["qa"]["source"] == "manual.txt":  # a distractor from the same document, one from anywhere
            assert prompt.count("(manual.txt") >= (2 if example["kind"] == "context" else 1)
            assert prompt.count("Section ") + prompt.count("It was safe") == 3 - (example["kind"] == "abstain")


def test_grounded_rows_about_ingested_chunks_become_search_tasks_and_no_synthetic_questions(
    bundled_embedder: str, tiny_lm: str, tmp_path: Path
) -> None:
    from assistant.config import AssistantConfig
    from assistant.retrieval import Retriever
    from assistant.settings import Settings
    from assistant.tools import build_registry
    from assistant.training import training_formats
    from finetune.config import FinetuneConfig
    from finetune.data import build_dataset
    from finetune.synth import load_chunks
    from ingest import IngestConfig, ingest

    ingest_config = IngestConfig(home=str(tmp_path / "home"), embedding_model=bundled_embedder)
    ingest([SAMPLE], ingest_config, progress=False)
    config = AssistantConfig(model=tiny_lm)
    asked = {
        "question": "What is the name of error E116?",
        "answer": "Current clamp reversed",
        "context": "code: E116; name: Current clamp reversed",
        "source": "error-codes.csv",
    }
    elsewhere = {"question": "Who wrote it?", "answer": "Ada", "context": "Ada wrote it.", "source": "other.txt"}
    file = tmp_path / "rows.jsonl"
    file.write_text(json.dumps(asked) + "\n" + json.dumps(elsewhere) + "\n")
    registry = build_registry(ingest_config, lambda: Retriever.from_config(ingest_config, config), ())
    formats = training_formats(Settings(ingest=ingest_config, assistant=config), registry)
    tune = FinetuneConfig(examples=(str(file),), tool_examples=40, max_tokens=4000, val_share=0.0, test_share=0.0)

    def build(**settings: Any) -> list[dict[str, Any]]:
        out = tmp_path / "ds"
        build_dataset(dataclasses.replace(tune, **settings), ingest_config, config.model, formats, out)
        return [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]

    examples = build(synthetic="none")  # the search tasks' questions are the rows' only

    searches = [e for e in examples if e["kind"] == "tool:documents"]
    mine = [e for e in searches if e["question"] == asked["question"]]
    assert len(mine) == 1 and not [e for e in searches if e["question"] == elsewhere["question"]]
    reply, result = mine[0]["messages"][-1]["content"], mine[0]["messages"][-2]["content"]
    assert reply.startswith("Current clamp reversed [") and "Current clamp reversed" in result
    chunk = next(c for c in load_chunks(ingest_config, embeddings=False) if "Current clamp reversed" in c.text)
    assert mine[0]["chunk_ids"] == [chunk.id]
    synthetic = [e for e in build(tool_examples=0) if e["origin"].startswith("synthetic:context")]
    assert synthetic and all(e["qa"]["chunk_id"] != chunk.id for e in synthetic)  # asked in the user's words only
