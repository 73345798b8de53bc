"""`ragtune eval`: datasets, the hit rule, and the baseline, on a tiny question set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.errors import AssistantError
from assistant.evaluate import evaluate_retrieval, load_dataset
from tests.conftest import make_adapter

ROWS = [
    {
        "question": "Which gas do zeppelins float on?",
        "answers": ["hydrogen"],
        "context": "Zeppelins float on hydrogen gas, which burns easily.",
        "title": "Airships",
    },
    {
        "question": "Who prunes tomatoes in summer?",
        "answers": ["gardeners"],
        "context": "In summer, gardeners prune tomatoes so the fruit ripens.",
        "title": "Garden",
    },
    {
        "question": "What colour is the fan?",
        "answers": ["grey"],
        "context": "The fan is grey and gets quieter after firmware 1.4.",
        "title": "Fan",
    },
]


def test_jsonl_and_squad_load_with_answer_spans(tmp_path: Path) -> None:
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in ROWS))
    data = load_dataset(jsonl)
    assert len(data.questions) == 3 and len(data.documents) == 3
    for q in data.questions:
        text = data.documents[q.document]
        assert all(text[a:b] in q.answers for a, b in q.spans)
    squad = tmp_path / "squad.json"
    paragraphs = [
        {
            "context": r["context"],
            "qas": [
                {
                    "id": str(i),
                    "question": r["question"],
                    "answers": [{"text": r["answers"][0], "answer_start": r["context"].index(r["answers"][0])}],
                }
            ],
        }
        for i, r in enumerate(ROWS)
    ]
    squad.write_text(json.dumps({"data": [{"title": "All", "paragraphs": paragraphs}]}))
    data = load_dataset(squad, limit=2)
    assert len(data.questions) == 2 and list(data.documents) == ["All.txt"]
    q = data.questions[1]
    assert data.documents["All.txt"][q.spans[0][0] : q.spans[0][1]] == "gardeners"


def test_bad_datasets_are_user_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    with pytest.raises(AssistantError, match="line 1: expected a JSON object with question, answers and context"):
        load_dataset(bad)
    with pytest.raises(AssistantError, match="cannot read"):
        load_dataset(tmp_path / "missing.json")


def test_retrieval_eval_scores_ours_and_the_baseline(tmp_path: Path, tiny_config) -> None:
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in ROWS))
    result = evaluate_retrieval(load_dataset(jsonl), tiny_config)
    assert result["questions"] == 3
    for name in ("ragtune", "baseline"):
        row = result[name]
        assert 0.0 <= row["recall@1"] <= row["recall@5"] <= row["recall@10"] <= 1.0
    assert result["baseline"]["chunks"] == 3 <= result["ragtune"]["chunks"]
    # Each question shares rare words with its own paragraph only: BM25 ranks it first.
    assert result["ragtune"]["recall@1"] == 1.0
    assert result["ragtune"]["recall@5"] == result["baseline"]["recall@5"] == 1.0


def test_answers_eval_runs_every_arm_with_and_without_an_adapter(tmp_path: Path, tiny_config, tiny_lm: str) -> None:
    from assistant.backends import load_model
    from assistant.config import AssistantConfig
    from assistant.evaluate import evaluate_answers

    adapter = make_adapter(tiny_lm, tmp_path / "adapter")
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in ROWS))
    config = AssistantConfig(model=tiny_lm, context_window=512, answer_tokens=8, k=2, candidates=3, min_score=-1.0)
    model = load_model(config, tiny_config.home_path, "")
    arms = ["closed-book", "rag", "oracle"]
    result = evaluate_answers(load_dataset(jsonl), tiny_config, config, model, arms, str(adapter), answer_tokens=4)
    assert result["questions"] == 3
    assert set(result["arms"]) == {f"{v}/{a}" for v in ("base", "adapter") for a in ("closed-book", "rag", "oracle")}
    for row in result["arms"].values():
        assert 0.0 <= row["em"] <= row["f1"] <= 100.0 and row["seconds"] >= 0
