"""Conformance: the official `openai` client, unmodified, against the server on a real loopback port.

Chat with server-side tools, client tools and the tool-message round trip, tool_choice, streaming with tool_calls
(raw and through the client's `stream()` accumulator), usage in the stream, completions, and the error classes the
client raises for 400, 401, 404 and a mid-stream error.
"""

from __future__ import annotations

import json

import pytest

from serve_helpers import MODEL, PING, WEATHER, choose, running_server, scripted_backend

openai = pytest.importorskip("openai")

from toolformer.runtime.decode import Event  # noqa: E402
from toolformer.serve.app import create_app  # noqa: E402
from toolformer.serve.config import ServeConfig  # noqa: E402

KEY = "test-key"


@pytest.fixture(scope="module")
def server(smol_tokenizer):
    backend = scripted_backend(smol_tokenizer, choose, name=MODEL)
    with running_server(create_app(backend, ServeConfig(api_keys=[KEY], max_tokens_cap=512))) as url:
        yield url


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0, timeout=30)


def ask(client, content: str, **kwargs):
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], **kwargs
    )


def test_models(client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL


def test_chat_with_server_tools_carries_the_trace(client):
    resp = ask(client, "What is 23 times 47?")
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "23 times 47 is [Calculator(23 * 47) → 1081] 1081."
    assert choice.finish_reason == "stop"
    [trace] = choice.model_extra["tool_trace"]
    assert (trace["tool"], trace["input"], trace["output"]) == ("Calculator", "23 * 47", "1081")
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_client_tools_round_trip(client):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    resp = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": "rainy, 12 C"}]
    final = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    assert final.choices[0].message.content == "The tool said rainy, 12 C."
    assert final.choices[0].message.tool_calls is None


@pytest.mark.parametrize(
    ("tool_choice", "finish"),
    [
        ("none", "stop"),
        ("auto", "tool_calls"),
        ("required", "tool_calls"),
        ({"type": "function", "function": {"name": "get_weather"}}, "tool_calls"),
    ],
)
def test_tool_choice(client, tool_choice, finish):
    resp = ask(client, "What is the weather in Paris?", tools=[WEATHER], tool_choice=tool_choice)
    choice = resp.choices[0]
    assert choice.finish_reason == finish
    assert (choice.message.tool_calls is None) == (finish == "stop")


def test_parallel_and_empty_argument_calls(client):
    calls = ask(client, "weather in two cities", tools=[WEATHER]).choices[0].message.tool_calls
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Paris", "Rome"]
    assert len({c.id for c in calls}) == 2
    [ping] = ask(client, "ping please", tools=[PING]).choices[0].message.tool_calls
    assert ping.function.arguments == "{}"


@pytest.mark.parametrize("content", ["weather in two cities", "ping please", "What is 23 times 47?"])
def test_streaming_accumulates_to_the_plain_response(client, content):
    plain = ask(client, content, tools=[WEATHER, PING]).choices[0]
    text, calls, finish, usage = "", {}, None, None
    for chunk in ask(
        client, content, tools=[WEATHER, PING], stream=True, stream_options={"include_usage": True}
    ):
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"name": "", "arguments": ""})
                slot["name"] += tc.function.name or ""
                slot["arguments"] += tc.function.arguments or ""
            finish = choice.finish_reason or finish
    assert text == (plain.message.content or "")
    assert finish == plain.finish_reason
    expected = [
        {"name": c.function.name, "arguments": c.function.arguments} for c in plain.message.tool_calls or []
    ]
    assert [calls[i] for i in sorted(calls)] == expected
    assert usage is not None and usage.completion_tokens > 0


def test_the_clients_stream_helper_assembles_tool_calls(client):
    with client.chat.completions.stream(
        model=MODEL, messages=[{"role": "user", "content": "weather in two cities"}], tools=[WEATHER]
    ) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Checking both."
    assert [json.loads(c.function.arguments) for c in message.tool_calls] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]


def test_length_and_completions(client):
    assert ask(client, "count to forty", max_tokens=4).choices[0].finish_reason == "length"
    resp = client.completions.create(model=MODEL, prompt="Q: 23 * 47?\nA:", max_tokens=30, stop=["\nQ:"])
    assert resp.choices[0].text == " 23 * 47 = [Calculator(23 * 47) → 1081] 1081"
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model=MODEL, prompt="Q: x\nA:", max_tokens=30, stop=["\nQ:"], stream=True
        )
        if c.choices
    )
    assert streamed == resp.choices[0].text


def test_errors_raise_the_clients_error_classes(server, client):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        ask(client, "Hi", temperature=5)
    assert bad.value.param == "temperature"
    with pytest.raises(openai.BadRequestError):
        ask(client, "Hi", max_tokens=100_000)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "robot", "content": "Hi"}])


class _Broken:
    """A backend whose model crashes: the server must answer 500 in the OpenAI shape, or an error event mid-stream."""

    def __init__(self, inner):
        for attr in ("name", "kind", "tokenizer", "tools", "max_batch", "context_length"):
            setattr(self, attr, getattr(inner, attr))

    def generate(self, prompts, config, on_event=None):
        if on_event is not None:
            on_event(Event("text", 0, "Partial"))
        raise RuntimeError("the model fell over")


def test_a_crash_is_a_500_and_an_error_event_in_the_stream(smol_tokenizer):
    backend = _Broken(scripted_backend(smol_tokenizer, choose, name=MODEL))
    with running_server(create_app(backend)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)
        with pytest.raises(openai.InternalServerError):
            ask(client, "Hi")
        seen = ""
        with pytest.raises(openai.APIError, match="internal error: RuntimeError"):
            for chunk in ask(client, "Hi", stream=True):
                seen += "".join(c.delta.content or "" for c in chunk.choices)
        assert seen == "Partial"
