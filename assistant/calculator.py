"""The calculator tool's arithmetic: a tokenizer and a recursive-descent parser, never ``eval``.

Everything that could take long is bounded before it is computed: the expression's
length, nesting depth, integer size and factorials.
"""

from __future__ import annotations

import decimal
import math
import re
from collections.abc import Callable
from typing import Any

from assistant.errors import ToolError

MAX_EXPRESSION = 500  # characters
MAX_DIGITS = 10_000  # digits of any integer intermediate
_TOKEN = re.compile(
    r"\s*(?:(\d+(?:_\d{3})*(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"  # a number
    r"|(\*\*|//|[-+*/%^(),!])"  # an operator
    r"|([A-Za-z]\w*))"  # a name
)
_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {  # name: (function, min args, max args)
    "sqrt": (math.sqrt, 1, 1),
    "abs": (abs, 1, 1),
    "round": (round, 1, 2),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "log": (math.log, 1, 2),
    "ln": (math.log, 1, 1),
    "log10": (math.log10, 1, 1),
    "log2": (math.log2, 1, 1),
    "exp": (math.exp, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "asin": (math.asin, 1, 1),
    "acos": (math.acos, 1, 1),
    "atan": (math.atan, 1, 1),
    "min": (min, 1, 32),
    "max": (max, 1, 32),
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
Number = int | float


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression, parsed by recursive descent (no ``eval``).

    Raises:
        ToolError: a syntax error, an unknown name, division by zero, or a result too large.
    """
    text = expression.replace("×", "*").replace("÷", "/").replace("−", "-")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,250 -> 1250
    if len(text) > MAX_EXPRESSION:
        raise ToolError(f"the expression is longer than {MAX_EXPRESSION} characters")
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if text[position:].isspace():
            break
        match = _TOKEN.match(text, position)
        if not match:
            raise ToolError(f"cannot read {text[position : position + 10].strip()!r} in the expression")
        tokens.append(match.group(match.lastindex or 0))
        position = match.end()
    if not tokens:
        raise ToolError("the expression is empty")
    try:
        return _Parser(tokens).parse()
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("the result is too large") from None
    except (ValueError, TypeError) as e:
        raise ToolError(f"math error: {e}") from None


class _Parser:
    """expr := term (('+'|'-') term)*; term := unary (('*'|'/'|'//'|'%') unary)*;
    unary := ('+'|'-') unary | power; power := postfix (('^'|'**') unary)?;
    postfix := atom '!'*; atom := number | name | name '(' expr (',' expr)* ')' | '(' expr ')'
    """

    MAX_DEPTH = 64

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.at = 0
        self.depth = 0

    def parse(self) -> Number:
        value = self.expr()
        if self.at < len(self.tokens):
            raise ToolError(f"unexpected {self.tokens[self.at]!r} in the expression")
        return value

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            if token is None:
                raise ToolError(f"the expression ends early: expected {expected or 'more'}")
            raise ToolError(f"expected {expected!r}, found {token!r}")
        self.at += 1
        return token

    def expr(self) -> Number:
        self.depth += 1
        if self.depth > self.MAX_DEPTH:
            raise ToolError("the expression is nested too deeply")
        value = self.term()
        while self.peek() in ("+", "-"):
            op, right = self.take(), self.term()
            value = _checked(value + right if op == "+" else value - right)
        self.depth -= 1
        return value

    def term(self) -> Number:
        value = self.unary()
        while self.peek() in ("*", "/", "//", "%"):
            op, right = self.take(), self.unary()
            if op == "*":
                value = _checked(value * right)
            elif op == "/":
                exact = isinstance(value, int) and isinstance(right, int) and right != 0 and value % right == 0
                value = value // right if exact else value / right
            elif op == "//":
                value = value // right
            else:
                value = value % right
        return value

    def unary(self) -> Number:
        if self.peek() in ("+", "-"):
            op = self.take()
            self.depth += 1
            if self.depth > self.MAX_DEPTH:
                raise ToolError("the expression is nested too deeply")
            value = self.unary()
            self.depth -= 1
            return -value if op == "-" else value
        return self.power()

    def power(self) -> Number:
        base = self.postfix()
        if self.peek() in ("^", "**"):
            self.take()
            self.depth += 1
            if self.depth > self.MAX_DEPTH:
                raise ToolError("the expression is nested too deeply")
            exponent = self.unary()
            self.depth -= 1
            return _power(base, exponent)
        return base

    def postfix(self) -> Number:
        value = self.atom()
        while self.peek() == "!":
            self.take()
            if not isinstance(value, int) or value < 0:
                raise ToolError("! needs a whole number of at least 0")
            if value > 3000:
                raise ToolError("the factorial is too large (at most 3000!)")
            value = math.factorial(value)
        return value

    def atom(self) -> Number:
        token = self.take()
        if token == "(":
            value = self.expr()
            self.take(")")
            return value
        if token[0].isdigit() or token[0] == ".":
            clean = token.replace("_", "")
            return int(clean) if re.fullmatch(r"\d+", clean) else float(clean)
        if token[0].isalpha() or token[0] == "_":
            name = token.lower()
            if name in _CONSTANTS:
                return _CONSTANTS[name]
            if name in _FUNCTIONS:
                function, low, high = _FUNCTIONS[name]
                self.take("(")
                args = [self.expr()]
                while self.peek() == ",":
                    self.take()
                    args.append(self.expr())
                self.take(")")
                if not low <= len(args) <= high:
                    raise ToolError(f"{name} takes {low}{'' if low == high else f' to {high}'} argument(s)")
                if name == "round" and len(args) == 2 and not isinstance(args[1], int):
                    raise ToolError("round's second argument is a whole number of digits")
                return _checked(function(*args))
            known = ", ".join([*_FUNCTIONS, *_CONSTANTS])
            raise ToolError(f"unknown name {token!r}; known: {known}")
        raise ToolError(f"unexpected {token!r} in the expression")


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(base, int) and isinstance(exponent, int) and exponent >= 0:
        if abs(base) > 1 and exponent * math.log10(abs(base)) > MAX_DIGITS:
            raise ToolError(f"the result would have more than {MAX_DIGITS} digits")
        return base**exponent
    if base == 0 and exponent < 0:
        raise ZeroDivisionError
    result = math.pow(base, exponent)  # raises OverflowError and ValueError (complex results)
    return _checked(result)


def _checked(value: Any) -> Number:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if value.bit_length() > MAX_DIGITS * 3.33:
            raise ToolError(f"the result would have more than {MAX_DIGITS} digits")
        return value
    if isinstance(value, float) and math.isinf(value):
        raise OverflowError
    if not isinstance(value, int | float):
        raise ToolError("the result is not a real number")
    return value


def format_number(value: Number) -> str:
    """An integer as is; a float with up to 12 significant digits, without a trailing ``.0``."""
    if isinstance(value, int):
        # str() refuses integers over 4,300 digits (sys.get_int_max_str_digits); Decimal has no
        # such limit, and MAX_DIGITS already bounds the work
        return str(value) if value.bit_length() <= 13_000 else format(decimal.Decimal(value), "f")
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.12g}"
