"""Tests of toolformer.runtime.jsoncalls: JSON tool calls in generated text, streaming hold-back, tools prompt."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import json_values
from toolformer.calls import Call
from toolformer.errors import ConfigError
from toolformer.runtime.jsoncalls import (
    format_json_call,
    parse_json_calls,
    pending_json_call,
    render_tools_prompt,
)
from toolformer.tools.base import tool

# ---------------------------------------------------------------------------------------------------------------
# Strategies and helpers

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
arguments = st.dictionaries(st.text(max_size=10), json_values, max_size=4)
# Prose that cannot itself look like a call: no "<" (tags), "{" or "[" (JSON, [TOOL_CALLS]).
prose = st.text(st.characters(exclude_characters="<{[`"), max_size=30)


def _key(call: Call) -> tuple[str, str, Any]:
    return call.name, call.args, call.arguments


def _gemma(value: Any) -> str:
    """FunctionGemma's notation for a JSON value."""
    if isinstance(value, str):
        return f"<escape>{value}<escape>"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_gemma(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_gemma(v) for v in value) + "]"
    return json.dumps(value)


gemma_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
gemma_text = st.text(max_size=12).filter(lambda s: "<escape>" not in s)
gemma_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**9), 10**9) | st.floats(allow_nan=False, allow_infinity=False)
    | gemma_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(gemma_keys, inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


def _render(call_name: str, args: dict[str, Any], form: str) -> str:
    obj = {"name": call_name, "arguments": args}
    if form == "hermes":
        return format_json_call(Call.from_openai(obj))
    if form == "hermes-inline":
        return "<tool_call>" + json.dumps(obj) + "</tool_call>"
    if form == "hermes-string-arguments":
        return "<tool_call>" + json.dumps({"name": call_name, "arguments": json.dumps(args)}) + "</tool_call>"
    if form == "llama3":
        return json.dumps({"name": call_name, "parameters": args})
    if form == "python-tag":
        return "<|python_tag|>" + json.dumps({"name": call_name, "parameters": args})
    if form == "openai":
        return json.dumps(
            {"type": "function", "function": {"name": call_name, "arguments": json.dumps(args)}}
        )
    if form == "fenced":
        return "```json\n" + json.dumps(obj, indent=2) + "\n```"
    raise AssertionError(form)


FORMS = ["hermes", "hermes-inline", "hermes-string-arguments", "llama3", "python-tag", "openai", "fenced"]


# ---------------------------------------------------------------------------------------------------------------
# Round trips


@given(name=names, args=arguments)
def test_tool_call_round_trip(name: str, args: dict) -> None:
    call = Call.from_openai({"name": name, "arguments": args})
    content, calls = parse_json_calls(format_json_call(call))
    assert content == ""
    assert [_key(c) for c in calls] == [_key(call)]
    assert calls[0].arguments == args


@given(name=names, args=arguments, form=st.sampled_from(FORMS))
def test_every_format_gives_the_same_call(name: str, args: dict, form: str) -> None:
    expected = Call.from_openai({"name": name, "arguments": args})
    content, calls = parse_json_calls(_render(name, args, form))
    assert content == ""
    assert [_key(c) for c in calls] == [_key(expected)]


@given(name=gemma_keys, args=st.dictionaries(gemma_keys, gemma_values, max_size=4))
def test_function_gemma_round_trip(name: str, args: dict) -> None:
    text = f"<start_function_call>call:{name}{_gemma(args)}<end_function_call>"
    content, calls = parse_json_calls(text)
    assert content == ""
    assert [_key(c) for c in calls] == [_key(Call.from_openai({"name": name, "arguments": args}))]


@given(
    before=prose,
    between=prose,
    after=prose,
    calls=st.lists(
        st.tuples(names, arguments, st.sampled_from(["hermes", "hermes-inline"])), min_size=1, max_size=3
    ),
)
def test_calls_among_prose(before: str, between: str, after: str, calls: list) -> None:
    blocks = [_render(n, a, form) for n, a, form in calls]
    text = before + blocks[0] + "".join(between + b for b in blocks[1:]) + after
    content, found = parse_json_calls(text)
    assert [(c.name, c.arguments) for c in found] == [(n, a) for n, a, _ in calls]
    assert "".join(content.split()) == "".join((before + between * (len(calls) - 1) + after).split())
    assert "tool_call" not in content
    assert not pending_json_call(text)


# ---------------------------------------------------------------------------------------------------------------
# Formats


def test_hermes_several_calls_and_content() -> None:
    text = (
        "Let me look that up.\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
    )
    content, calls = parse_json_calls(text)
    assert content == "Let me look that up."
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Paris"}), ("get_time", {})]
    assert calls[0].input == "Paris"
    assert json.loads(calls[1].to_openai()["function"]["arguments"]) == {}


@pytest.mark.parametrize(
    "body",
    [
        '[{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]',
        '{"name": "a", "arguments": {"x": 1}}\n{"name": "b", "arguments": {}}',
        '```json\n[{"name": "a", "arguments": {"x": 1}}, {"name": "b"}]\n```',
        "{'name': 'a', 'arguments': {'x': 1}}, {'name': 'b', 'arguments': {}}",
    ],
)
def test_several_calls_in_one_tag(body: str) -> None:
    content, calls = parse_json_calls(f"<tool_call>{body}</tool_call>")
    assert content == ""
    assert [(c.name, c.arguments) for c in calls] == [("a", {"x": 1}), ("b", {})]


def test_missing_close_tag_at_the_end_is_forgiven() -> None:
    content, calls = parse_json_calls('Checking.\n<tool_call>\n{"name": "f", "arguments": {"q": 1}}\n')
    assert (content, [(c.name, c.arguments) for c in calls]) == ("Checking.", [("f", {"q": 1})])
    text = 'Checking.\n<tool_call>\n{"name": "f", "arguments": {"q": 1'
    assert parse_json_calls(text) == (text, [])


def test_bare_json_forms() -> None:
    _, calls = parse_json_calls(
        '[TOOL_CALLS][{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {}}]'
    )
    assert [(c.name, c.arguments) for c in calls] == [("f", {"a": 1}), ("g", {})]
    content, calls = parse_json_calls(
        '{"name": "f", "parameters": {"a": 1}}; {"name": "g", "parameters": {}}'
    )
    assert (content, [c.name for c in calls]) == ("", ["f", "g"])
    content, calls = parse_json_calls(
        'I will search.\n{"name": "search", "arguments": {"q": "x"}}\nThen answer.'
    )
    assert (content, [c.name for c in calls]) == ("I will search.\n\nThen answer.", ["search"])


def test_openai_shaped_bare_json_keeps_its_id() -> None:
    text = json.dumps(
        {"id": "call_9", "type": "function", "function": {"name": "f", "arguments": '{"x": 2}'}}
    )
    _, calls = parse_json_calls(text)
    assert [(c.name, c.arguments, c.id) for c in calls] == [("f", {"x": 2}, "call_9")]
    assert calls[0].to_openai()["id"] == "call_9"


def test_function_gemma() -> None:
    text = (
        "<start_function_call>call:get_weather{city:<escape>Paris, {France}: [1]<escape>,days:3,metric:true,"
        "ratio:0.5,none:null,opts:{units:[<escape>C<escape>,2]}}<end_function_call>"
        "<start_function_call>call:now{}<end_function_call>"
    )
    content, calls = parse_json_calls(text)
    assert content == ""
    assert [(c.name, c.arguments) for c in calls] == [
        (
            "get_weather",
            {
                "city": "Paris, {France}: [1]",
                "days": 3,
                "metric": True,
                "ratio": 0.5,
                "none": None,
                "opts": {"units": ["C", 2]},
            },
        ),
        ("now", {}),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "{}",
        "[]",
        '{"name": "Bob", "age": 3}',
        '{"name": "f"}',  # a bare object needs "arguments" or "parameters"
        '{"name": "", "arguments": {}}',
        '{"name": "f", "arguments": [1]}',
        '{"name": "f", "arguments": "{bad"}',
        '[{"name": "f", "arguments": {}}, {"not": "a call"}]',
        'The JSON is {"name": "f", "arguments": {}} mid-line.',
        "<tool_call>{bad json}</tool_call> after",
        '<tool_call>{"name": "f", "arguments": {}} trailing words</tool_call>',
        '<tool_call>\n{"name": "f", "arguments": {}}\njunk\n</tool_call>',
        '<tool_call>{"arguments": {}}</tool_call>',
        "<tool_call></tool_call>",
        "<tool_call>[]</tool_call>",
        "<tool_call>__import__('os').system('x')</tool_call>",
        "<start_function_call>get_weather{}<end_function_call>",
        "<start_function_call>call:f{city:<escape>Paris}<end_function_call>",
        "<start_function_call>call:f{city:Paris<end_function_call>",
        "<start_function_call>call:f{a:1} extra<end_function_call>",
        "<start_function_call>call:f{a:1,,}<end_function_call>",
        "<start_function_call>call:{a:1}<end_function_call>",
        "Just prose, with <b>tags</b> and a [link](x).",
    ],
)
def test_malformed_or_ordinary_text_stays_content(text: str) -> None:
    assert parse_json_calls(text) == (text, [])


def test_malformed_call_stays_while_good_ones_are_taken() -> None:
    text = '<tool_call>{bad}</tool_call>\n<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    content, calls = parse_json_calls(text)
    assert content == "<tool_call>{bad}</tool_call>"
    assert [c.name for c in calls] == ["f"]


call_ish = st.lists(
    st.sampled_from(
        ["<tool_call>", "</tool_call>", "<start_function_call>", "<end_function_call>", "<escape>", "call:",
         "<|python_tag|>", "```json\n", "```", '{"name": "f", ', '"arguments": ', '"parameters": ', "{", "}", "[",
         "]", ":", ",", '"', "\\", "\n", " ", "x", "1", "true", "null", "'"]
    ),
    max_size=25,
).map("".join)  # fmt: skip


@given(st.one_of(call_ish, st.text(max_size=60)))
def test_never_raises(text: str) -> None:
    content, calls = parse_json_calls(text)
    assert isinstance(content, str)
    assert all(isinstance(c, Call) and c.name and isinstance(c.arguments, dict) for c in calls)
    if not calls:
        assert content == text
    assert pending_json_call(text) in (True, False)


# ---------------------------------------------------------------------------------------------------------------
# Streaming hold-back


@given(before=prose, name=names, args=arguments, form=st.sampled_from(FORMS), data=st.data())
def test_every_prefix_of_a_call_is_pending(before: str, name: str, args: dict, form: str, data: Any) -> None:
    before = before.rstrip() + "\n" if before.strip() else ""
    block = _render(name, args, form)
    cut = data.draw(st.integers(1, len(block) - 1), label="cut")
    assert pending_json_call(before + block[:cut])
    assert not pending_json_call(before + block)


@given(prose)
def test_prose_is_never_pending(text: str) -> None:
    assert not pending_json_call(text)


@pytest.mark.parametrize(
    ("text", "pending"),
    [
        ("Hello", False),
        ("Hello <", True),
        ("Hello <tool_", True),
        ("Hello <tool_call>", True),
        ('Hello <tool_call>{"name": "f", "arguments": {}}', True),
        ('Hello <tool_call>{"name": "f", "arguments": {}}</tool_', True),
        ('Hello <tool_call>{"name": "f", "arguments": {}}</tool_call>', False),
        ("<start_function_call>call:f{a:", True),
        ("<start_function_call>call:f{a:1}<end_function_call>", False),
        ("<|python", True),
        ("{", True),
        ('{"na', True),
        ('{"name": "f", "arguments": {"q": "}', True),
        ('  [{"name": "f"', True),
        ('{"name": "f", "arguments": {}}', False),
        ('{"title": "x"', False),
        ("{x", False),
        ("[1, 2", False),
        ("Sets like {1, 2", False),
        ("line one\n{", True),
        ('<tool_call>\n{"name": "f"\n</tool_call>\nand then prose', False),
    ],
)
def test_pending_json_call(text: str, pending: bool) -> None:
    assert pending_json_call(text) is pending


# ---------------------------------------------------------------------------------------------------------------
# Tools prompt


def test_render_tools_prompt() -> None:
    @tool
    def get_weather(city: str, days: int = 1) -> str:
        """Weather forecast for a city.

        Args:
            city: the city name.
        """
        return city

    bare = {"name": "now", "description": "The time.", "parameters": {"type": "object", "properties": {}}}
    prompt = render_tools_prompt([get_weather.openai_schema(), bare])
    inside = prompt.split("<tools>\n", 1)[1].split("\n</tools>", 1)[0].splitlines()
    assert [json.loads(line) for line in inside] == [
        get_weather.openai_schema(),
        {"type": "function", "function": bare},
    ]
    assert "<tool_call>" in prompt and "</tool_call>" in prompt
    assert '"arguments"' in prompt
    assert render_tools_prompt([]) == ""


def test_render_tools_prompt_keeps_unicode_readable() -> None:
    assert "Météo" in render_tools_prompt([{"name": "meteo", "description": "Météo"}])


@pytest.mark.parametrize(
    "schema", [{"description": "no name"}, {"function": {"name": ""}}, "get_weather", None]
)
def test_render_tools_prompt_rejects_schemas_without_names(schema: Any) -> None:
    with pytest.raises(ConfigError, match="tool schema 0"):
        render_tools_prompt([schema])
