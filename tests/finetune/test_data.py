"""Training examples from the user's files: every format, bad rows by line, deduplication, stable splits."""

from __future__ import annotations

import json

import pytest

from finetune.data import deduplicate, filter_length, question_of, read_examples, split, to_messages, write_splits

ROWS = [
    {"messages": [{"role": "user", "content": "What is E116?"}, {"role": "assistant", "content": "A reversed clamp."}]},
    {"instruction": "Name the default mode.", "input": "", "output": "Self-Consumption."},
    {"instruction": "Translate.", "input": "Hallo", "output": "Hello", "system": "You translate."},
    {"conversations": [{"from": "human", "value": "How heavy is it?"}, {"from": "gpt", "value": "98 kg."}]},
]


def test_every_format_becomes_chat_messages(tmp_path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    loaded = read_examples(path)
    assert loaded.problems == []
    assert [e["origin"] for e in loaded.examples] == ["mine.jsonl:1", "mine.jsonl:2", "mine.jsonl:3", "mine.jsonl:4"]
    assert loaded.examples[1]["messages"] == [
        {"role": "user", "content": "Name the default mode."},
        {"role": "assistant", "content": "Self-Consumption."},
    ]
    assert loaded.examples[2]["messages"][0] == {"role": "system", "content": "You translate."}
    assert loaded.examples[2]["messages"][1]["content"] == "Translate.\n\nHallo"
    assert loaded.examples[3]["messages"][1] == {"role": "assistant", "content": "98 kg."}
    assert all(e["chunk_ids"] == [] for e in loaded.examples)

    as_array = tmp_path / "mine.json"
    as_array.write_text(json.dumps(ROWS, indent=2))
    assert [e["messages"] for e in read_examples(as_array).examples] == [e["messages"] for e in loaded.examples]


def test_bad_rows_are_reported_with_their_line_and_the_rest_kept(tmp_path) -> None:
    path = tmp_path / "messy.jsonl"
    lines = [
        json.dumps(ROWS[0]),
        "{not json",
        json.dumps({"prompt": "x", "completion": "y"}),
        json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),
        json.dumps({"messages": [{"role": "robot", "content": "hi"}]}),
        json.dumps({"instruction": "Do it.", "output": ""}),
        json.dumps({"conversations": [{"from": "alien", "value": "x"}]}),
        json.dumps([1, 2]),
        "",
        json.dumps(ROWS[3]),
    ]
    path.write_text("\n".join(lines) + "\n")
    loaded = read_examples(path)
    assert [e["origin"] for e in loaded.examples] == ["messy.jsonl:1", "messy.jsonl:10"]
    assert [p.split(": ", 1)[0] for p in loaded.problems] == [f"messy.jsonl:{n}" for n in (2, 3, 4, 5, 6, 7, 8)]
    assert "not valid JSON" in loaded.problems[0]
    assert "unknown format" in loaded.problems[1]
    assert "last message must be the assistant's" in loaded.problems[2]
    assert "role among" in loaded.problems[3]
    assert "output is empty" in loaded.problems[4]
    assert '"from" among' in loaded.problems[5]
    assert "expected a JSON object" in loaded.problems[6]

    broken = tmp_path / "broken.json"
    broken.write_text('[{"instruction": "a", "output": "b"},\n oops]')
    assert read_examples(broken).problems[0].startswith("broken.json:2: not valid JSON")
    assert read_examples(tmp_path / "absent.jsonl").problems[0].endswith("cannot be read (No such file or directory)")


def test_no_user_message_is_refused() -> None:
    with pytest.raises(ValueError, match="no user message"):
        to_messages({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]})


def example(question: str, answer: str = "a") -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def test_deduplication_and_length_filter() -> None:
    kept, dropped = deduplicate([example("Q one"), example("Q  one"), example("Q one", "b"), example("Q two")])
    assert dropped == 1 and [e["messages"][1]["content"] for e in kept] == ["a", "b", "a"]
    fits, too_long = filter_length([example("short"), example("long " * 50)], lambda m: len(str(m).split()), 20)
    assert len(fits) == 1 and question_of(too_long[0]).startswith("long long")


def test_splits_never_share_a_question_and_are_stable() -> None:
    examples = [example(f"Question {n}?", answer) for n in range(300) for answer in ("a", "b")]
    splits = split(examples, val=0.1, test=0.2, seed=3)
    questions = {name: {question_of(e) for e in rows} for name, rows in splits.items()}
    assert not (questions["train"] & questions["val"]) and not (questions["train"] & questions["test"])
    assert not (questions["val"] & questions["test"])
    assert sum(len(rows) for rows in splits.values()) == 600
    assert 0.12 < len(splits["test"]) / 600 < 0.28 and 0.04 < len(splits["val"]) / 600 < 0.16
    # adding data never moves an existing question to another split
    more = split([*examples, *(example(f"New {n}") for n in range(100))], val=0.1, test=0.2, seed=3)
    assert {question_of(e) for e in splits["test"]} <= {question_of(e) for e in more["test"]}
    assert split(examples, val=0.1, test=0.2, seed=4)["test"] != splits["test"]
    with pytest.raises(ValueError):
        split(examples, val=0.6, test=0.5)


def test_splits_replace_the_previous_build_and_leave_no_temporary_files(tmp_path) -> None:
    folder = tmp_path / "data"
    write_splits({"train": [example("a")], "val": [], "test": [example("b")]}, folder, {"examples": 2})
    assert sorted(p.name for p in folder.iterdir()) == ["report.json", "test.jsonl", "train.jsonl", "val.jsonl"]
    assert json.loads((folder / "train.jsonl").read_text())["messages"][0]["content"] == "a"
    write_splits({"train": [], "val": [], "test": []}, folder, {"examples": 0})
    assert (folder / "train.jsonl").read_text() == "" and json.loads((folder / "report.json").read_text()) == {
        "examples": 0
    }
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temporary folders left behind
