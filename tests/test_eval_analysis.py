"""Why math answers are wrong (`toolformer.evals.analysis`): each cause, the tolerance, operand order, records
without an expression, the per-dataset shares, results.json and the report section."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fakes import PolicyLM, write_jsonl
from toolformer.evals import EvalConfig, evaluate, suites, write_outputs
from toolformer.evals.analysis import (
    CATEGORIES,
    NO_CALL,
    NO_GOLD,
    RIGHT_EXPRESSION,
    WRONG_OPERANDS,
    WRONG_OPERATION,
    ErrorAnalysis,
    analyse,
    classify,
    error_analysis,
    shape,
)
from toolformer.evals.metrics import numbers_match
from toolformer.evals.results import DatasetInfo, DatasetScore, EvalResults, Prediction, Run
from toolformer.tools import load_tools
from toolformer.tools.calculator import calculate
from toolformer.tools.calculator import evaluate as calc_evaluate


def calc(expression: str, output: str | None = None, ok: bool = True) -> dict[str, Any]:
    """A Calculator call as predictions.jsonl holds it (output: the real Calculator's unless given)."""
    return {"tool": "Calculator", "input": expression, "output": output or calculate(expression), "ok": ok}


# --------------------------------------------------------------------------------------------- one answer


@pytest.mark.parametrize(
    ("calls", "gold", "expression", "cause"),
    [
        ([], 15, "6+9", NO_CALL),  # ASDiv formula
        ([{"tool": "WikiSearch", "input": "6+9", "output": "15", "ok": True}], 15, "6+9", NO_CALL),
        ([calc("76 + 25")], 51, "( 76.0 - 25.0 )", WRONG_OPERATION),  # SVAMP equation
        ([calc("27 * 16 + 1")], 432, "(27.0*16.0)", WRONG_OPERATION),  # an extra operator
        ([calc("76 - 20")], 51, "( 76.0 - 25.0 )", WRONG_OPERANDS),
        ([calc("120 / (8 * 4)")], 5, "120 / (8 * 3)", WRONG_OPERANDS),  # GSM8K expression
        ([calc("16 * 27")], 432, "(27.0*16.0)", RIGHT_EXPRESSION),  # the right value, then another answer
        ([calc("2 + 2")], 5, None, NO_GOLD),
    ],
)
def test_each_cause(calls, gold, expression, cause):
    assert classify(calls, gold, expression) == cause


def test_the_result_is_read_within_the_math_metrics_tolerance():
    # The Calculator rounds 5 / 6 to 0.83: that is the gold 0.8333 for the metric, so for the analysis too.
    assert classify([calc("5 / 6")], 5 / 6, "5 / 6") == RIGHT_EXPRESSION
    assert classify([calc("5 / 6", "0.82")], 5 / 6, "5 / 6") == WRONG_OPERANDS  # 0.82 is a miss
    assert classify([calc("430 + 0", "430")], 432, "430 + 2") == WRONG_OPERANDS  # no relative slack on 432


def test_operands_are_compared_as_numbers_and_regardless_of_order():
    assert shape("( 76.0 - 25.0 )") == shape("76 - 25") == shape("25 - 76")
    assert shape("6+9") == shape("9 + 6") and shape("1,000 * 2") == shape("2 * 1000")
    assert shape("-3 + 4") != shape("3 + 4")  # a negative number is another number
    # The same numbers in the wrong places compute another value: wrong operands, not a wrong operation.
    assert classify([calc("25 - 76")], 51, "( 76.0 - 25.0 )") == WRONG_OPERANDS
    assert classify([calc("(2 + 3) * 4")], 14, "2 + 3 * 4") == WRONG_OPERANDS


def test_a_record_without_an_expression_still_tells_no_call_and_a_right_result():
    assert classify([], 5, None) == NO_CALL
    assert classify([calc("2 + 3")], 5, None) == RIGHT_EXPRESSION
    assert classify([calc("2 + 2")], 5, None) == NO_GOLD
    assert classify([calc("2 + 2")], 5, "x = 5") == NO_GOLD  # an expression the Calculator cannot parse


def test_failed_and_unparseable_calls():
    failed = calc("5 / 0", "error: division by zero in '5 / 0'", ok=False)
    assert classify([failed], 5, "10 / 2") == WRONG_OPERANDS  # the gold's operator, another number
    assert classify([calc("five apples", "error: cannot parse", ok=False)], 5, "2 + 3") == WRONG_OPERATION
    # A failed call's output is never read as a result, even when it holds the gold number.
    assert classify([calc("2 + x", "error: unknown name in 2 + x, 5", ok=False)], 5, None) == NO_GOLD


def test_with_several_calls_the_closest_decides():
    assert classify([calc("2 * 3"), calc("2 + 3")], 5, "2 + 3") == RIGHT_EXPRESSION
    assert classify([calc("2 * 3"), calc("2 + 4")], 5, "2 + 3") == WRONG_OPERANDS
    assert classify([calc("2 * 3"), calc("2 - 4")], 5, "2 + 3") == WRONG_OPERATION


# --------------------------------------------------------------------------------------------- properties

_OPS = ("+", "-", "*", "/")
trees = st.recursive(
    st.integers(1, 99),
    lambda inner: st.tuples(inner, st.sampled_from(_OPS), inner),
    max_leaves=6,
)


def render(tree: Any) -> str:
    if isinstance(tree, int):
        return str(tree)
    left, op, right = tree
    return f"({render(left)} {op} {render(right)})"


def mirror(tree: Any) -> Any:
    """`tree` with the operands of every + and * swapped: the same value."""
    if isinstance(tree, int):
        return tree
    left, op, right = tree
    if op in "+*":
        return (mirror(right), op, mirror(left))
    return (mirror(left), op, mirror(right))


def value(tree: Any) -> float | None:
    try:
        return float(calc_evaluate(render(tree)))
    except Exception:  # division by zero, out of range: not an expression a record holds
        return None


@given(trees)
def test_shape_ignores_the_order_of_commutative_operands(tree):
    assert shape(render(tree)) == shape(render(mirror(tree)))


@given(trees, trees)
def test_a_call_with_the_gold_result_is_a_right_expression_whatever_it_is_written_as(gold_tree, call_tree):
    gold = value(gold_tree)
    assume(gold is not None and value(call_tree) is not None)
    assert classify([calc(render(mirror(gold_tree)))], gold, render(gold_tree)) == RIGHT_EXPRESSION
    cause = classify([calc(render(call_tree))], gold, render(gold_tree))
    right = numbers_match(float(calculate(render(call_tree))), gold)
    assert (cause == RIGHT_EXPRESSION) == right
    if not right:
        same_ops = shape(render(call_tree)).operators == shape(render(gold_tree)).operators
        assert cause == (WRONG_OPERANDS if same_ops else WRONG_OPERATION)


@given(trees, st.sampled_from(_OPS))
def test_another_operator_at_the_root_is_a_wrong_operation(tree, op):
    assume(not isinstance(tree, int) and tree[1] != op)
    changed = (tree[0], op, tree[2])
    gold = value(tree)
    assume(gold is not None and value(changed) is not None)
    assume(not numbers_match(float(calculate(render(changed))), gold))
    assert classify([calc(render(changed))], gold, render(tree)) == WRONG_OPERATION


@given(st.lists(st.fixed_dictionaries({"tool": st.text(max_size=12), "input": st.text(), "output": st.text(),
                                       "ok": st.booleans()}), max_size=3),
       st.floats(-1e6, 1e6), st.none() | st.text())  # fmt: skip
def test_any_calls_get_exactly_one_cause_and_never_raise(calls, gold, expression):
    cause = classify(calls, gold, expression)
    assert cause in CATEGORIES
    assert (cause == NO_CALL) == (not any(c["tool"] == "Calculator" for c in calls))


def test_every_shipped_gold_expression_has_operators_and_numbers():
    for spec in suites.SUITES["math"]:
        for ex in suites.load_dataset(spec, None).examples:
            if ex.expression is not None:
                found = shape(ex.expression)
                assert found is not None and sum(found.numbers.values()) >= 1, (spec.name, ex.id)


# --------------------------------------------------------------------------------------------- per dataset


def pred(ex_id: str, correct: bool | None, calls: list[dict[str, Any]], mode: str = "tools") -> Prediction:
    return Prediction("d", mode, ex_id, "prompt", "text", "text", None, [0], correct, calls, "stop", 3)


def example(ex_id: str, gold: float, expression: str | None) -> suites.Example:
    return suites.Example(ex_id, "d", "question", [gold], expression=expression)


def test_shares_count_only_the_wrong_answers():
    examples = [
        example("a", 5, "2 + 3"),
        example("b", 5, "2 + 3"),
        example("c", 5, None),
        example("d", 5, None),
    ]
    preds = [
        pred("a", True, [calc("2 + 3")]),
        pred("b", False, []),
        pred("c", False, []),
        pred("d", None, []),
    ]
    result = analyse(examples, preds)
    assert (result.n, result.wrong) == (4, 2)
    assert result.counts == {
        NO_CALL: 2,
        WRONG_OPERATION: 0,
        WRONG_OPERANDS: 0,
        RIGHT_EXPRESSION: 0,
        NO_GOLD: 0,
    }
    assert result.share(NO_CALL) == 1.0 and result.share(NO_GOLD) == 0.0
    assert ErrorAnalysis().share(NO_CALL) is None  # nothing wrong, no shares
    with pytest.raises(ValueError, match="'b' is paired with example 'a'"):
        analyse(examples[:1], [preds[1]])


def test_only_math_datasets_in_the_mode_asked():
    math = suites.LoadedDataset(suites.DatasetSpec("d", "math", "math", None), [example("a", 5, "2 + 3")])
    facts = suites.LoadedDataset(suites.DatasetSpec("f", "facts", "cloze", None), [example("a", 5, None)])
    preds = [pred("a", False, [calc("2 * 3")]), pred("a", False, [], mode="disabled")]
    found = error_analysis([math, facts], preds)
    assert list(found) == ["d"] and found["d"].counts[WRONG_OPERATION] == 1
    assert error_analysis([math], preds, mode="disabled")["d"].counts[NO_CALL] == 1
    assert error_analysis([math], preds, mode="baseline") == {}


def test_results_json_keeps_the_analysis_and_reads_old_files():
    config = EvalConfig(model="m", modes="tools")
    info = DatasetInfo("d", "math", "math", "d.jsonl", 2, 0, {}, ["Calculator"])
    runs = [Run("tools", "m", 10, False, True, {"d": DatasetScore(n=2, correct=0)})]
    errors = {"d": ErrorAnalysis("tools", 2, 2, {**dict.fromkeys(CATEGORIES, 0), NO_CALL: 1, NO_GOLD: 1})}
    data = json.loads(json.dumps(EvalResults(config, [info], runs, [], errors=errors).to_dict()))
    assert data["error_analysis"]["d"]["shares"][NO_CALL] == 0.5 and data["error_analysis"]["d"]["wrong"] == 2
    back = EvalResults.from_dict(data)
    assert back.errors == errors and back.to_dict() == data
    old = {k: v for k, v in data.items() if k != "error_analysis"}
    assert (
        EvalResults.from_dict(old).errors == {}
        and "error_analysis" not in EvalResults.from_dict(old).to_dict()
    )


# --------------------------------------------------------------------------------------------- report

# One record per cause (and one right answer); the policy answers each as the comment says.
ROWS = [
    {"id": "r1", "question": "What is 6 plus 9?", "answer": 15, "formula": "6+9=15"},  # no call, 14
    {"id": "r2", "question": "What is 4 plus 4?", "answer": 8, "equation": "X=4.0+4.0"},  # 4 * 4
    {"id": "r3", "question": "What is 10 plus 7?", "answer": 17, "expression": "10 + 7"},  # 10 + 6
    {"id": "r4", "question": "What is 12 plus 8?", "answer": 20, "expression": "12 + 8"},  # 12 + 8, then 21
    {"id": "r5", "question": "What is 2 plus 3?", "answer": 5},  # 2 + 2, no expression
    {"id": "r6", "question": "What is 1 plus 1?", "answer": 2, "expression": "1 + 1"},  # right
]
ANSWERS = {
    "6 plus 9": " 14.",
    "4 plus 4": " [Calculator(4 * 4) → 16] 16.",
    "10 plus 7": " [Calculator(10 + 6) → 16] 16.",
    "12 plus 8": " [Calculator(12 + 8) → 20] I think 21.",
    "2 plus 3": " [Calculator(2 + 2) → 4] 4.",
    "1 plus 1": " [Calculator(1 + 1) → 2] 2.",
}


def answerer(prompt: str, gen: str) -> dict[str, float]:
    question = prompt.rsplit("Question: ", 1)[1]
    return {next(a for q, a in ANSWERS.items() if q in question): 10.0}


def test_the_report_explains_the_wrong_answers_of_mode_tools(smol_tokenizer, tmp_path):
    data = write_jsonl(tmp_path / "causes.jsonl", ROWS)
    config = EvalConfig(model="fake", suite="math", data=str(data), modes="tools,disabled", batch_size=3)
    models = {"model": (PolicyLM(smol_tokenizer, answerer), smol_tokenizer)}
    results = evaluate(config, models=models, tools=load_tools("Calculator"))
    paths = write_outputs(results, tmp_path / "out")
    written = json.loads(paths["results"].read_text())["error_analysis"]["causes"]
    assert (written["mode"], written["n"], written["wrong"]) == ("tools", 6, 5)
    assert written["counts"] == dict.fromkeys(CATEGORIES, 1)
    report = paths["report"].read_text()
    assert "## Why math answers are wrong" in report
    row = next(line for line in report.splitlines() if line.startswith("| causes | 5 / 6 |"))
    assert [c.strip() for c in row.strip("|").split("|")][2:] == ["20.0 (1)"] * len(CATEGORIES)
