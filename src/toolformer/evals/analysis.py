"""Why math answers are wrong: each wrong answer of mode tools sorted into one cause, and the shares per dataset.

Causes (`CATEGORIES`), decided in this order for a wrong answer of a math dataset:
- `no_call`: the answer has no Calculator call (calls to other tools do not count).
- `right_expression_wrong_answer`: a Calculator call returned the gold answer (within the math metric's
  tolerance, `metrics.numbers_match`), yet the first number of the answer is not it. Decided from the call's
  result, so it needs no gold expression, and "9 + 6" for the gold "6+9" lands here.
- `no_gold_expression`: the record has no gold expression (`suites.gold_expression`: some MAWPS and GSM8K
  records), so a wrong call cannot be split into operation and operands.
- `wrong_operation`: no call uses the gold expression's operators, compared as multisets ("12 * 3" has
  {*}, "12 * 3 + 4" has {*, +}; "12 + 3" for "12 * 3" is wrong_operation), or the call's input is not arithmetic
  the Calculator can parse.
- `wrong_operands`: a call has the gold's operators but computes another value: its numbers differ, compared as
  multisets of floats ("76 - 20" for "( 76.0 - 25.0 )"), or they are the same numbers in the wrong places
  ("25 - 76" for "76 - 25", "(2 + 3) * 4" for "2 + 3 * 4"). Comparing multisets makes the check blind to order,
  which is right for + and * and leaves order mistakes with - and / in this category, where they belong.
Both sides are read by the Calculator's own parser (`tools.calculator.parse`: its normalisation of "1,000",
"15%", "×" applies to both), never evaluated: a unary minus on a number is part of the number, every other
operator is counted by its symbol. With several Calculator calls the closest one decides (the one with the
gold's result, else the one with the gold's operators).
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from toolformer.errors import ToolError
from toolformer.evals.metrics import first_number, numbers_match
from toolformer.tools.calculator import parse

if (
    TYPE_CHECKING
):  # types only: `results` holds an ErrorAnalysis per dataset, so importing it would be circular
    from toolformer.evals.results import Prediction
    from toolformer.evals.suites import Example, LoadedDataset

CALCULATOR = "Calculator"
NO_CALL = "no_call"
WRONG_OPERATION = "wrong_operation"
WRONG_OPERANDS = "wrong_operands"
RIGHT_EXPRESSION = "right_expression_wrong_answer"
NO_GOLD = "no_gold_expression"
CATEGORIES = (NO_CALL, WRONG_OPERATION, WRONG_OPERANDS, RIGHT_EXPRESSION, NO_GOLD)
LABELS = {
    NO_CALL: "no call",
    WRONG_OPERATION: "wrong operation",
    WRONG_OPERANDS: "wrong operands",
    RIGHT_EXPRESSION: "right result, wrong answer",
    NO_GOLD: "no gold expression",
}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}


@dataclass(frozen=True)
class Shape:
    """What an expression computes, order aside: its operators and its numbers, as multisets."""

    operators: Counter[str]
    numbers: Counter[float]


def shape(expression: str) -> Shape | None:
    """The operators and numbers of an arithmetic expression (None if the Calculator cannot parse it)."""
    try:
        tree = parse(expression)
    except ToolError:
        return None
    operators: Counter[str] = Counter()
    numbers: Counter[float] = Counter()
    _walk(tree, operators, numbers)
    return Shape(operators, numbers)


def _walk(node: ast.AST, operators: Counter[str], numbers: Counter[float]) -> None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        numbers[float(node.value)] += 1
    elif isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
        value = node.operand.value
        if isinstance(value, (int, float)):
            numbers[-float(value) if isinstance(node.op, ast.USub) else float(value)] += 1
    elif isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.USub):
            operators["neg"] += 1
        _walk(node.operand, operators, numbers)
    elif isinstance(node, ast.BinOp):
        operators[_SYMBOLS.get(type(node.op), type(node.op).__name__)] += 1
        _walk(node.left, operators, numbers)
        _walk(node.right, operators, numbers)


def classify(calls: Sequence[Mapping[str, Any]], gold: float, expression: str | None) -> str:
    """The cause (one of `CATEGORIES`) of a wrong math answer, from its calls as predictions.jsonl holds them
    (`tool`, `input`, `output`, `ok`), the gold number and the record's gold expression (None: it has none)."""
    calculator = [c for c in calls if c.get("tool") == CALCULATOR]
    if not calculator:
        return NO_CALL
    for call in calculator:
        value = first_number(str(call.get("output", ""))) if call.get("ok", True) else None
        if value is not None and numbers_match(value, float(gold)):
            return RIGHT_EXPRESSION
    target = shape(expression) if expression is not None else None
    if target is None:
        return NO_GOLD
    for call in calculator:
        made = shape(str(call.get("input", "")))
        if made is not None and made.operators == target.operators:
            return WRONG_OPERANDS
    return WRONG_OPERATION


@dataclass
class ErrorAnalysis:
    """One dataset in one mode: answers scored, wrong ones, and how many wrong ones fall in each category."""

    mode: str = "tools"
    n: int = 0
    wrong: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))

    def share(self, category: str) -> float | None:
        """Share of the wrong answers in `category` (None when no answer is wrong)."""
        return self.counts.get(category, 0) / self.wrong if self.wrong else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "n": self.n,
            "wrong": self.wrong,
            "counts": dict(self.counts),
            "shares": {c: self.share(c) for c in self.counts},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErrorAnalysis:
        return cls(data.get("mode", "tools"), data["n"], data["wrong"], dict(data["counts"]))


def analyse(
    examples: Sequence[Example], predictions: Sequence[Prediction], mode: str = "tools"
) -> ErrorAnalysis:
    """The error analysis of one math dataset: `predictions` are its predictions in `mode`, in example order (as
    `evaluate` makes them); a prediction whose id is not its example's is an error, not a silent mismatch."""
    if len(examples) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples")
    out = ErrorAnalysis(mode)
    for example, pred in zip(examples, predictions):
        if pred.id != example.id:
            raise ValueError(f"prediction {pred.id!r} is paired with example {example.id!r}")
        out.n += 1
        if pred.correct is not False:
            continue
        out.wrong += 1
        out.counts[classify(pred.calls, float(example.golds[0]), example.expression)] += 1
    return out


def error_analysis(
    datasets: Sequence[LoadedDataset], predictions: Sequence[Prediction], mode: str = "tools"
) -> dict[str, ErrorAnalysis]:
    """Per math dataset with predictions in `mode`: its error analysis (other kinds and modes are left out)."""
    out: dict[str, ErrorAnalysis] = {}
    for ds in datasets:
        if ds.spec.kind != "math":
            continue
        preds = [p for p in predictions if p.mode == mode and p.dataset == ds.spec.name]
        if preds:
            out[ds.spec.name] = analyse(ds.examples, preds, mode)
    return out


def error_table(analyses: Mapping[str, ErrorAnalysis]) -> tuple[list[str], list[list[str]]]:
    """Header and rows for the report: per dataset, wrong answers and each category's % of them (count)."""
    header = ["dataset", "wrong / n", *(LABELS[c] for c in CATEGORIES)]
    rows = []
    for name, a in analyses.items():
        cells = [
            "–" if a.share(c) is None else f"{100 * (a.share(c) or 0.0):.1f} ({a.counts.get(c, 0)})"
            for c in CATEGORIES
        ]
        rows.append([name, f"{a.wrong} / {a.n}", *cells])
    return header, rows


NOTE = (
    "Each wrong answer of mode tools once: no call (no Calculator call); wrong operation (no call uses the gold "
    "expression's operators); wrong operands (the gold's operators, other numbers or numbers in the wrong places); "
    "right result, wrong answer (a call returned the gold answer but the answer's first number is another); "
    "no gold expression (a call, a wrong result, and the record has no expression to compare it with)."
)
