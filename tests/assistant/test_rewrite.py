"""Follow-up rewrites may only use words of the conversation; self-contained questions are searched as asked."""

from __future__ import annotations

import pytest

from assistant.rewrite import fuse, fused_queries, guard_rewrite, is_self_contained, new_words
from tests.conftest import ScriptedModel

HISTORY = [
    {"role": "user", "content": "What does error E116 mean?"},
    {"role": "assistant", "content": "E116 means a parallel unit mismatch: the units run different firmware [1]."},
]


def _rewrite(model: ScriptedModel, reply: str) -> str:
    model.enqueue(reply)
    return "".join(model.stream([{"role": "user", "content": "rewrite"}], max_new_tokens=64))


def test_an_invented_rewrite_is_rejected(scripted: ScriptedModel) -> None:
    question = "How long does it last?"
    reply = _rewrite(scripted, "The warranty for E116 (parallel unit mismatch) lasts for 12 months.")
    assert new_words(reply, question, HISTORY) == {"warrant", "12", "month"}
    assert guard_rewrite(question, HISTORY, reply) is None


def test_a_rewrite_made_of_the_conversation_s_words_is_kept(scripted: ScriptedModel) -> None:
    reply = _rewrite(scripted, '"How do I fix error E116?"\nThis asks about the fix.')
    assert guard_rewrite("How do I fix it?", HISTORY, reply) == "How do I fix error E116?"
    plural = _rewrite(scripted, "How do I fix parallel units mismatches?")
    assert guard_rewrite("How do I fix it?", HISTORY, plural) == "How do I fix parallel units mismatches?"


@pytest.mark.parametrize(
    "reply",
    [
        "E116 means a parallel unit mismatch.",  # a statement: the model answered instead of rewriting
        "What does error E116 mean?",  # the follow-up's own words ("fix") are gone
        "How do I fix error E116 on the inverter?",  # "inverter" comes from nowhere
        "How do I fix error E117?",  # a number from nowhere
        "",
    ],
)
def test_rewrites_that_answer_drop_the_question_or_add_words_are_rejected(reply: str) -> None:
    assert guard_rewrite("How do I fix it?", HISTORY, reply) is None


def test_a_self_contained_question_is_never_replaced() -> None:
    question = "How long does the warranty last?"
    assert is_self_contained(question, HISTORY)
    assert guard_rewrite(question, HISTORY, "How long does the warranty last?") is None
    assert fused_queries(question, HISTORY) == [question]


@pytest.mark.parametrize(
    ("question", "contained"),
    [
        ("How long does the warranty last?", True),
        ("What did Tesla do after he left Edison?", True),  # "he" has its name in the question
        ("Which firmware version fixes error E116 on the Home 10?", True),
        ("Who founded the company and when did it go public?", True),  # "it" is the company
        ("How do I fix it?", False),
        ("What was the occupation of his father?", False),  # "his" needs a person named before it
        ("When was it founded?", False),
        ("Which team represented the AFC at it?", False),
        ("What is their capacity?", False),
        ("And the inverter?", False),
        ("What about E117?", False),
        ("Why is that?", False),
        ("How much?", False),
        ("Does the same apply to the fan?", False),
    ],
)
def test_self_contained_questions_are_told_from_follow_ups(question: str, contained: bool) -> None:
    assert is_self_contained(question, HISTORY) is contained
    assert is_self_contained(question, [])  # nothing to refer to: searched as asked


def test_fused_queries_join_the_follow_up_to_the_previous_user_turn() -> None:
    assert fused_queries("How do I fix it?", HISTORY) == [
        "How do I fix it?",
        "What does error E116 mean? How do I fix it?",
    ]
    assert fused_queries("How do I fix it?", [{"role": "assistant", "content": "Hello."}]) == ["How do I fix it?"]


def test_fuse_ranks_by_reciprocal_rank_and_keeps_each_item_once() -> None:
    first = [("a", 1), ("b", 1), ("c", 1)]
    second = [("c", 2), ("d", 2), ("a", 2)]
    fused = fuse([first, second], key=lambda item: item[0])
    assert [name for name, _ in fused] == ["a", "c", "b", "d"]
    assert fused[0] == ("a", 1)  # the first occurrence is kept
    assert fuse([["x"], ["y"]]) == ["x", "y"]  # a tie keeps the order of first appearance
