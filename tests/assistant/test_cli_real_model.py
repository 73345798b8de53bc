"""`ragtune search`, `ragtune ask` and `ragtune ask --agent` end to end with the real bundled embedder and model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import run_ragtune


@pytest.mark.slow
def test_search_and_ask_with_the_bundled_models(tmp_path: Path, bundled_embedder: str) -> None:
    pytest.importorskip("gguf")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "club.txt").write_text("The secret password of the Zork club is PINEAPPLE. Members meet on Tuesdays.\n")
    (docs / "garden.txt").write_text("Tomatoes need sun, water and a stake to climb.\n")
    assert run_ragtune("ingest", str(docs)).returncode == 0

    found = run_ragtune("search", "Zork club password", "--json", "--k", "1")
    assert found.returncode == 0, found.stderr
    hit = json.loads(found.stdout)["hits"][0]
    assert hit["source"].endswith("club.txt") and "PINEAPPLE" in hit["text"]

    batch = tmp_path / "queries.jsonl"
    batch.write_text('{"id": "a", "query": "tomatoes"}\n{"id": "b", "query": "Zork"}\n')
    lines = [json.loads(x) for x in run_ragtune("search", "--batch", str(batch), "--k", "1").stdout.splitlines()]
    assert [x["id"] for x in lines] == ["a", "b"]
    assert lines[0]["hits"][0]["source"].endswith("garden.txt")

    asked = run_ragtune("ask", "What is the secret password of the Zork club?", "--json", "--k", "2")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert "pineapple" in answer["answer"].lower()
    assert answer["sources"][0]["source"].endswith("club.txt")
    assert answer["tokens"]["prompt"] > 0 and answer["tokens"]["completion"] > 0
    assert answer["timings"]["first_token_s"] > 0

    # agent mode: the bundled model gets the tool prompt and always comes back with an answer
    agent = run_ragtune("ask", "--agent", "What is 17 times 23?", "--json", "--set", "answer_tokens=48")
    assert agent.returncode == 0, agent.stderr
    reply = json.loads(agent.stdout)
    assert reply["answer"].strip() and reply["stopped"] in ("answer", "step_limit", "unreadable_call", "empty_reply")
    assert reply["tokens"]["prompt"] > 300  # the system prompt carries the five tool schemas
    assert all(c["name"] for c in reply["calls"])

    empty = run_ragtune("ask", "   ")
    assert empty.returncode == 2 and empty.stderr.startswith("error: the question is empty")
    assert run_ragtune("ask", "hello", "--collection", "nothing-here").stderr.startswith(
        "error: collection 'nothing-here' is empty"
    )
    missing = run_ragtune("ask", "hello", "--no-rag", "--model", str(tmp_path / "no-model"))
    assert missing.returncode == 2 and "could not be loaded" in missing.stderr


@pytest.mark.slow
def test_the_bundled_model_answers_e116_once_and_cites_the_error_table(
    _isolated_home: Path, bundled_embedder: str, bundled_llm_models: Path
) -> None:
    from assistant.repetition import find_loop

    shutil.copytree(bundled_llm_models, _isolated_home / "models")  # converted once per test session
    assert run_ragtune("ingest").returncode == 0
    asked = run_ragtune("ask", "What does error E116 mean and how is it fixed?", "--json")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    sentences = [" ".join(s["text"].lower().split()) for s in answer["checked"]["sentences"]]
    assert sentences and len(sentences) == len(set(sentences)), answer["answer"]
    assert find_loop(answer["answer"]) is None, answer["answer"]
    assert answer["cited"], answer["answer"]  # the base model cites nothing itself: attached after generation
    sources = {s["n"]: s["text"] for s in answer["sources"]}
    assert any("E116" in text for text in sources.values()), "the error table's E116 row is among the sources"
    for sentence in answer["checked"]["sentences"]:  # a claim about E116 is cited only to a passage that has E116
        if "E116" in sentence["text"] and sentence["cited"]:
            assert all("E116" in sources[n] for n in sentence["cited"]), sentence
