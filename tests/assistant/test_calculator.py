"""Calculator results past Python's 4,300-digit int-to-str limit are printed whole."""

from __future__ import annotations

import math

from assistant.calculator import evaluate, format_number
from assistant.tools import calculator


def test_factorial_of_3000_is_printed_in_full() -> None:
    text = calculator(expression="3000!")
    digits = text.split(" = ")[1]
    assert len(digits) == 9131 and digits.startswith("41493596034378540855")
    assert int(digits[-20:]) == math.factorial(3000) % 10**20


def test_the_largest_allowed_power_and_negatives_format() -> None:
    assert format_number(evaluate("10**9999")) == "1" + "0" * 9999
    assert format_number(-evaluate("2**20000")).startswith("-3980")
