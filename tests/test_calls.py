"""Tests of toolformer.calls: the inline call syntax, its streaming states, and the OpenAI mapping."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import json_values
from toolformer.calls import (
    ARROWS,
    Call,
    CallSyntaxError,
    find_calls,
    format_call,
    parse_call,
    pending_call,
    quote,
    sanitize_result,
    strip_calls,
)
from toolformer.errors import ToolformerError

# ---------------------------------------------------------------------------------------------------------------
# Strategies

_LETTERS = st.characters(categories=("L",))
_NAME_CHARS = st.characters(categories=("L", "Nd", "Mn", "Pc"))

names = st.builds(lambda a, b: a + b, _LETTERS | st.just("_"), st.text(_NAME_CHARS, max_size=12)).filter(
    str.isidentifier
)
ascii_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
arrows = st.sampled_from(ARROWS)

_words = st.text(st.characters(categories=("L", "Nd")), min_size=1, max_size=8)


@st.composite
def _arg_tokens(draw: st.DrawFn, depth: int = 0) -> str:
    """Argument text as models write it: words, 1,000-style numbers, quoted strings, nested brackets."""
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 5))):
        kinds = ["word", "apostrophe", "number", "op", "dquote", "squote"] + (["group"] if depth < 3 else [])
        kind = draw(st.sampled_from(kinds))
        if kind == "word":
            token = draw(_words)
        elif kind == "apostrophe":  # What's, rock'n'roll: an apostrophe inside a word opens no string
            token = draw(_words) + "'" + draw(_words)
        elif kind == "number":
            token = f"{draw(st.integers(0, 10**9)):,}"
        elif kind == "op":
            token = draw(st.sampled_from(["+", "-", "*", "/", "=", "?", "!", ".", ":", "%", "&", "<", ">"]))
        elif kind == "dquote":  # any text, ")" and "]" included
            token = quote(draw(st.text(max_size=12)))
        elif kind == "squote":
            token = "'" + draw(st.text(st.characters(exclude_characters="'\\\n\r"), max_size=12)) + "'"
        else:
            opener, closer = draw(st.sampled_from(["()", "[]", "{}"]))
            token = opener + draw(_arg_tokens(depth + 1)) + closer
        # A single-quoted string is a string only after "(", ",", "=", ...: keep it after a comma.
        sep = ", " if kind == "squote" else draw(st.sampled_from([" ", ", "]))
        parts.append(token if not parts else sep + token)
    return "".join(parts)


args_text = _arg_tokens()
results = st.text(max_size=30)
json_objects = st.dictionaries(
    st.text(max_size=8) | st.sampled_from(["from", "class", "query", "k", "my-key", "ª"]),
    json_values,
    max_size=4,
)
# Text made of the characters the parser cares about, so that edge cases come up often.
call_ish_text = st.text(st.sampled_from(list("[]()\"'→->, aZ_\\\n{}=1.")), max_size=40) | st.text(max_size=40)


def _check_spans(text: str) -> None:
    spans = find_calls(text)
    previous_end = 0
    for n, span in enumerate(spans):
        assert text[span.start] == "["
        assert previous_end <= span.start < span.end <= len(text)
        previous_end = span.end
        if span.complete:
            assert span.stage == "done"
            assert text[span.end - 1] == "]"
            assert parse_call(text[span.start : span.end]) == span.call
        else:
            assert n == len(spans) - 1, "only the last span may be incomplete"
            assert span.end == len(text)
            assert span.stage in ("name", "args", "arrow", "result")


# ---------------------------------------------------------------------------------------------------------------
# Format and parse


def test_parse_paper_examples() -> None:
    call = parse_call("[Calculator(400 / 1400) → 0.29]")
    assert (call.name, call.args, call.result) == ("Calculator", "400 / 1400", "0.29")
    call = parse_call('[WikiSearch("Joe Biden")]')
    assert (call.name, call.args, call.result, call.input) == ("WikiSearch", '"Joe Biden"', None, "Joe Biden")


@pytest.mark.parametrize("arrow", ["->", "→"])
def test_both_arrows_are_accepted(arrow: str) -> None:
    call = parse_call(f"[Calculator(23 * 47) {arrow} 1081]")
    assert (call.name, call.args, call.result) == ("Calculator", "23 * 47", "1081")
    assert parse_call(f"[Calculator(23 * 47){arrow}1081]").result == "1081"


@given(name=names, args=args_text, result=st.none() | results, arrow=arrows)
def test_format_parse_round_trip(name: str, args: str, result: str | None, arrow: str) -> None:
    text = format_call(name, args, result, arrow=arrow)
    call = parse_call(text)
    assert call.name == name
    assert call.args == args
    assert call.result == (None if result is None else sanitize_result(result))
    assert Call(name, args, result).text(arrow=arrow) == text


@given(
    prose=st.lists(st.text(st.characters(exclude_characters="[]"), max_size=15), min_size=2, max_size=4),
    calls=st.lists(st.tuples(ascii_names, args_text, st.none() | results), min_size=1, max_size=3),
)
def test_every_call_in_a_text_is_found(prose: list[str], calls: list[tuple[str, str, str | None]]) -> None:
    pieces = [prose[0]]
    for n, (name, args, result) in enumerate(calls):
        pieces += [format_call(name, args, result), prose[min(n + 1, len(prose) - 1)]]
    text = "".join(pieces)
    spans = find_calls(text)
    assert [(s.call.name, s.call.args) for s in spans] == [(n, a) for n, a, _ in calls]
    assert all(s.complete for s in spans)
    assert [s.call.result for s in spans] == [None if r is None else sanitize_result(r) for _, _, r in calls]
    assert pending_call(text) is None


def test_sanitize_result_keeps_one_line_without_brackets() -> None:
    assert sanitize_result("a\n b\t[c]  ") == "a b (c)"
    assert sanitize_result(12) == "12"  # type: ignore[arg-type]
    assert parse_call(format_call("QA", "x", "see [1]\nthen ]")).result == "see (1) then )"


@given(st.text())
def test_sanitized_results_have_no_brackets_or_newlines(text: str) -> None:
    clean = sanitize_result(text)
    assert not set(clean) & set("[]\n\r")
    assert clean == clean.strip()
    assert sanitize_result(clean) == clean


@pytest.mark.parametrize(
    ("text", "args"),
    [
        ("[Calculator((3 + 4) * (2 - 1))]", "(3 + 4) * (2 - 1)"),
        ("[Calculator(((1)))]", "((1))"),
        ('[WikiSearch("Foo (bar")]', '"Foo (bar"'),
        ('[WikiSearch("a)b")]', '"a)b"'),
        ('[QA("what]?")]', '"what]?"'),
        ("[QA('it)s')]", "'it)s'"),
        ("[QA(x, 'a]b')]", "x, 'a]b'"),
        ("[QA(What's up?)]", "What's up?"),
        ("[QA(Who was Shakespeare's wife?)]", "Who was Shakespeare's wife?"),
        ("[QA(rock 'n' roll)]", "rock 'n' roll"),
        ('[QA(What does "a)" mean?)]', 'What does "a)" mean?'),
        ('[QA("say \\"hi)\\"")]', '"say \\"hi)\\""'),
        ('[Search(query="x)", k=[1, 2])]', 'query="x)", k=[1, 2]'),
        ('[F({"k": "v)"})]', '{"k": "v)"}'),
        ("[Calculator(1,000 + 5)]", "1,000 + 5"),
        ("[Translate(¿Dónde está la estación?)]", "¿Dónde está la estación?"),
        ("[Calendar()]", ""),
    ],
)
def test_argument_scanning(text: str, args: str) -> None:
    assert parse_call(text).args == args
    assert [s.call.args for s in find_calls(f"before {text} after")] == [args]


@pytest.mark.parametrize(
    "text",
    [
        "[1]",
        "[see foo(bar)]",
        "[Link](http://example.com)",
        "[Note(s) on this]",
        "[F(a]b)]",
        "[F(a}b)]",
        "[ F(x)]",
        "[F(x) → a [b] c]",
        "[F(x) = 3]",
    ],
)
def test_bracketed_text_that_is_not_a_call(text: str) -> None:
    assert find_calls(text) == []
    with pytest.raises(CallSyntaxError):
        parse_call(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Calculator(1)",
        "[Calculator(1)] and more",
        "[Calculator(1)",
        "[Calculator(1) → 2",
        "x [A(1)]",
        "[A(1)][B(2)]",
    ],
)
def test_parse_call_wants_exactly_one_complete_call(text: str) -> None:
    with pytest.raises(CallSyntaxError, match="not a call"):
        parse_call(text)


def test_parse_call_ignores_surrounding_whitespace() -> None:
    assert parse_call("  \n[A(1) -> 2]\t") == Call("A", "1", "2")


def test_unicode_names_and_dotted_names() -> None:
    assert parse_call("[Größe(x)]").name == "Größe"
    assert parse_call("[math.sqrt(4) → 2]").name == "math.sqrt"


@given(call_ish_text)
def test_find_calls_never_raises_and_spans_are_consistent(text: str) -> None:
    _check_spans(text)
    complete = [s for s in find_calls(text) if s.complete]
    assert find_calls(text, include_incomplete=False)[: len(complete)] == complete
    pending = pending_call(text)
    assert pending is None or (not pending.complete and pending == find_calls(text)[-1])


@given(call_ish_text)
def test_parse_call_raises_only_call_syntax_error(text: str) -> None:
    try:
        call = parse_call(text)
    except CallSyntaxError as exc:
        assert isinstance(exc, ToolformerError) and isinstance(exc, ValueError)
    else:
        assert isinstance(call, Call)


# ---------------------------------------------------------------------------------------------------------------
# Streaming: a call cut off at the end of the text


@given(name=ascii_names, args=args_text, result=results, arrow=arrows, data=st.data())
def test_every_prefix_of_a_call_is_incomplete_at_the_right_stage(
    name: str, args: str, result: str, arrow: str, data: st.DataObject
) -> None:
    head = f"[{name}("
    closed = f"{head}{args})"
    with_arrow = f"{closed} {arrow}"
    full = format_call(name, args, result, arrow=arrow)
    prefix_len = data.draw(st.integers(1, len(full) - 1), label="prefix length")
    prefix = "Some text " + full[:prefix_len]
    span = pending_call(prefix)
    assert span is not None and not span.complete
    if prefix_len < len(head):
        expected = "name"
    elif prefix_len < len(closed):
        expected = "args"
    elif prefix_len < len(with_arrow):
        expected = "arrow"
    else:
        expected = "result"
    assert span.stage == expected
    assert span.call.name == name[: prefix_len - 1] if expected == "name" else span.call.name == name
    if expected in ("arrow", "result"):
        assert span.call.args == args
    assert span.awaiting_result == (expected == "result" and not full[len(with_arrow) : prefix_len].strip())
    _check_spans(prefix)


@pytest.mark.parametrize(
    ("text", "stage", "awaiting"),
    [
        ("The answer is [", "name", False),
        ("The answer is [Calc", "name", False),
        ("The answer is [Calculator(", "args", False),
        ("The answer is [Calculator(400 / (1400", "args", False),
        ('The answer is [QA("a)', "args", False),
        ("The answer is [Calculator(400 / 1400)", "arrow", False),
        ("The answer is [Calculator(400 / 1400)  ", "arrow", False),
        ("The answer is [Calculator(400 / 1400) -", "arrow", False),
        ("The answer is [Calculator(400 / 1400) ->", "result", True),
        ("The answer is [Calculator(400 / 1400) → ", "result", True),
        ("The answer is [Calculator(400 / 1400) → 0.2", "result", False),
    ],
)
def test_pending_call_stages(text: str, stage: str, awaiting: bool) -> None:
    span = pending_call(text)
    assert span is not None
    assert (span.complete, span.stage, span.awaiting_result) == (False, stage, awaiting)
    assert span.end == len(text)
    assert text[span.start] == "["


def test_awaiting_result_carries_the_call() -> None:
    span = pending_call('Joe Biden was born in [WikiSearch("Joe Biden") ->')
    assert span is not None and span.awaiting_result
    assert span.call == Call("WikiSearch", '"Joe Biden"', "")
    assert span.call.input == "Joe Biden"


def test_no_pending_call_after_a_complete_one() -> None:
    assert pending_call("x [A(1) → 2] and y") is None
    assert pending_call("[1] and [2") is None
    assert pending_call("done [A(1)] then [B(") == find_calls("done [A(1)] then [B(")[-1]


# ---------------------------------------------------------------------------------------------------------------
# strip_calls


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no calls here", "no calls here"),
        ("keep  my   spacing [and [brackets]", "keep  my   spacing [and [brackets]"),
        ("The price is [Calculator(4 * 5) → 20] 20 dollars.", "The price is 20 dollars."),
        ("400 (or [Calculator(400 / 1400) → 0.29] 29%) passed", "400 (or 29%) passed"),
        ("It costs 5 [Calculator(2 + 3) → 5].", "It costs 5."),
        ("[Calendar() → Today is Monday.] Today is Monday.", "Today is Monday."),
        ("Ends with a call [QA(x)]", "Ends with a call"),
        ("a [A()] [B()] b", "a b"),
        ("a [A()][B()] b", "a b"),
        ("line one [A(1)]\nline two", "line one\nline two"),
        ("line one\n[A(1)] line two", "line one\nline two"),
        ("one\n\n[A(1)]\n\ntwo", "one\n\n\n\ntwo"),
        ("    [A(1)] indented", "    indented"),
        ("incomplete [A(1) → 2", "incomplete [A(1) → 2"),
    ],
)
def test_strip_calls(text: str, expected: str) -> None:
    assert strip_calls(text) == expected


@given(
    words=st.lists(
        st.text(st.characters(categories=("L", "Nd")), min_size=1, max_size=6), min_size=1, max_size=6
    ),
    calls=st.lists(st.tuples(ascii_names, args_text, st.none() | results), max_size=6),
    seps=st.lists(st.sampled_from([" ", "\n"]), min_size=14, max_size=14),
    data=st.data(),
)
def test_strip_calls_leaves_only_the_prose(
    words: list[str], calls: list[tuple[str, str, str | None]], seps: list[str], data: st.DataObject
) -> None:
    tokens: list[str] = list(words)
    for name, args, result in calls:
        tokens.insert(data.draw(st.integers(0, len(tokens))), format_call(name, args, result))
    text = tokens[0] + "".join(sep + token for sep, token in zip(seps, tokens[1:], strict=False))
    stripped = strip_calls(text)
    assert stripped.split() == words
    assert stripped.count("\n") == text.count("\n"), "newlines are never touched"
    assert "  " not in stripped
    assert stripped == stripped.strip(" ")
    assert find_calls(stripped, include_incomplete=False) == []


# ---------------------------------------------------------------------------------------------------------------
# Call.input and literal_args


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ('"Joe Biden"', "Joe Biden"),
        ("  'Joe Biden'  ", "Joe Biden"),
        ('"a \\"b\\" c"', 'a "b" c'),
        ('"caf\\u00e9"', "café"),
        ("'What's up'", "What's up"),  # not a Python literal, still one quoted string
        ("1,000 + 5", "1,000 + 5"),
        ("What's up?", "What's up?"),
        ('"a", "b"', '"a", "b"'),
        ("  spaced out  ", "spaced out"),
        ('"', '"'),
        ("", ""),
    ],
)
def test_input_unquotes_one_quoted_string(args: str, expected: str) -> None:
    assert Call("QA", args).input == expected


@given(st.text(max_size=20))
def test_input_of_a_quoted_string_is_the_string(text: str) -> None:
    assert Call("QA", quote(text)).input == text


def test_input_of_json_calls() -> None:
    assert Call("QA", arguments={"question": "Who?"}).input == "Who?"
    assert Call("F", arguments={"n": 3}).input == "3"
    assert Call("F", arguments={}).input == ""
    assert json.loads(Call("F", arguments={"a": 1, "b": "é"}).input) == {"a": 1, "b": "é"}
    assert Call.from_openai({"name": "QA", "arguments": {"question": "Who?"}}).input == "Who?"


@pytest.mark.parametrize(
    ("args", "positional", "keywords"),
    [
        ("", [], {}),
        ("   ", [], {}),
        ('"a", 2, k=True', ["a", 2], {"k": True}),
        ("[1, 2], {'x': None}", [[1, 2], {"x": None}], {}),
        ("q='x)', n=-3.5", [], {"q": "x)", "n": -3.5}),
        ('**{"from": "USD"}, to="EUR"', [], {"from": "USD", "to": "EUR"}),
        ('"multi\\nline"', ["multi\nline"], {}),
    ],
)
def test_literal_args(args: str, positional: list, keywords: dict) -> None:
    assert Call("F", args).literal_args() == (positional, keywords)


@pytest.mark.parametrize(
    "args",
    [
        "Joe Biden",
        "1 + 2",
        "x=y",
        "1)(2",  # would parse as f(1)(2)
        "1) # ",  # would parse as f(1) with a comment
        "1), f(2",
        "*[1, 2]",
        "**{1: 2}",
        "a=1, a=2",
        "a=1, **{'a': 2}",
        "__import__('os')",
        "(" * 300 + ")" * 300,
        "'unterminated",
    ],
)
def test_literal_args_rejects_non_literals(args: str) -> None:
    with pytest.raises(CallSyntaxError, match="F"):
        Call("F", args).literal_args()


@given(json_objects)
def test_json_arguments_read_back_as_literals(arguments: dict) -> None:
    call = Call.from_openai({"name": "F", "arguments": arguments})
    expected = ([next(iter(arguments.values()))], {}) if len(arguments) == 1 else ([], arguments)
    assert call.literal_args() == expected
    reparsed = parse_call(call.text())
    assert reparsed.args == call.args
    assert reparsed.literal_args() == expected


# ---------------------------------------------------------------------------------------------------------------
# OpenAI tool_calls


def test_to_openai_shape() -> None:
    entry = Call("WikiSearch", '"Joe Biden"', id="call_1").to_openai()
    assert entry == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "WikiSearch", "arguments": '{"input": "Joe Biden"}'},
    }


def test_to_openai_arguments() -> None:
    def arguments(call: Call) -> dict:
        return json.loads(call.to_openai()["function"]["arguments"])

    assert arguments(Call("Calendar")) == {}
    assert arguments(Call("Calendar", "  ")) == {}
    assert arguments(Call("Calculator", "1,000 + 5")) == {"input": "1,000 + 5"}
    assert arguments(Call("Weather", 'city="Paris", days=3')) == {"city": "Paris", "days": 3}
    assert arguments(Call("F", '"a", k=1')) == {"input": '"a", k=1'}
    assert arguments(Call("F", arguments={"q": "é"})) == {"q": "é"}
    assert "é" in Call("F", arguments={"q": "é"}).to_openai()["function"]["arguments"]


def test_to_openai_ids_are_fresh_unless_given() -> None:
    first, second = Call("A").to_openai()["id"], Call("A").to_openai()["id"]
    assert first != second and first.startswith("call_")
    assert Call("A", id="x").to_openai()["id"] == "x"


@pytest.mark.parametrize(
    ("entry", "arguments"),
    [
        ({"id": "c1", "type": "function", "function": {"name": "F", "arguments": '{"q": "x"}'}}, {"q": "x"}),
        ({"function": {"name": "F", "arguments": {"q": "x"}}}, {"q": "x"}),
        ({"name": "F", "arguments": {"q": "x"}}, {"q": "x"}),
        ({"function": {"name": "F", "arguments": "{}"}}, {}),
        ({"function": {"name": "F", "arguments": {}}}, {}),
        ({"function": {"name": "F", "arguments": ""}}, {}),
        ({"function": {"name": "F", "arguments": None}}, {}),
        ({"function": {"name": "F"}}, {}),
    ],
)
def test_from_openai(entry: dict, arguments: dict) -> None:
    call = Call.from_openai(entry)
    assert call.name == "F"
    assert call.arguments == arguments
    assert call.id == entry.get("id")
    assert call.result is None


def test_from_openai_empty_arguments_round_trip() -> None:
    call = Call.from_openai({"function": {"name": "Calendar", "arguments": "{}"}})
    assert (call.args, call.input, call.literal_args()) == ("", "", ([], {}))
    assert call.to_openai()["function"]["arguments"] == "{}"


@pytest.mark.parametrize(
    "entry",
    [
        {"function": {"name": "F", "arguments": "{bad json"}},
        {"function": {"name": "F", "arguments": "[1, 2]"}},
        {"function": {"name": "F", "arguments": [1, 2]}},
        {"function": {"name": "F", "arguments": '"a string"'}},
        {"function": {"arguments": "{}"}},
        {"function": {"name": "", "arguments": "{}"}},
        {"function": {"name": 3, "arguments": "{}"}},
        {"function": "F"},
        [1, 2],
        "F",
    ],
)
def test_from_openai_rejects_bad_entries(entry: object) -> None:
    with pytest.raises(CallSyntaxError):
        Call.from_openai(entry)  # type: ignore[arg-type]


@given(name=ascii_names, arguments=json_objects, call_id=st.none() | st.text(min_size=1, max_size=10))
def test_openai_round_trip_of_json_calls(name: str, arguments: dict, call_id: str | None) -> None:
    call = Call.from_openai({"id": call_id, "function": {"name": name, "arguments": json.dumps(arguments)}})
    again = Call.from_openai(call.to_openai())
    assert again == call
    assert again.arguments == arguments
    if call_id is not None:
        assert again.id == call_id
    dict_form = Call.from_openai({"id": call_id, "function": {"name": name, "arguments": arguments}})
    assert dict_form == call and dict_form.arguments == call.arguments


@given(name=ascii_names, args=args_text)
def test_openai_round_trip_keeps_the_input_of_inline_calls(name: str, args: str) -> None:
    call = Call(name, args)
    again = Call.from_openai(call.to_openai())
    assert again.name == name
    try:
        positional, keywords = call.literal_args()
    except CallSyntaxError:
        positional, keywords = [], {}
    if keywords and not positional:
        assert again.arguments == keywords
    else:
        assert again.input == call.input


def test_call_equality_ignores_arguments_and_id() -> None:
    assert Call("A", "1", id="x") == Call("A", "1", id="y")
    assert Call("A", "1", "2").with_result("3") == Call("A", "1", "3")
    assert Call("A", "1", "2", id="x").with_result(None).id == "x"
