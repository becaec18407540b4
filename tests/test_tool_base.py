"""Tests of toolformer.tools.base: the @tool decorator's schemas, binding calls to arguments, and safe runs."""

from __future__ import annotations

import json
import sys
import threading
from typing import Literal, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolformer.calls import Call, CallSyntaxError, quote
from toolformer.errors import ConfigError, ToolError, ToolTimeoutError
from toolformer.tools.base import MAX_RESULT_CHARS, Tool, ToolOutput, error_text, run_with_timeout, tool

# ---------------------------------------------------------------------------------------------------------------
# @tool: schema from type hints and docstring


@tool
def search(query: str, k: int = 3, lang: Optional[str] = None) -> str:  # noqa: UP045 - typing.Optional on purpose
    """Search the corpus for passages.

    Longer explanation that is still part of the description.

    Args:
        query: what to look for, e.g. 'Eiffel Tower'.
        k (int): how many passages
            to return.
        lang: language code.

    Returns:
        Passages joined by " | ".
    """
    return f"{query}|{k}|{lang}"


@tool(name="Convert", description="Convert money.", timeout=2.5)
def convert(
    amount: float, unit: Literal["USD", "EUR"], tags: list[str], flags: dict, mixed: int | str = 1
) -> str:
    return f"{amount} {unit}"


def test_schema_from_type_hints() -> None:
    props = search.parameters["properties"]
    assert props["query"]["type"] == "string"
    assert props["k"] == {"type": "integer", "description": "how many passages to return.", "default": 3}
    assert props["lang"]["type"] == "string"  # Optional[str] is a string that may be left out
    assert search.parameters["type"] == "object"
    assert search.parameters["required"] == ["query"]

    cprops = convert.parameters["properties"]
    assert cprops["amount"] == {"type": "number"}
    assert cprops["unit"] == {"type": "string", "enum": ["USD", "EUR"]}
    assert cprops["tags"] == {"type": "array", "items": {"type": "string"}}
    assert cprops["flags"] == {"type": "object"}
    assert cprops["mixed"] == {"anyOf": [{"type": "integer"}, {"type": "string"}], "default": 1}
    assert convert.parameters["required"] == ["amount", "unit", "tags", "flags"]


def test_docstring_description_stops_at_the_first_section() -> None:
    assert search.description == (
        "Search the corpus for passages. Longer explanation that is still part of the description."
    )
    assert search.parameters["properties"]["query"]["description"] == "what to look for, e.g. 'Eiffel Tower'."
    assert "Passages joined" not in json.dumps(search.parameters)


def test_decorator_options_and_defaults() -> None:
    assert (convert.name, convert.description, convert.timeout) == ("Convert", "Convert money.", 2.5)
    assert (search.name, search.timeout) == ("search", 5.0)

    @tool
    def bare(x, *args, **kwargs):  # no hints, no docstring
        return x

    assert bare.description == "bare"
    assert bare.parameters == {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}


def test_literal_and_container_types() -> None:
    @tool
    def f(
        level: Literal[1, 2, 3],
        ratio: Literal[0.5, 1],
        flag: Literal[True],
        mixed: Literal["a", 1],
        pair: tuple[int, int],
        many: tuple[str, ...],
        bag: set[int],
        maybe: Literal["x", "y"] | None = None,
    ) -> str:
        return ""

    props = f.parameters["properties"]
    assert props["level"] == {"type": "integer", "enum": [1, 2, 3]}
    assert props["ratio"] == {"type": "number", "enum": [0.5, 1]}
    assert props["flag"] == {"type": "boolean", "enum": [True]}
    assert props["mixed"] == {"enum": ["a", 1]}
    assert props["pair"] == {"type": "array", "items": {"type": "integer"}}
    assert props["many"] == {"type": "array", "items": {"type": "string"}}
    assert props["bag"] == {"type": "array", "items": {"type": "integer"}}
    assert props["maybe"] == {"type": "string", "enum": ["x", "y"], "default": None}


def test_defaults_that_are_not_json_are_left_out() -> None:
    marker = object()

    @tool
    def f(x: str = marker) -> str:  # type: ignore[assignment]
        return "ok"

    assert "default" not in f.parameters["properties"]["x"]
    json.dumps(f.openai_schema())


def test_unresolvable_hints_fall_back_to_strings() -> None:
    def f(x: NotDefinedAnywhere) -> str:  # type: ignore[name-defined]  # noqa: F821
        """Does f."""
        return x

    t = tool(f)
    assert t.parameters["properties"] == {"x": {"type": "string"}}
    assert t.run("hello").text == "hello"


def test_openai_schema() -> None:
    schema = search.openai_schema()
    assert schema == {
        "type": "function",
        "function": {"name": "search", "description": search.description, "parameters": search.parameters},
    }
    json.dumps(schema)


@pytest.mark.parametrize("name", ["", "2fast", "has space", "dash-name", "dot.name"])
def test_tool_names_must_be_identifiers(name: str) -> None:
    with pytest.raises(ConfigError, match="tool name"):
        Tool(name=name, description="d", fn=lambda: "")


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        Tool(name="T", description="d", fn=lambda: "", timeout=timeout)


# ---------------------------------------------------------------------------------------------------------------
# bind


def _one_param(ptype: str = "string", required: bool = True) -> Tool:
    params = {"type": "object", "properties": {"x": {"type": ptype}}}
    if required:
        params["required"] = ["x"]
    return Tool(name="One", description="d", fn=lambda x="default": x, parameters=params)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("1,000 + 5", "1,000 + 5"),
        ("400 / 1400", "400 / 1400"),
        ('"Joe Biden"', "Joe Biden"),
        ("Joe Biden", "Joe Biden"),
        ("What's up?", "What's up?"),
        ("a, b, c", "a, b, c"),
        ("", ""),
    ],
)
def test_one_parameter_tools_get_the_raw_text(args: str, expected: str) -> None:
    assert _one_param().bind(Call("One", args)) == {"x": expected}


@given(st.text(max_size=30))
def test_one_parameter_binding_never_splits(text: str) -> None:
    assert _one_param().bind(Call("One", text)) == {"x": Call("One", text).input}
    assert _one_param().bind(Call("One", quote(text))) == {"x": text}


def test_calculator_style_call_does_not_split_at_the_comma() -> None:
    @tool
    def calculator(expression: str) -> str:
        """Compute."""
        return expression.replace(",", "")

    assert calculator.bind(Call("Calculator", "1,000 + 5")) == {"expression": "1,000 + 5"}
    assert calculator.run(Call("Calculator", "1,000 + 5")).text == "1000 + 5"


@pytest.mark.parametrize(
    ("ptype", "args", "expected"),
    [
        ("integer", "10", 10),
        ("integer", " -3 ", -3),
        ("integer", "ten", "ten"),
        ("integer", "True", "True"),
        ("integer", "1.5", "1.5"),
        ("number", "1.5", 1.5),
        ("number", "2", 2),
        ("boolean", "true", True),
        ("boolean", "False", False),
        ("boolean", "1", "1"),
        ("array", "[1, 'a']", [1, "a"]),
        ("array", "(1, 2)", [1, 2]),
        ("object", "{'a': 1}", {"a": 1}),
        ("string", "10", "10"),
    ],
)
def test_one_typed_parameter_gets_its_literal_value(ptype: str, args: str, expected: object) -> None:
    assert _one_param(ptype).bind(Call("One", args)) == {"x": expected}


def test_empty_call_leaves_an_optional_parameter_to_its_default() -> None:
    tool_ = _one_param(required=False)
    assert tool_.bind(Call("One", "")) == {}
    assert tool_.run(Call("One", "")).text == "default"
    assert _one_param(required=True).bind(Call("One", "  ")) == {"x": ""}


def test_multi_parameter_tools_get_literal_arguments() -> None:
    assert search.bind(Call("search", '"Eiffel", 2')) == {"query": "Eiffel", "k": 2}
    assert search.bind(Call("search", '"Eiffel", lang="fr"')) == {"query": "Eiffel", "lang": "fr"}
    assert search.bind(Call("search", 'k=5, query="x"')) == {"k": 5, "query": "x"}
    assert search.run(Call("search", '"Eiffel", 2, "fr"')).text == "Eiffel|2|fr"


def test_multi_parameter_tools_take_plain_text_for_their_one_required_parameter() -> None:
    assert search.bind(Call("search", "Joe Biden")) == {"query": "Joe Biden"}
    assert search.bind(Call("search", "1,000 facts")) == {"query": "1,000 facts"}
    with pytest.raises(CallSyntaxError, match="not literals"):
        convert.bind(Call("Convert", "ten dollars"))


def test_multi_parameter_binding_errors() -> None:
    with pytest.raises(ToolError, match="takes 3 arguments"):
        search.bind(Call("search", '"a", 1, "fr", 4'))
    with pytest.raises(ToolError, match="two values for argument 'query'"):
        search.bind(Call("search", '"a", query="b"'))


def test_json_calls_get_their_dict() -> None:
    call = Call.from_openai({"name": "search", "arguments": '{"query": "a, b", "k": 2}'})
    assert search.bind(call) == {"query": "a, b", "k": 2}
    assert search.run(call).text == "a, b|2|None"
    empty = Call.from_openai({"name": "search", "arguments": "{}"})
    assert search.bind(empty) == {}
    assert search.run(empty).ok is False


def test_one_parameter_tool_takes_a_lone_json_value_under_any_key() -> None:
    call = Call.from_openai(Call("One", "1,000 + 5").to_openai())  # {"input": "1,000 + 5"}
    assert _one_param().bind(call) == {"x": "1,000 + 5"}
    assert _one_param().bind(Call("One", arguments={"x": "a", "y": "b"})) == {"x": "a", "y": "b"}


def test_tools_without_parameters_bind_nothing() -> None:
    t = Tool(name="Calendar", description="d", fn=lambda: "today")
    assert t.bind(Call("Calendar", "whatever")) == {}
    assert t.run(Call("Calendar")).text == "today"


# ---------------------------------------------------------------------------------------------------------------
# run: never raises


def test_run_returns_text_and_timing() -> None:
    out = search.run(Call("search", '"x"'))
    assert isinstance(out, ToolOutput)
    assert (out.text, out.ok) == ("x|3|None", True)
    assert out.seconds >= 0
    assert search.run('"y", 1').text == "y|1|None"  # a string is the argument text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (3, "3"),
        (1081.0, "1081"),
        (0.2857142857, "0.285714"),
        (1234567.5, "1234567.5"),
        (1e20, "1e+20"),
        (1e-7, "1e-07"),
        (float("inf"), "inf"),
        ([1, 2], "[1, 2]"),
    ],
)
def test_results_become_text(value: object, text: str) -> None:
    t = Tool(name="T", description="d", fn=lambda: value)
    assert t.run(Call("T")).text == text


def test_exceptions_become_error_text() -> None:
    def boom(x: str) -> str:
        raise ValueError(f"bad input {x!r}\nsecond line")

    out = tool(boom).run(Call("boom", "1"))
    assert (out.text, out.ok) == ("error: bad input '1'", False)

    out = tool(lambda x: 1 / 0, name="Div").run(Call("Div", "1"))
    assert out.text == "error: division by zero" and not out.ok

    def quiet(x: str) -> str:
        raise RuntimeError()

    assert tool(quiet).run(Call("quiet", "1")).text == "error: RuntimeError"


def test_binding_errors_become_error_text() -> None:
    out = search.run(Call("search", '"a", 1, "fr", 4'))
    assert not out.ok and out.text.startswith("error: search takes 3 arguments")
    out = convert.run(Call("Convert", "oops"))
    assert not out.ok and "not literals" in out.text
    out = search.run(Call("search", arguments={"nope": 1}))
    assert not out.ok and out.text.startswith("error: ") and "nope" in out.text


def test_system_exit_in_a_tool_does_not_escape() -> None:
    def leave(x: str) -> str:
        sys.exit(3)

    out = tool(leave).run(Call("leave", "x"))
    assert (out.text, out.ok) == ("error: leave raised SystemExit", False)


def test_long_results_are_cut() -> None:
    t = Tool(name="Long", description="d", fn=lambda: "x" * (MAX_RESULT_CHARS * 3))
    out = t.run(Call("Long"))
    assert len(out.text) == MAX_RESULT_CHARS and out.text.endswith("…") and out.ok
    short = Tool(name="Short", description="d", fn=lambda: "x" * MAX_RESULT_CHARS).run(Call("Short")).text
    assert short == "x" * MAX_RESULT_CHARS


def test_timeouts() -> None:
    release = threading.Event()
    slow = Tool(name="Slow", description="d", fn=lambda: release.wait(5) and "late", timeout=0.05)
    try:
        out = slow.run(Call("Slow"))
        assert (out.text, out.ok) == ("error: Slow timed out after 0.05 s", False)
        out = slow.run(Call("Slow"), timeout=0.02)
        assert out.text == "error: Slow timed out after 0.02 s"
    finally:
        release.set()
    assert Tool(name="Fast", description="d", fn=lambda: "ok", timeout=0.05).run(Call("Fast")).text == "ok"


def test_run_with_timeout_directly() -> None:
    assert run_with_timeout(lambda: "v", 1.0) == "v"
    with pytest.raises(KeyError):
        run_with_timeout(lambda: {}["k"], 1.0)
    release = threading.Event()
    try:
        with pytest.raises(ToolTimeoutError, match="slow timed out after 0.01 s"):
            run_with_timeout(lambda: str(release.wait(5)), 0.01, "slow")
    finally:
        release.set()


def test_error_text() -> None:
    assert error_text(ValueError("one\ntwo")) == "error: one"
    assert error_text(ToolError("  spaced  ")) == "error: spaced"
    assert error_text(KeyError()) == "error: KeyError"


def test_direct_call_has_no_safety_net() -> None:
    assert search("q", k=1) == "q|1|None"
    with pytest.raises(ZeroDivisionError):
        tool(lambda x: 1 / 0, name="Div")("1")
