"""SQuAD's official normalisation and the ranking metrics."""

from __future__ import annotations

import pytest

from finetune.metrics import exact_match, f1, mean_reciprocal_rank, normalize_answer, recall_at


def test_normalisation_drops_case_punctuation_and_articles() -> None:
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("An apple, a day.") == "apple day"


@pytest.mark.parametrize(
    ("prediction", "gold", "em", "f1_score"),
    [
        ("the Eiffel Tower", ["Eiffel Tower"], 1.0, 1.0),
        ("It is the Eiffel Tower in Paris", ["Eiffel Tower"], 0.0, 2 * (2 / 6) * 1 / (2 / 6 + 1)),
        ("Denver Broncos", ["Broncos", "Denver Broncos"], 1.0, 1.0),
        ("Carolina", ["Denver Broncos"], 0.0, 0.0),
    ],
)
def test_em_and_f1(prediction: str, gold: list[str], em: float, f1_score: float) -> None:
    assert exact_match(prediction, gold) == em
    assert f1(prediction, gold) == pytest.approx(f1_score)


def test_recall_and_mrr() -> None:
    ranks = [1, 3, None, 10]
    assert recall_at(ranks, 1) == 0.25 and recall_at(ranks, 5) == 0.5 and recall_at(ranks, 10) == 0.75
    assert mean_reciprocal_rank(ranks) == pytest.approx((1 + 1 / 3 + 0.1) / 4)
