"""BFCL's AST checker for Python function calls: is a model's list of calls one of a test case's possible answers.

A port of `bfcl_eval/eval_checker/ast_eval/ast_checker.py` (BFCL v4, Apache-2.0), Python rules only, same verdicts
and error types:
- simple: exactly one call; multiple: exactly one call, to the expected function among those offered;
  parallel and parallel_multiple: as many calls as answers, matched order-free (each answer takes the first
  unmatched call that passes).
- One call against one answer: the function name matches (BFCL's "." → "_" for OpenAI-style names), every
  required parameter is there, no parameter outside the schema or the answer, each value has the schema's type
  (an int is accepted for a float; a value of the answer's own type is accepted as a "variable"), and is one of the
  possible values: strings compared after `standardize_string` (lowercased, spaces and ",./-_*^" removed), lists
  item by item the same way, dicts key by key; an answer parameter whose values include "" may be left out, any
  other must be given.
- irrelevance: correct when no call is made.

A model's calls come in as `[{name: {param: value}}]`, BFCL's decoded form (`calls_from`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from toolformer.calls import Call

PYTHON_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "any": str,
}
NESTED_TYPES = ("array", "tuple")  # checked one level deep, as BFCL does
_STANDARDIZE = re.compile(r"[ \,\.\/\-\_\*\^]")


@dataclass
class Verdict:
    """The checker's answer: valid, and why not (BFCL's error messages and error type)."""

    valid: bool
    errors: list[Any] = field(default_factory=list)
    error_type: str = ""
    is_variable: bool = False


def calls_from(calls: list[Call]) -> list[dict[str, dict[str, Any]]]:
    """Our `Call`s in BFCL's decoded form, `[{name: arguments}]`."""
    return [{c.name: dict(c.arguments or {})} for c in calls]


def check(
    category: str,
    functions: list[dict[str, Any]],
    output: list[dict[str, dict[str, Any]]],
    answers: list[dict[str, dict[str, list[Any]]]],
) -> Verdict:
    """Check `output` (BFCL's decoded calls) against `answers` for a case of BFCL `category`."""
    if "irrelevance" in category:
        if output:
            return Verdict(False, ["Valid syntax. Successfully decode AST when it should not."], _IRRELEVANT)
        return Verdict(True)
    if "parallel" in category:
        return parallel_no_order(functions, output, answers)
    if "multiple" in category:
        if len(output) != len(answers):
            return Verdict(False, ["Wrong number of functions."], "multiple_function_checker:wrong_count")
        expected = next(iter(answers[0]))
        return simple(find_description(functions, expected), output[0], answers[0])
    if len(output) != 1:
        return Verdict(False, ["Wrong number of functions."], "simple_function_checker:wrong_count")
    return simple(functions[0], output[0], answers[0])


_IRRELEVANT = "irrelevance_error:decoder_success"


def find_description(functions: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The offered function called `name` (the first one if none is)."""
    return next((f for f in functions if f["name"] == name), functions[0])


def standardize_string(text: str) -> str:
    """BFCL's string normalisation: no spaces or ",./-_*^", lowercase, single quotes as double quotes."""
    return _STANDARDIZE.sub("", text).lower().replace("'", '"')


def _answer_type(possible: list[Any]) -> type | None:
    return next((type(a) for a in possible if a != ""), None)


def type_check(
    param: str, value: Any, possible: list[Any], description: str, expected: type, nested: type | None
) -> Verdict:
    """BFCL's `type_checker`: `value` has the schema's type (one level deep for arrays), or the answer's."""
    answer_type = _answer_type(possible)
    is_variable = answer_type is not None and answer_type != expected
    if type(value) is expected:
        if nested is None:
            return Verdict(True, is_variable=is_variable)
        for item in possible:
            ok = True
            if isinstance(item, list):
                for v in value:
                    if not type_check(param, v, item, str(nested), nested, None).valid:
                        ok = False
                        break
            if ok:
                return Verdict(True, is_variable=is_variable)
        nested_error = (
            f"Nested type checking failed for parameter {param!r}. Expected outer type {description} with "
            f"inner type {nested}. Parameter value: {value!r}."
        )
        # As BFCL: a failed nested check stays failed, also when the value has the answer's type.
        if answer_type is not None and type(value) is answer_type:
            return Verdict(False, [nested_error], "type_error:nested", is_variable=True)
        return Verdict(False, [nested_error, _type_error(param, description, value)], "type_error:simple")
    if answer_type is not None and type(value) is answer_type:
        return Verdict(True, is_variable=True)
    return Verdict(False, [_type_error(param, description, value)], "type_error:simple")


def _type_error(param: str, description: str, value: Any) -> str:
    return (
        f"Incorrect type for parameter {param!r}. Expected type {description}, got {type(value).__name__}. "
        f"Parameter value: {value!r}."
    )


def _std(value: Any) -> Any:
    return standardize_string(value) if isinstance(value, str) else value


def string_check(param: str, value: str, possible: list[Any]) -> Verdict:
    if _std(value) not in [standardize_string(p) for p in possible if isinstance(p, str)]:
        return Verdict(
            False,
            [
                f"Invalid value for parameter {param!r}: {value!r}. Expected one of {possible}. Case insensitive."
            ],
            "value_error:string",
        )
    return Verdict(True)


def list_check(param: str, value: list[Any], possible: list[Any]) -> Verdict:
    output = [_std(v) for v in value]
    # As BFCL: every possible answer is iterated, so "" (optional) reads as [] and a string as its characters.
    options = [[_std(v) for v in p] for p in possible if isinstance(p, (list, str))]
    if output not in options:
        return Verdict(
            False,
            [f"Invalid value for parameter {param!r}: {value!r}. Expected one of {possible}."],
            "value_error:list/tuple",
        )
    return Verdict(True)


def dict_check(param: str, value: dict[str, Any], possible: list[Any]) -> Verdict:
    """One of the possible dicts: every key known and its value among that key's possible values (strings
    standardised), every key not marked optional ("" among its values) present."""
    result = Verdict(False, [], "dict_checker:unclear")
    for answer in possible:
        if answer == "" or not isinstance(answer, dict):
            continue
        result = Verdict(False, [], "dict_checker:unclear")
        ok = True
        for key, item in value.items():
            if key not in answer:
                result = Verdict(False, [f"Unexpected dict key parameter: '{key}'."], "value_error:dict_key")
                ok = False
                break
            options = [_std(a) for a in answer[key]]
            if _std(item) not in options:
                result = Verdict(
                    False,
                    [f"Invalid value for parameter {key!r}: {item!r}. Expected one of {options}."],
                    "value_error:dict_value",
                )
                ok = False
                break
        if ok:
            for key, options in answer.items():
                if key not in value and "" not in options:
                    result = Verdict(False, [f"Missing dict key parameter: '{key}'."], "value_error:dict_key")
                    ok = False
                    break
        if ok:
            return Verdict(True)
    return result


def list_dict_check(param: str, value: list[Any], possible: list[Any]) -> Verdict:
    """A list of dicts: one possible list of the same length whose dicts match in order."""
    result = Verdict(False, [], "list_dict_checker:unclear")
    for answer in possible:
        answer = [] if answer == "" else answer  # BFCL takes len("") = 0: an empty list may stand for omitted
        if not isinstance(answer, list) or len(value) != len(answer):
            result = Verdict(
                False, ["Wrong number of dictionaries in the list."], "value_error:list_dict_count"
            )
            continue
        ok = True
        for item, expected in zip(value, answer):
            result = dict_check(param, item, [expected]) if isinstance(item, dict) else Verdict(False)
            if not result.valid:
                ok = False
                break
        if ok:
            return Verdict(True)
    return result


def simple(function: dict[str, Any], output: dict[str, dict[str, Any]], answer: dict[str, Any]) -> Verdict:
    """BFCL's `simple_function_checker` (Python): one call `{name: params}` against one answer."""
    possible = next(iter(answer.values()))
    params = function.get("parameters") or {}
    details = params.get("properties") or {}
    required = params.get("required") or []
    name = re.sub(r"\.", "_", function["name"])
    if name not in output:
        return Verdict(
            False,
            [f"Function name {name!r} not found in model output."],
            "simple_function_checker:wrong_func_name",
        )
    given = output[name]
    if not isinstance(given, dict):
        return Verdict(False, ["Arguments are not an object."], "simple_function_checker:unclear")
    for param in required:
        if param not in given:
            return Verdict(
                False, [f"Missing required parameter: {param!r}."], "simple_function_checker:missing_required"
            )
    for param, value in given.items():
        if param not in details or param not in possible:
            return Verdict(
                False, [f"Unexpected parameter: {param!r}."], "simple_function_checker:unexpected_param"
            )
        description = details[param].get("type", "any")
        expected = PYTHON_TYPES.get(description, str)
        nested = None
        if description in NESTED_TYPES:
            nested = PYTHON_TYPES.get((details[param].get("items") or {}).get("type", "any"), str)
        if description == "tuple" and isinstance(value, tuple):
            value = list(value)
        if description == "float" and type(value) is int:  # Python's int-to-float conversion is allowed
            value = float(value)
        typed = type_check(param, value, possible[param], description, expected, nested)
        if not typed.valid:
            return typed
        if not typed.is_variable:
            checked: Verdict | None = None
            if expected is dict:
                checked = dict_check(param, value, possible[param])
            elif expected is list and nested is dict:
                checked = list_dict_check(param, value, possible[param])
            elif expected is str:
                checked = string_check(param, value, possible[param])
            elif expected is list:
                checked = list_check(param, value, possible[param])
            if checked is not None:
                if not checked.valid:
                    return checked
                continue
        if value not in possible[param]:
            return Verdict(
                False,
                [f"Invalid value for parameter {param!r}: {value!r}. Expected one of {possible[param]}."],
                "value_error:others",
            )
    for param, options in possible.items():
        if param not in given and "" not in options:
            return Verdict(
                False,
                [f"Optional parameter {param!r} not provided and not marked as optional."],
                "simple_function_checker:missing_optional",
            )
    return Verdict(True)


def parallel_no_order(
    functions: list[dict[str, Any]], output: list[dict[str, dict[str, Any]]], answers: list[dict[str, Any]]
) -> Verdict:
    """BFCL's `parallel_function_checker_no_order`: every answer matched by a different call, in any order."""
    if len(output) != len(answers):
        return Verdict(
            False, ["Wrong number of functions."], "parallel_function_checker_no_order:wrong_count"
        )
    matched: set[int] = set()
    for i, answer in enumerate(answers):
        function = find_description(functions, next(iter(answer)))
        errors: list[Any] = []
        found = False
        for index, call in enumerate(output):
            if index in matched:
                continue
            result = simple(function, call, answer)
            if result.valid:
                matched.add(index)
                found = True
                break
            errors.append(
                {
                    f"Model Result Index {index}": {
                        "sub_error": result.errors,
                        "sub_error_type": result.error_type,
                    }
                }
            )
        if not found:
            left = [k for k in range(len(output)) if k not in matched]
            errors.insert(
                0,
                f"Could not find a matching function among index {left} of model output for index {i} of possible answers.",
            )
            return Verdict(False, errors, "parallel_function_checker_no_order:cannot_find_match")
    return Verdict(True)
