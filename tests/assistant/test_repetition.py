"""Loops are found, cut after their first occurrence and stopped while streaming; normal answers pass untouched."""

from __future__ import annotations

import pytest

from assistant.repetition import LoopGuard, find_loop, guard_stream, stopping_criteria, trim_loop
from tests.conftest import ScriptedModel

SENTENCE = "The warranty ends when the battery is sold to a new owner."
INVENTED = (
    "Error E116 means the parallel units do not match [1].\n\n"
    "Question: How long is the warranty?\nAnswer: The warranty lasts 10 years.\n"
    "Question: What is E117?\nAnswer: E117 means the fan is blocked."
)
RUNAWAY = "To reset the unit:\n" + "".join(f"{n}. Press the reset button {n}.\n" for n in range(1, 40))
NORMAL = [
    "To install the battery:\n1. Turn off the inverter.\n2. Mount the bracket on the wall.\n"
    "3. Connect the DC cables.\n4. Switch on the breaker.\n5. Start the app and pair the unit.",
    "Models:\n- Home 5: 5 kWh\n- Home 10: 10 kWh\n- Home 15: 15 kWh\n- Home 20: 20 kWh\n- Home 25: 25 kWh",
    "No, no: the warranty does not cover misuse. It is very, very important to register the unit. Yes. Yes.",
    "The battery stores 10 kWh [1]. The battery weighs 95 kg [2]. The battery is rated IP65 [1]. "
    "The battery ships with a wall bracket [3].",
    "Press OK. Then press OK again. Wait for the beep, then press OK.",
    "保修期为十年。电池容量为十千瓦时。错误代码E116表示并联单元不匹配。",
    "Super Bowl 50 was played on February 7, 2016, at Levi's Stadium in Santa Clara, California [1]. "
    "The Denver Broncos beat the Carolina Panthers 24 to 10 [1].",
]


def _stream(model: ScriptedModel, reply: str) -> tuple[str, LoopGuard]:
    model.enqueue(reply)
    guard = LoopGuard()
    shown = "".join(guard_stream(model.stream([], max_new_tokens=10_000), guard))
    return shown, guard


def test_a_sentence_said_17_times_stops_at_its_second_occurrence_and_is_never_shown(scripted: ScriptedModel) -> None:
    shown, guard = _stream(scripted, " ".join([SENTENCE] * 17))
    assert guard.loop is not None and guard.loop.kind == "repeated_sentence"
    assert guard.text == SENTENCE
    assert shown.strip() == SENTENCE and not guard.retracted
    assert not scripted.finished and scripted.emitted <= 2 * len(SENTENCE.split()) + 1  # generation was ended


def test_a_short_answer_repeated_30_times_keeps_one(scripted: ScriptedModel) -> None:
    shown, guard = _stream(scripted, "It depends on the setting. " + "The answer is: 1. " * 30)
    assert guard.text == "It depends on the setting. The answer is: 1."
    assert shown.strip() == guard.text
    assert not scripted.finished


def test_an_invented_question_and_answer_after_the_answer_is_cut(scripted: ScriptedModel) -> None:
    shown, guard = _stream(scripted, INVENTED)
    assert guard.loop is not None and guard.loop.kind == "invented_turn"
    assert guard.text == "Error E116 means the parallel units do not match [1]."
    assert "Question" not in shown and shown.strip() == guard.text


def test_a_runaway_numbered_list_keeps_its_first_item(scripted: ScriptedModel) -> None:
    shown, guard = _stream(scripted, RUNAWAY)
    assert guard.loop is not None and guard.loop.kind == "runaway_list"
    assert guard.text == "To reset the unit:\n1. Press the reset button 1."
    assert not scripted.finished
    # list items are only recognised as a run once several are out: what was shown beyond the cut is reported
    assert shown.startswith(guard.text) and guard.retracted.lstrip().startswith("2. Press the reset button 2.")


@pytest.mark.parametrize(
    ("text", "kind", "kept"),
    [
        ("Charge it: " + "the battery " * 12, "repeated_phrase", "Charge it: the battery"),
        ("Values: " + "1, " * 40, "repeated_phrase", "Values: 1"),
        (
            "A claim needs the receipt and the serial number of the unit. "
            + "Send the receipt and the serial number of the unit to us, then wait. " * 3,
            "repeated_ngram",
            "A claim needs the receipt and the serial number of the unit.",
        ),
        (
            "When the battery shows E115, it gets no data from the energy meter, which means that"
            + " it gets no data from the energy meter, which means that" * 3,
            "repeated_ngram",
            "When the battery shows E115, it gets no data from the energy meter",  # not "..., which means that"
        ),
        ("电池容量为十千瓦时。" * 6, "repeated_sentence", "电池容量为十千瓦时。"),
        ("- Fan\n- Fan\n- Fan\n- Fan\n- Fan\n- Fan", "runaway_list", "- Fan"),
    ],
)
def test_each_loop_shape_is_found_and_cut_after_its_first_occurrence(text: str, kind: str, kept: str) -> None:
    loop = find_loop(text)
    assert loop is not None and loop.kind == kind
    assert trim_loop(text) == kept


@pytest.mark.parametrize("text", NORMAL)
def test_normal_answers_are_not_loops_and_stream_unchanged(text: str) -> None:
    assert find_loop(text) is None
    guard = LoopGuard()
    pieces = [guard.feed(word + " ") for word in text.split(" ")]
    assert "".join([*pieces, guard.finish()]).rstrip() == text
    assert guard.text.rstrip() == text and not guard.stopped


def test_text_that_may_be_a_repeat_is_held_back_until_it_differs() -> None:
    guard = LoopGuard()
    assert guard.feed("The battery stores 10 kWh. ") == "The battery stores 10 kWh. "
    assert guard.feed("The battery ") == ""  # so far the start of the first sentence again
    assert guard.feed("weighs ") == "The battery weighs "
    assert guard.feed("95 kg.\n") == "95 kg.\n"
    assert guard.feed("Question") == ""  # could be an invented "Question:" turn
    assert guard.feed(": what else?") == ""
    assert guard.stopped and guard.finish() == ""
    assert guard.text == "The battery stores 10 kWh. The battery weighs 95 kg."


def test_stopping_criteria_ends_generation_at_the_first_loop(tiny_lm: str) -> None:
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    prompt = tokenizer("battery warranty", return_tensors="pt")["input_ids"]
    reply = tokenizer(" ".join(["the battery capacity power warranty ."] * 6), return_tensors="pt")["input_ids"]
    criteria = stopping_criteria(tokenizer, prompt.shape[1])
    stops = [bool(criteria(torch.cat([prompt, reply[:, :n]], dim=1), None)[0]) for n in range(1, reply.shape[1] + 1)]
    first = stops.index(True)
    assert not any(stops[:first]) and all(stops[first:])
    assert first + 1 == 13  # the second sentence is complete once the next word begins
    assert criteria.guards[0].text == "the battery capacity power warranty ."


def test_stopping_criteria_stops_a_real_generate_call(tiny_lm: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteriaList

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    inputs = tokenizer("the battery", return_tensors="pt")
    length = inputs["input_ids"].shape[1]
    with torch.no_grad():
        free = model.generate(**inputs, max_new_tokens=120, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        criteria = stopping_criteria(tokenizer, length)
        guarded = model.generate(
            **inputs,
            max_new_tokens=120,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            stopping_criteria=StoppingCriteriaList([criteria]),
        )
    text = tokenizer.decode(free[0, length:], skip_special_tokens=True)
    loop = find_loop(text)
    assert loop is not None  # greedy decoding of random weights repeats itself
    assert guarded.shape[1] < free.shape[1]
    assert criteria.guards[0].text == trim_loop(text)
