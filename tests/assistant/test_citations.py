"""Post-hoc citations: supported sentences get the right [n], wrong ones are corrected, the rest flagged."""

from __future__ import annotations

import pytest

from assistant.citations import check_citations, split_sentences
from tests.conftest import ScriptedModel

SOURCES = [
    (1, "The Home 10 battery stores 10 kWh. Its warranty lasts ten years from the date of purchase."),
    (2, "Error E116 means a parallel unit mismatch. Update the firmware of every unit to fix it."),
    (3, "A full firmware update takes 52 minutes. Do not switch the inverter off during the update."),
]


def _answer(model: ScriptedModel, reply: str) -> str:
    model.enqueue(reply)
    return "".join(model.stream([{"role": "user", "content": "question"}], max_new_tokens=200))


def test_a_supported_sentence_gets_the_number_of_its_source(scripted: ScriptedModel) -> None:
    checked = check_citations(_answer(scripted, "The warranty lasts ten years from the date of purchase."), SOURCES)
    [sentence] = checked.sentences
    assert sentence.cited == [1] and sentence.supported and sentence.added and not sentence.corrected
    assert checked.text == "The warranty lasts ten years from the date of purchase [1]."
    assert checked.has_citation and checked.cited == [1] and checked.unsupported_rate == 0.0


def test_an_unsupported_sentence_is_flagged(scripted: ScriptedModel) -> None:
    reply = _answer(scripted, "E116 means a parallel unit mismatch. The fan must be cleaned every week.")
    checked = check_citations(reply, SOURCES)
    supported, unsupported = checked.sentences
    assert supported.cited == [2] and supported.supported
    assert unsupported.cited == [] and not unsupported.supported
    assert checked.unsupported == [unsupported] and checked.unsupported_rate == 0.5
    assert checked.render(" (not in the sources)") == (
        "E116 means a parallel unit mismatch [2]. The fan must be cleaned every week (not in the sources)."
    )


def test_a_wrong_model_citation_is_corrected(scripted: ScriptedModel) -> None:
    checked = check_citations(_answer(scripted, "To fix E116, update the firmware of every unit [1]."), SOURCES)
    [sentence] = checked.sentences
    assert sentence.model_cited == [1] and sentence.cited == [2] and sentence.corrected and sentence.supported
    assert checked.text == "To fix E116, update the firmware of every unit [2]."
    out_of_range = check_citations("E116 means a parallel unit mismatch [7].", SOURCES)
    assert out_of_range.sentences[0].cited == [2] and out_of_range.sentences[0].corrected


def test_a_right_model_citation_is_kept_where_the_model_put_it() -> None:
    checked = check_citations("A firmware update takes 52 minutes [3]. Then it restarts.", SOURCES)
    first = checked.sentences[0]
    assert first.cited == [3] and not first.corrected and not first.added
    assert checked.text.startswith("A firmware update takes 52 minutes [3].")


def test_a_number_in_no_source_is_flagged_and_the_sentence_unsupported() -> None:
    checked = check_citations("A full firmware update takes 2 minutes [3].", SOURCES)
    [sentence] = checked.sentences
    assert sentence.unknown_terms == ["2"]
    assert not sentence.supported and sentence.corrected and sentence.cited == []
    assert checked.unknown_terms == ["2"]


def test_names_in_no_source_are_flagged_but_those_of_the_question_are_not() -> None:
    answer = "The update was approved by Dr. Novak for the Home 10 battery."
    assert check_citations(answer, SOURCES).unknown_terms == ["Novak"]
    assert check_citations(answer, SOURCES, question="Did Novak approve it?").unknown_terms == []


def test_sentences_that_make_no_claim_need_no_citation() -> None:
    checked = check_citations("Yes. The documents do not say how much it costs.", SOURCES)
    assert [s.claim for s in checked.sentences] == [False, False]
    assert checked.unsupported == [] and not checked.has_citation and checked.unsupported_rate == 0.0


def test_an_embedder_lets_a_paraphrase_find_its_source() -> None:
    def embed(texts: list[str]) -> list[list[float]]:  # a toy embedder: "lifespan" and "warranty" mean the same
        return [[float("warranty" in t or "lifespan" in t), float("firmware" in t), 0.1] for t in texts]

    answer = "The lifespan coverage is a decade from purchase."
    assert not check_citations(answer, SOURCES).sentences[0].supported
    assert check_citations(answer, SOURCES, embed=embed).sentences[0].cited == [1]


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        (
            "It costs 1.5 euros, e.g. in shops. J. Smith sold it. Next!",
            ["It costs 1.5 euros, e.g. in shops.", "J. Smith sold it.", "Next!"],
        ),
        ("Fact one [1][2]. Fact two. [3] Fact three", ["Fact one [1][2].", "Fact two. [3]", "Fact three"]),
        ("保修期为十年[1]。电池很好！真的吗？", ["保修期为十年[1]。", "电池很好！", "真的吗？"]),
        ("Steps:\n1. Open it.\n2. Close it", ["Steps:", "1. Open it.", "2. Close it"]),
        ("The value is 5 kWh. it is low.", ["The value is 5 kWh. it is low."]),
        ("It is outside 196 to 253 V. The battery stops.", ["It is outside 196 to 253 V.", "The battery stops."]),
    ],
)
def test_sentences_split_at_their_ends_only(text: str, sentences: list[str]) -> None:
    assert [text[a:b] for a, b in split_sentences(text)] == sentences


def test_cjk_answers_are_cited_without_a_space_and_layout_is_kept() -> None:
    sources = [(1, "保修期为十年。"), (2, "电池容量为十千瓦时。")]
    checked = check_citations("电池容量为十千瓦时。\n\n保修期为十年。", sources)
    assert checked.text == "电池容量为十千瓦时[2]。\n\n保修期为十年[1]。"
    assert checked.to_dict()["cited"] == [1, 2]


def test_a_number_and_words_from_far_apart_sentences_do_not_support_a_claim() -> None:
    source = (
        "The battery stores 10.2 kWh. It weighs 98 kg. The case is grey. "
        "It hangs on a wall. The warranty lasts ten years from installation."
    )
    checked = check_citations("The warranty lasts 10.2 years.", [(1, source)])
    assert checked.unsupported and checked.cited == []
    near = check_citations("The battery stores 10.2 kWh.", [(1, source)])
    assert near.cited == [1] and not near.unsupported


def test_a_number_must_stand_with_its_unit_in_the_source() -> None:
    source = "The HB-10 battery stores 10.2 kWh and weighs 98 kg. Its warranty covers the battery."
    checked = check_citations("The answer is: 10.2 years.", [(1, source)], question="How long is the warranty?")
    assert checked.unsupported and checked.cited == []
    assert check_citations("It stores 10.2 kWh.", [(1, source)]).cited == [1]
    assert check_citations("It weighs 98 kg, a battery.", [(1, source)]).cited == [1]


def test_a_code_the_question_names_must_be_in_the_passage_but_its_quantities_need_not() -> None:
    sources = [
        (1, "E106 Grid voltage out of range. The grid voltage is outside 196 to 253 V."),
        (2, "E116 Current clamp reversed. The meter reports power flowing the wrong way."),
    ]
    question = "What does error E116 mean?"
    wrong = check_citations("E116 means the grid voltage is outside 196 to 253 V.", sources, question=question)
    assert wrong.unsupported and wrong.cited == []
    right = check_citations("E116 means the current clamp is reversed.", sources, question=question)
    assert right.cited == [2] and not right.unsupported
    # a quantity asked about is not a code: "yes, 40 to 60 V" answers "Is 48 V enough?"
    range_source = [(1, "The battery runs on 40 to 60 V.")]
    claim = "Yes, 48 V is within the battery's range of 40 to 60 V."
    enough = check_citations(claim, range_source, question="Is 48 V enough for the battery?")
    assert enough.cited == [1] and not enough.unsupported


def test_a_claim_that_drops_or_adds_a_not_is_not_supported_by_its_words() -> None:
    source = (
        "If E105 returns, book a service visit, because the battery cannot charge in freezing weather "
        "without its heater. Discharging continues normally."
    )
    flipped = check_citations("The battery can charge in freezing weather.", [(1, source)])
    assert flipped.unsupported and flipped.cited == []
    same = check_citations("The battery can't charge in freezing weather.", [(1, source)])
    assert same.cited == [1] and not same.unsupported
    # the sentence that matches decides, not a "not" elsewhere in the passage
    positive = check_citations("Discharging continues normally.", [(1, source)])
    assert positive.cited == [1] and not positive.unsupported
    added = check_citations("Discharging does not continue.", [(1, source)])
    assert added.unsupported
    assert check_citations("It is not only quick but also safe.", [(1, "It is quick and also safe.")]).cited == [1]
    # a negated clause says nothing of the next one
    table = "E107 Grid frequency out of range. No action needed; the battery reconnects automatically."
    assert check_citations("The battery reconnects automatically.", [(1, table)]).cited == [1]
    # each clause of a claim is weighed on its own: a copied item with one negated clause is supported
    terms = (
        "The warranty does not cover:\n- Operation outside the permitted range of -10 to 45 °C, or in a place "
        "that does not meet the clearances in the installation guide.\n- Flooding or fire."
    )
    item = "Operation outside the permitted range of -10 to 45 °C, or in a place that does not meet the clearances."
    assert check_citations(item, [(1, terms)]).cited == [1]
    flipped_item = "Operation outside the permitted range of -10 to 45 °C, or in a place that meets the clearances."
    assert check_citations(flipped_item, [(1, terms)]).unsupported


def test_a_bare_answer_is_supported_by_a_sentence_that_says_no_elsewhere() -> None:
    source = "The association reported that in February 1974, 20% of gasoline stations had no fuel."
    assert check_citations("20% [1]", [(1, source)]).cited == [1]
    assert check_citations("February 1974", [(1, source)]).cited == [1]
    # a negated bare answer still has to agree with its passage
    assert check_citations("Not 20%.", [(1, "In 1974, 20% of the stations were closed.")]).unsupported
