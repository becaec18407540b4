"""The Calculator tool: safe arithmetic on model-written text, by an AST walk that allows only numbers and + - * / **.

Paper semantics: four operations and parentheses, result rounded to 2 decimals (half-up on the decimal a person
reads: 2.675 → 2.68). Friendlier input is accepted (`1,000`, `007`, `15%`, `20% of 50`, `×`, `÷`, `−`, `^` for
powers, `$`), and nothing is ever passed to eval/exec:
`ast.parse(mode="eval")` builds a tree and only numeric constants, unary +/- and the binary operators
+ - * / ** are evaluated. Caps on input length, tree size, depth, exponent and magnitude keep every call to a
few milliseconds whatever the input.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import unicodedata
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal

from toolformer.errors import ToolError
from toolformer.tools.base import Tool

MAX_INPUT_CHARS = 300
MAX_NODES = 200
MAX_DEPTH = 60
MAX_EXPONENT = 64
MAX_MAGNITUDE = 1e15  # beyond this a float cannot hold 2 exact decimals anyway
DECIMALS = 2
_QUANTUM = Decimal(1).scaleb(-DECIMALS)  # 0.01

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_SYMBOLS = {
    ast.Mod: "%",
    ast.FloorDiv: "//",
    ast.MatMult: "@",
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.BitOr: "|",
}

_TRANSLATE = str.maketrans(
    {
        "×": "*",
        "✕": "*",
        "·": "*",
        "÷": "/",
        "∕": "/",
        "−": "-",  # U+2212 minus sign
        "–": "-",  # en dash, often typed for minus
        "^": "**",
        "$": None,
        "€": None,
        "£": None,
        "¥": None,
        "²": "**2",
        "³": "**3",
    }
)
_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d,])")
_PERCENT_OF = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*%\s*of\b", re.IGNORECASE)
_PERCENT = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*%(?!\s*[\d.(])")
# `007` is a SyntaxError in Python 3 but plain to a person: drop the leading zeros of a number, never of a fraction
# part (`1.005`) nor the last digit (`0`, `0.5`).
_LEADING_ZEROS = re.compile(r"(?<![\d.])0+(?=\d)")
_TIMES_X = re.compile(r"(?<=[\d)])\s+[xX]\s+(?=[\d(.])")
_ALLOWED = frozenset("0123456789.+-*/()eE \t\n")


def normalize(expression: str) -> str:
    """Rewrite friendly notation into plain Python arithmetic: `1,000` → `1000`, `15%` → `(15/100)`, `×` → `*`."""
    text = expression.translate(_TRANSLATE)
    text = "".join(_ascii_digit(ch) for ch in unicodedata.normalize("NFKC", text))
    text = text.strip().rstrip("=").strip()
    text = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), text)
    text = _LEADING_ZEROS.sub("", text)
    text = _PERCENT_OF.sub(r"(\1/100)*", text)
    text = _PERCENT.sub(r"(\1/100)", text)
    return _TIMES_X.sub(" * ", text)


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression safely; raise ToolError with a one-line reason if it is not one."""
    return _eval(parse(expression), _shorten(expression), 0)


def parse(expression: str) -> ast.expr:
    """The syntax tree `evaluate` walks: `expression` normalised, checked (length, characters, size) and parsed,
    never run; ToolError with a one-line reason if it is not arithmetic text."""
    if not isinstance(expression, str):
        raise ToolError(f"expression must be text, got {type(expression).__name__}")
    shown = _shorten(expression)
    if len(expression) > MAX_INPUT_CHARS:
        raise ToolError(f"expression is too long ({len(expression)} characters, at most {MAX_INPUT_CHARS})")
    text = normalize(expression)
    if not text:
        raise ToolError("expression is empty")
    # A character filter before the parser: defence in depth, and no quotes or backslashes reach ast.parse.
    bad = next((ch for ch in text if ch not in _ALLOWED), None)
    if bad is not None:
        raise ToolError(
            f"expression {shown} contains {bad!r}; only numbers, + - * / and parentheses are allowed"
        )
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise ToolError(f"cannot parse expression {shown}") from exc
    for count, _node in enumerate(ast.walk(tree), 1):
        if count > MAX_NODES:
            raise ToolError(f"expression {shown} is too long (more than {MAX_NODES} parts)")
    return tree.body


def format_number(value: Number) -> str:
    """Round to 2 decimals as in the paper and drop trailing zeros: 1081, 0.29, -3.5.

    Rounding is half-up (away from zero) on the decimal a person reads, the float's shortest repr, not on its
    binary value: 2.675 → 2.68 and 1.005 → 1.01, where `round()` gives 2.67 and 1.
    """
    if isinstance(value, int):
        return str(value)
    rounded = Decimal(repr(value)).quantize(_QUANTUM, rounding=ROUND_HALF_UP)
    text = f"{rounded:f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def calculate(expression: str) -> str:
    """Compute a + - * / expression and return the result rounded to 2 decimals.

    Args:
        expression: arithmetic such as `400 / 1400`, `(3 + 4) * 2.5`, `15% of 80` or `1,000 - 250`.
    """
    return format_number(evaluate(expression))


def calculator_tool() -> Tool:
    """A fresh Calculator Tool."""
    return Tool(
        name="Calculator",
        description="Compute an arithmetic expression (+ - * / and parentheses); the result is rounded to 2 decimals.",
        fn=calculate,
        parameters={
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": "arithmetic such as 400 / 1400 or (3 + 4) * 2.5",
                }
            },
            "required": ["expression"],
        },
        timeout=1.0,
        examples=("Calculator(400 / 1400)",),
    )


def _ascii_digit(ch: str) -> str:
    # Arabic-Indic, Devanagari, … digits become ASCII so `٣ + ٤` works; NFKC already folded full-width ones.
    if ch.isdigit() and not ch.isascii():
        try:
            return str(unicodedata.decimal(ch))
        except ValueError:  # superscripts and other non-decimal digits stay and fail to parse
            return ch
    return ch


def _shorten(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _check(value: Number, shown: str) -> Number:
    if isinstance(value, complex) or abs(value) > MAX_MAGNITUDE or not math.isfinite(value):
        raise ToolError(f"result of {shown} is out of range (magnitude above {MAX_MAGNITUDE:g})")
    return value


def _eval(node: ast.AST, shown: str, depth: int) -> Number:
    if depth > MAX_DEPTH:
        raise ToolError(f"expression {shown} is nested too deeply")
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ToolError(f"expression {shown} contains {value!r}, which is not a number")
        return _check(value, shown)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand, shown, depth + 1))
    if isinstance(node, ast.BinOp):
        op = type(node.op)
        if op is not ast.Pow and op not in _BINARY:
            symbol = _SYMBOLS.get(op, op.__name__)
            raise ToolError(f"operator {symbol} is not supported in {shown} (use + - * / and parentheses)")
        left = _eval(node.left, shown, depth + 1)
        right = _eval(node.right, shown, depth + 1)
        if op is ast.Pow:
            return _check(_power(left, right, shown), shown)
        try:
            return _check(_BINARY[op](left, right), shown)
        except ZeroDivisionError as exc:
            raise ToolError(f"division by zero in {shown}") from exc
        except OverflowError as exc:
            raise ToolError(f"result of {shown} is out of range") from exc
    if isinstance(node, ast.Name):
        raise ToolError(f"unknown name {node.id!r} in {shown} (only numbers and + - * / are allowed)")
    raise ToolError(f"expression {shown} is not arithmetic (only numbers and + - * / are allowed)")


def _power(base: Number, exponent: Number, shown: str) -> Number:
    # Bound the result's size *before* computing it: 9**9**9 must fail in microseconds, not hang.
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(
            f"exponent {format_number(exponent)} in {shown} is too large (at most {MAX_EXPONENT})"
        )
    if base == 0 and exponent < 0:
        raise ToolError(f"division by zero in {shown}")
    if base < 0 and not float(exponent).is_integer():
        raise ToolError(f"fractional power of a negative number in {shown}")
    if base != 0 and exponent * math.log10(abs(base)) > math.log10(MAX_MAGNITUDE):
        raise ToolError(f"result of {shown} is out of range (magnitude above {MAX_MAGNITUDE:g})")
    try:
        return base**exponent
    except (OverflowError, ZeroDivisionError) as exc:
        raise ToolError(f"result of {shown} is out of range") from exc
