"""`ReplyStream`: streamed content deltas add up to exactly the non-streamed content, however the text is chunked."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from toolformer.serve.stream import ReplyStream, join_rounds, round_content

_TEXT = st.text(alphabet="abcXYZ 0123.,;:!?'\"\n\t{}[]<>()-→`*", max_size=14)
_ARGS = st.dictionaries(
    st.sampled_from(["city", "x", "q", "n"]),
    st.one_of(st.integers(-5, 500), st.text("ab c", max_size=5)),
    max_size=2,
)


@st.composite
def json_call(draw: st.DrawFn) -> str:
    body = json.dumps(
        {"name": draw(st.sampled_from(["get_weather", "f", "Calculator"])), "arguments": draw(_ARGS)}
    )
    style = draw(st.sampled_from(["tag", "tag-nl", "bare", "list", "fence"]))
    if style == "tag":
        return f"<tool_call>{body}</tool_call>"
    if style == "tag-nl":
        return f"<tool_call>\n{body}\n</tool_call>"
    if style == "bare":
        return f"\n{body}\n"
    if style == "list":
        return f"\n[{body}]\n"
    return f"\n```json\n{body}\n```\n"


_ROUND = st.lists(st.one_of(_TEXT, json_call()), max_size=6).map("".join)


def _chunks(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=12))))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def _stream(rounds_chunks: list[list[str]], rounds_text: list[str], json_calls: bool = True, stops=()) -> str:
    stream = ReplyStream(stops, json_calls)
    sent = ""
    for chunks, text in zip(rounds_chunks, rounds_text):
        stream.start_round()
        for c in chunks:
            sent += stream.feed(c)
        sent += stream.end_round(text)
    final = join_rounds([round_content(t, json_calls) for t in rounds_text])
    return sent + stream.finish(final), final


@settings(max_examples=120, deadline=None)
@given(st.data(), st.lists(_ROUND, min_size=1, max_size=3))
def test_streamed_content_equals_the_final_content(data, rounds):
    chunked = [_chunks(data.draw, r) for r in rounds]
    streamed, final = _stream(chunked, rounds)
    assert streamed == final


@settings(max_examples=80, deadline=None)
@given(st.data(), _TEXT, st.sampled_from(["\n\n", "\nQuestion:", "END"]), _TEXT)
def test_a_stop_string_written_in_pieces_is_never_sent(data, text, stop, tail):
    """Simulates the decoder: it sends text as written, and when a stop string completes it cuts the text there."""
    full = text + stop + tail
    expected = full[: full.find(stop)]
    events, acc, emitted = [], "", 0
    for chunk in _chunks(data.draw, full):
        acc += chunk
        at = acc.find(stop)
        if at != -1:
            acc = acc[:at]
            if len(acc) > emitted:
                events.append(acc[emitted:])
            break
        events.append(acc[emitted:])
        emitted = len(acc)
    streamed, final = _stream([events], [acc], json_calls=False, stops=[stop])
    assert final == expected
    assert streamed == expected


def test_content_is_sent_while_it_is_written_not_only_at_the_end():
    stream = ReplyStream()
    stream.start_round()
    deltas = [stream.feed(piece) for piece in ["The", " answer", " is", " 5", "."]]
    assert "".join(deltas) == "The answer is 5."
    assert deltas[1] == " answer"


def test_a_json_call_being_written_is_held_back_and_then_dropped():
    stream = ReplyStream()
    stream.start_round()
    sent = stream.feed("Let me check.\n")
    for piece in ["<tool_", 'call>{"name": "f", ', '"arguments": {}}', "</tool_call>"]:
        assert stream.feed(piece) == ""
    assert sent == "Let me check."
    text = 'Let me check.\n<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    assert stream.end_round(text) == ""
    assert stream.finish("Let me check.") == ""


def test_rounds_are_joined_by_a_blank_line_only_when_both_have_content():
    stream = ReplyStream()
    sent = ""
    for text in ['<tool_call>{"name": "f", "arguments": {}}</tool_call>', "Done."]:
        stream.start_round()
        sent += stream.feed(text)
        sent += stream.end_round(text)
    assert sent + stream.finish("Done.") == "Done."
    assert join_rounds(["A", "", "B"]) == "A\n\nB"
