"""One API request on a backend (`serve/session.py`): requests to plans, the few-shot turns, and runs on a fake
batcher (no model: its `submit` answers with a fixed generation)."""

from __future__ import annotations

import concurrent.futures as cf
from types import SimpleNamespace
from typing import Any

import pytest

from toolformer.runtime.prompts import HEADER
from toolformer.runtime.results import DecodeConfig, Event, Generation
from toolformer.serve.batcher import Cancelled
from toolformer.serve.config import ServeConfig
from toolformer.serve.errors import ApiError
from toolformer.serve.schemas import ChatCompletionRequest
from toolformer.serve.session import (
    REQUIRED_PREFILL,
    chat_plan,
    convert_messages,
    decode_config,
    example_turns,
    run_chat,
    run_completion,
    with_examples,
)
from toolformer.tools import load_tools

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
USER = [{"role": "user", "content": "Weather in Paris?"}]


def _chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest(**{"model": "m", "messages": USER, **fields})


def _backend(tokenizer: Any = None, tools: str = "Calculator", **extra: Any) -> SimpleNamespace:
    return SimpleNamespace(tokenizer=tokenizer, tools=load_tools(tools), name="m", **extra)


class _Batcher:
    """Answers every prompt with `text` (streamed as one text event) and records what it was given."""

    def __init__(self, backend: Any, text: str) -> None:
        self.backend = backend
        self.text = text
        self.prompts: list[str] = []

    def submit(
        self, prompt: str, config: DecodeConfig, on_event: Any = None, cancelled: Any = None
    ) -> cf.Future:
        self.prompts.append(prompt)
        if on_event is not None:
            on_event(Event("text", 0, self.text))
        future: cf.Future = cf.Future()
        future.set_result(Generation(prompt, self.text, [], "stop", 7, 0, 11, 0.0))
        return future


def _error(fn: Any, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as err:
        fn(*args)
    assert err.value.status == 400
    return err.value


# -- requests to plans


def test_decode_config_is_greedy_unless_sampling_is_asked_for():
    serve = ServeConfig()
    greedy = decode_config(_chat(), serve, 33)
    assert (greedy.do_sample, greedy.max_new_tokens, greedy.max_calls) == (False, 33, serve.max_calls)
    sampled = decode_config(_chat(temperature=0.7, max_completion_tokens=5, stop="\n", seed=3), serve, 33)
    assert (sampled.do_sample, sampled.temperature, sampled.max_new_tokens) == (True, 0.7, 5)
    assert (sampled.stop, sampled.seed) == (["\n"], 3)
    assert decode_config(_chat(top_p=0.5), serve, 33).do_sample


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"max_tokens": 10**6}, "max_tokens"),
        ({"max_completion_tokens": 10**6}, "max_completion_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"toolformer": {"max_calls": 99}}, "toolformer.max_calls"),
    ],
)
def test_decode_config_refuses_what_the_server_does_not_do_naming_the_field(fields, param):
    error = _error(decode_config, _chat(**fields), ServeConfig(), 16)
    assert error.param == param and "\n" not in error.message


def test_messages_become_the_runtimes_dicts():
    messages = _chat(
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "function": {"name": "get_weather", "arguments": '{"city":  "Paris"}'}}
                ],
            },
            {"role": "tool", "content": "sunny", "tool_call_id": "c1", "name": "get_weather"},
        ]
    ).messages
    system, user, assistant, tool = convert_messages(messages)
    assert system == {"role": "system", "content": "Be brief."}
    assert user == {"role": "user", "content": "Hi there"}
    assert assistant["content"] == "" and assistant["tool_calls"][0]["function"]["name"] == "get_weather"
    assert (
        assistant["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'
    )  # checked and re-serialised
    assert tool == {"role": "tool", "content": "sunny", "tool_call_id": "c1", "name": "get_weather"}


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "user", "content": [{"type": "image_url"}]}, "messages[0].content"),
        (
            {"role": "user", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]},
            "messages[0].tool_calls",
        ),
        (
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{cut"}}],
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_messages_the_runtime_cannot_take_are_refused_naming_where(message, param):
    assert _error(convert_messages, _chat(messages=[message]).messages).param == param


def test_tool_choice_none_disables_calls_and_shows_no_tools():
    plan = chat_plan(_chat(tools=[WEATHER], tool_choice="none"), ServeConfig(examples="on"), _backend())
    assert plan.config.disabled and plan.client_tools == [] and plan.mode == "none"
    assert not plan.examples and plan.prefill == ""


def test_a_forced_call_is_prefilled_with_the_opening_of_a_json_call():
    required = chat_plan(_chat(tools=[WEATHER], tool_choice="required"), ServeConfig(), _backend())
    assert (required.mode, required.prefill) == ("required", REQUIRED_PREFILL)
    named = _chat(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    plan = chat_plan(named, ServeConfig(), _backend())
    assert (plan.mode, plan.named) == ("named", "get_weather")
    assert plan.prefill == '<tool_call>\n{"name": "get_weather", "arguments": '
    server_tool = _chat(tool_choice={"type": "function", "function": {"name": "Calculator"}})
    assert (
        chat_plan(server_tool, ServeConfig(), _backend()).named == "Calculator"
    )  # a server tool may be named


@pytest.mark.parametrize(
    ("fields", "tools", "message"),
    [
        ({"tools": [WEATHER, WEATHER]}, "Calculator", "function names must be unique"),
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "Calculator", "'nope'"),
        ({"tool_choice": "required"}, "", "tool_choice 'required' needs tools"),
    ],
)
def test_a_tool_choice_that_cannot_be_met_is_refused(fields, tools, message):
    assert message in _error(chat_plan, _chat(**fields), ServeConfig(), _backend(tools=tools)).message


def test_examples_follow_the_request_then_the_server_then_the_chat_template():
    def examples(serve: str, asked: bool | None = None, template: str = "") -> bool:
        opts = {} if asked is None else {"toolformer": {"examples": asked}}
        backend = _backend(SimpleNamespace(chat_template=template))
        return chat_plan(_chat(**opts), ServeConfig(examples=serve), backend).examples

    assert examples("on") and not examples("off")
    assert examples("off", asked=True) and not examples("on", asked=False)
    assert examples(
        "auto", template="{{ messages }}"
    )  # a template that cannot show tools: show them by example
    assert not examples("auto", template="{% if tools %}{{ tools }}{% endif %}")


# -- few-shot example turns


def test_example_turns_go_round_robin_over_the_tools_and_end_on_the_first_named():
    def tools_shown(names: list[str]) -> list[str]:
        turns = example_turns(names)
        assert [t["role"] for t in turns] == ["user", "assistant"] * (len(turns) // 2)
        return [t["content"].split("[", 1)[1].split("(", 1)[0] for t in turns if t["role"] == "assistant"]

    assert tools_shown(["WikiSearch", "Calendar"]) == ["Calendar", "WikiSearch"]
    assert tools_shown(["Calendar", "WikiSearch"]) == ["WikiSearch", "Calendar"]
    assert tools_shown(["Calendar", "Calculator", "NoExamples"]) == [
        "Calculator",
        "Calendar",
        "Calculator",
        "Calculator",
    ]
    assert example_turns(["NoExamples"]) == []


def test_with_examples_puts_the_header_after_the_users_system_prompt():
    system = [{"role": "system", "content": "Be brief."}, *USER]
    shown = with_examples(system, ["Calculator"])
    assert shown[0] == {"role": "system", "content": f"Be brief.\n\n{HEADER}"}
    assert shown[-1] == USER[0] and len(shown) > 2
    assert with_examples(USER, ["Calculator"])[0] == {"role": "system", "content": HEADER}
    assert with_examples(USER, ["NoExamples"]) == USER


# -- runs on a fake batcher


def test_a_completion_streams_its_text_and_returns_the_generations_counts():
    batcher = _Batcher(_backend(), "42.")
    sent: list[tuple[str, Any]] = []
    reply = run_completion(
        "6 * 7 =", DecodeConfig(max_new_tokens=4), batcher, lambda k, p: sent.append((k, p))
    )
    assert (reply.content, reply.finish_reason, reply.prompt_tokens, reply.completion_tokens) == (
        "42.",
        "stop",
        11,
        7,
    )
    assert sent == [("content", "42.")] and batcher.prompts == ["6 * 7 ="]


def test_a_cancelled_request_submits_nothing():
    batcher = _Batcher(_backend(), "42.")
    with pytest.raises(Cancelled):
        run_completion("6 * 7 =", DecodeConfig(), batcher, cancelled=lambda: True)
    assert batcher.prompts == []


def test_a_prompt_too_long_for_the_models_context_is_refused_before_it_is_submitted():
    words = SimpleNamespace(encode=lambda text, add_special_tokens=False: text.split())
    batcher = _Batcher(_backend(words, context_length=10), "x")
    error = _error(run_completion, "one two three four five six", DecodeConfig(max_new_tokens=5), batcher)
    assert (
        error.code == "context_length_exceeded"
        and "the prompt is 6 tokens and max_tokens is 5" in error.message
    )
    assert batcher.prompts == []
    assert run_completion("one two", DecodeConfig(max_new_tokens=5), batcher).content == "x"


def test_a_required_call_is_prefilled_and_comes_back_as_a_client_tool_call(smol_tokenizer):
    backend = _backend(smol_tokenizer)
    batcher = _Batcher(backend, 'get_weather", "arguments": {"city": "Paris"}}\n</tool_call>')
    plan = chat_plan(_chat(tools=[WEATHER], tool_choice="required"), ServeConfig(examples="off"), backend)
    sent: list[tuple[str, Any]] = []
    reply = run_chat(plan, batcher, lambda k, p: sent.append((k, p)))
    assert batcher.prompts[0].endswith(REQUIRED_PREFILL)  # the model continues the opening of a JSON call
    assert reply.finish_reason == "tool_calls" and reply.content == ""
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert sent == []  # a JSON tool call is not streamed as content
