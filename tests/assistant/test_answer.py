"""Packing, citations, the nothing-relevant outcome and follow-up rewriting, with a scripted model."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.answer import Answer, Token, ask
from assistant.errors import AssistantError
from assistant.prompt import NOTHING_RELEVANT, SYSTEM_RAG, pack
from assistant.retrieval import Hit, Retriever
from ingest import IngestConfig, ingest
from tests.conftest import ScriptedModel


def _hit(n: int, words: int = 20) -> Hit:
    text = " ".join(f"w{n}" for _ in range(words))
    return Hit(f"id{n}", text, {"source": f"/docs/file{n}.txt", "page": n}, 1.0 / n, 0.5, n, None)


def test_sources_are_packed_by_rank_and_dropped_ones_reported(scripted: ScriptedModel) -> None:
    hits = [_hit(1), _hit(2, words=300), _hit(3)]
    empty = scripted.count_tokens(pack("q?", [], [], scripted.count_tokens, 10_000).messages)
    packed = pack("What is it?", hits, [], scripted.count_tokens, budget=200)
    assert [h.id for h in packed.sources] == ["id1", "id3"]
    assert [h.id for h in packed.dropped] == ["id2"]
    assert packed.messages[0] == {"role": "system", "content": SYSTEM_RAG}
    user = packed.messages[-1]["content"]
    assert "[1] (file1.txt, p. 1)" in user and "[2] (file3.txt, p. 3)" in user
    # numbered by rank, the best shown last: right before the question, where a small model reads most
    assert user.index("[2] (file3.txt") < user.index("[1] (file1.txt")
    assert user.endswith(f"[1] (file1.txt, p. 1)\n{hits[0].text}\n\nQuestion: What is it?")
    assert packed.prompt_tokens == scripted.count_tokens(packed.messages) <= 200
    assert empty < packed.prompt_tokens


def test_history_is_trimmed_before_sources_and_long_questions_refused(scripted: ScriptedModel) -> None:
    history = [{"role": "user", "content": "old " * 80}, {"role": "assistant", "content": "reply " * 80}]
    packed = pack("New question?", [_hit(1)], history, scripted.count_tokens, budget=120)
    assert len(packed.messages) == 2 and packed.sources
    with pytest.raises(AssistantError, match="too long for the model's context"):
        pack("word " * 500, [], [], scripted.count_tokens, budget=100)
    with pytest.raises(AssistantError, match="question is empty"):
        pack("  ", [], [], scripted.count_tokens, budget=100)


@pytest.fixture
def retriever(tmp_path: Path, tiny_config: IngestConfig) -> Retriever:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "battery.md").write_text("The battery stores 10 kWh. Its warranty lasts ten years.")
    (folder / "fan.txt").write_text("The fan gets quieter after firmware 1.4.")
    ingest([folder], tiny_config, progress=False)
    return Retriever(tiny_config, min_score=-1.0)


def test_answer_streams_and_cites(scripted: ScriptedModel, retriever: Retriever) -> None:
    scripted.enqueue("It stores 10 kWh [1] and more [9].")
    events = list(ask("How much does the battery store?", scripted, retriever, k=2))
    tokens = [e.text for e in events if isinstance(e, Token)]
    answer = events[-1]
    assert isinstance(answer, Answer) and len(tokens) > 3
    assert answer.text == "It stores 10 kWh [1] and more [9]."
    assert answer.cited == [1], "a citation beyond the sources is not counted"
    assert len(answer.sources) == 2 and answer.relevant
    assert answer.prompt_tokens > 0 and answer.completion_tokens == 8
    assert {"retrieval_s", "first_token_s", "total_s"} <= set(answer.timings)


def test_nothing_relevant_never_calls_the_model(scripted: ScriptedModel, retriever: Retriever) -> None:
    retriever.min_score = 0.9999
    events = list(ask("What is the capital of Peru?", scripted, retriever))
    assert isinstance(events[-1], Answer) and not events[-1].relevant
    assert events[-1].text == NOTHING_RELEVANT and scripted.prompts == []


def test_follow_up_is_rewritten_before_retrieval(scripted: ScriptedModel, retriever: Retriever) -> None:
    history = [
        {"role": "user", "content": "Tell me about the fan firmware."},
        {"role": "assistant", "content": "Firmware 1.4 makes the fan quieter."},
    ]
    scripted.enqueue("Which firmware version makes the fan quieter?", "Firmware 1.4 [1].")
    answer = list(ask("Which version?", scripted, retriever, history=history, k=1, rewrite="guarded"))[-1]
    assert isinstance(answer, Answer)
    assert answer.query == "Which firmware version makes the fan quieter?"
    assert "Which version?" in scripted.prompts[0][0]["content"], "the rewrite prompt carries the question"
    assert scripted.prompts[1][-1]["content"].endswith("Question: Which version?")


def test_an_invented_rewrite_is_not_searched(scripted: ScriptedModel, retriever: Retriever) -> None:
    history = [{"role": "user", "content": "Tell me about the fan."}, {"role": "assistant", "content": "It is quiet."}]
    scripted.enqueue("The warranty for E116 lasts 12 months.", "Firmware 1.4 [1].")
    answer = list(ask("How long does it last?", scripted, retriever, history=history, k=1, rewrite="guarded"))[-1]
    assert isinstance(answer, Answer)
    assert answer.query == "How long does it last? | Tell me about the fan. How long does it last?"
    scripted.enqueue("Firmware 1.4 [1].")
    fused = list(ask("How long does it last?", scripted, retriever, history=history, k=1))[-1]
    assert isinstance(fused, Answer) and fused.query == answer.query, "fused: the same queries, no model call"
    assert len(scripted.prompts) == 3


def test_a_self_contained_question_is_searched_as_asked(scripted: ScriptedModel, retriever: Retriever) -> None:
    history = [{"role": "user", "content": "Tell me about the fan."}, {"role": "assistant", "content": "It is quiet."}]
    scripted.enqueue("Firmware 1.4 [1].")
    answer = list(ask("Which firmware version makes the fan quieter?", scripted, retriever, history=history))[-1]
    assert isinstance(answer, Answer) and answer.query == "Which firmware version makes the fan quieter?"
    assert len(scripted.prompts) == 1, "no rewrite was asked for"


def test_closed_book_and_oracle_context(scripted: ScriptedModel) -> None:
    scripted.enqueue("Paris.", "Lima [1].")
    closed = list(ask("Capital of France?", scripted))[-1]
    assert isinstance(closed, Answer) and closed.sources == [] and "Sources" not in scripted.prompts[0][0]["content"]
    oracle = list(ask("Capital of Peru?", scripted, context=[_hit(1)]))[-1]
    assert isinstance(oracle, Answer) and [h.id for h in oracle.sources] == ["id1"]
    assert oracle.checked is not None and oracle.checked.corrected and oracle.cited == [], "[1] does not say Lima"
    scripted.enqueue("Lima is the capital.")
    peru = Hit("p", "Lima is the capital of Peru.", {"source": "peru.txt"}, 1.0, 1.0, 1, 1)
    cited = list(ask("Capital of Peru?", scripted, context=[peru]))[-1]
    assert isinstance(cited, Answer) and cited.cited == [1] and cited.cited_text() == "Lima is the capital [1]."


@pytest.mark.parametrize(
    ("reply", "kept", "kind"),
    [
        (
            "The warranty ends when the battery is sold. " * 17,
            "The warranty ends when the battery is sold.",
            "sentence",
        ),
        ("The answer is: 1. " * 30, "The answer is: 1.", ""),
        ("Five years [1].\nQuestion: What is the fan?\nAnswer: A fan.", "Five years [1].", "invented_turn"),
        ("".join(f"{n}. Check the fan vents now.\n" for n in range(1, 9)), "1. Check the fan vents now.", ""),
    ],
)
def test_a_looping_reply_is_cut_where_it_starts_repeating(
    scripted: ScriptedModel, reply: str, kept: str, kind: str
) -> None:
    scripted.enqueue(reply)
    events = list(ask("How long is the warranty?", scripted, context=[_hit(1)], answer_tokens=400))
    answer = events[-1]
    assert isinstance(answer, Answer) and answer.looped and (kind in answer.looped)
    assert answer.text.startswith(kept) and answer.text.count(kept) == 1
    shown = "".join(e.text for e in events if isinstance(e, Token))
    assert shown.count(kept) <= 2, "the stream stopped soon after the loop began"
    assert not scripted.finished, "the model's stream was closed at the loop"


def test_the_loop_guard_can_be_turned_off(scripted: ScriptedModel) -> None:
    scripted.enqueue("Again and again we go. " * 5)
    answer = list(ask("Why?", scripted, loop_guard=False, answer_tokens=400))[-1]
    assert isinstance(answer, Answer) and not answer.looped and answer.text.count("Again and again") == 5


def test_the_answer_is_asked_for_in_the_questions_language(scripted: ScriptedModel) -> None:
    from ingest.languages import documents_do_not_say, nothing_relevant

    question = "Сколько энергии хранит эта батарея в киловатт-часах?"
    prompt = pack(question, [_hit(1)], [], scripted.count_tokens, 400).messages[0]["content"]
    assert "Answer in Russian" in prompt and documents_do_not_say("ru") in prompt
    english = pack("How much energy does this battery store?", [_hit(1)], [], scripted.count_tokens, 400)
    assert english.messages[0]["content"] == SYSTEM_RAG
    assert NOTHING_RELEVANT == nothing_relevant("en") != nothing_relevant("zh")


def test_nothing_relevant_is_said_in_the_questions_language(tmp_path: Path, tiny_config: IngestConfig) -> None:
    from ingest.languages import nothing_relevant

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("The battery stores ten kilowatt hours.")
    ingest([docs], tiny_config, progress=False)
    retriever = Retriever(tiny_config, min_score=0.9999)
    answer = list(ask("这个电池可以储存多少能量？", ScriptedModel(), retriever))[-1]
    assert isinstance(answer, Answer) and answer.text == nothing_relevant("zh") and not answer.relevant
