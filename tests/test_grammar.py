"""Constrained JSON tool calls (`runtime.grammar`): whatever the model, a forced or opened `<tool_call>` is a valid call
to one of the request's functions, in both backends and through the server and the `openai` client."""

from __future__ import annotations

import json

import pytest

from fakes import ScriptedLM
from serve_helpers import MODEL, PING, WEATHER, running_server
from toolformer.errors import ConfigError
from toolformer.runtime.decode import DecodeConfig, generate
from toolformer.runtime.engine import Toolformer
from toolformer.runtime.grammar import MAX_STRING, VocabRules, bounded, call_grammar, call_schema
from toolformer.runtime.jsoncalls import TOOL_CALL_OPEN, parse_json_calls
from toolformer.serve.backend import ToolformerBackend
from toolformer.serve.session import REQUIRED_PREFILL, ChatPlan
from toolformer.tools import load_tools

pytest.importorskip("llguidance")
jsonschema = pytest.importorskip("jsonschema")

BOOK = {
    "type": "function",
    "function": {
        "name": "book_table",
        "parameters": {
            "type": "object",
            "properties": {
                "seats": {"type": "integer", "minimum": 1, "maximum": 12},
                "area": {"type": "string", "enum": ["inside", "terrace"]},
                "window": {"type": "boolean"},
                "guests": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["seats", "area"],
        },
    },
}
TOOLS = [WEATHER, PING, BOOK]
SEEDS = range(20)


def _schemas(tools):
    return {t["function"]["name"]: t["function"]["parameters"] for t in tools}


def assert_valid(text: str, tools, names=None) -> list:
    """The calls in `text`: at least one, each naming one of `tools` (or of `names`) with arguments that satisfy
    its schema as the client gave it (not the bounded one), and no call text left in the content."""
    content, calls = parse_json_calls(text)
    schemas = _schemas(tools)
    assert calls, f"no call in {text!r}"
    assert TOOL_CALL_OPEN not in content, text
    for call in calls:
        assert call.name in (names or schemas), text
        jsonschema.validate(call.arguments, schemas[call.name])
    return calls


def _forced(model, tok, tools, seed, prefill=REQUIRED_PREFILL, parallel=True, max_new_tokens=256):
    grammar = call_grammar(tools, "forced", parallel, prefill)
    config = DecodeConfig(max_new_tokens=max_new_tokens, do_sample=True, seed=seed, grammar=grammar)
    [gen] = generate(model, tok, ["Call a function." + prefill], None, config)
    return gen, prefill + gen.text


# ---------------------------------------------------------------------------------------------------------------
# The grammar


def test_bounded_adds_limits_only_where_the_schema_sets_none():
    schema = {
        "type": "object",
        "properties": {
            "q": {"type": "string"},
            "short": {"type": "string", "maxLength": 5},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "open": {"type": "object", "additionalProperties": True},
        },
    }
    out = bounded(schema)
    props = out["properties"]
    assert props["q"]["maxLength"] == MAX_STRING and props["short"]["maxLength"] == 5
    assert "maxLength" not in props["kind"] and props["tags"]["items"]["maxLength"] == MAX_STRING
    assert "maxItems" in props["tags"] and out["additionalProperties"] is False
    assert props["open"]["additionalProperties"] is True
    assert "maxLength" not in schema["properties"]["q"]  # the client's schema is left as it was


def test_call_schema_names_each_function_with_its_arguments():
    schema = call_schema(TOOLS)
    names = [o["properties"]["name"]["const"] for o in schema["anyOf"]]
    assert names == ["get_weather", "ping", "book_table"]
    jsonschema.validate({"name": "ping", "arguments": {}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "get_wether", "arguments": {"city": "Oslo"}}, schema)


def test_grammar_modes_are_checked():
    with pytest.raises(ConfigError, match="mode='sometimes'"):
        call_grammar(TOOLS, "sometimes")
    with pytest.raises(ConfigError, match="tools is empty"):
        call_grammar([], "forced")
    assert call_grammar([], "none").lark == ""


def test_opener_rules_follow_the_text_written_so_far():
    texts = ["a", ">", "<tool_call>", "_call>", "_call>\n", "_call>x", "call", "<", '>\n{"', "<tool_call>\n{"]
    rules = VocabRules(texts)
    assert VocabRules.tail("Sure. <tool_c") == "<tool_c" and VocabRules.tail("a < b") == ""
    assert rules.banned("").tolist() == [2, 9]  # whole openers
    assert rules.banned("<tool").tolist() == [2, 3, 4, 5, 9]
    assert rules.loose("<tool").tolist() == [5]  # "_call>x" cannot go on into a call object
    assert rules.loose("<tool_call").tolist() == []  # '>\n{"' starts one


def test_a_plan_holds_calls_to_the_functions_its_tool_choice_allows():
    plan = ChatPlan([], DecodeConfig(), client_tools=[WEATHER, PING], mode="named", named="ping")
    first, later = plan.grammars([BOOK])
    assert (first.mode, first.prime, later.mode) == ("forced", plan.prefill, "auto")
    assert '"ping"' in first.lark and "get_weather" not in first.lark and "book_table" in later.lark
    assert ChatPlan([], DecodeConfig()).grammars([]) == (None, None)  # nothing to call: no grammar
    assert ChatPlan([], DecodeConfig(), mode="none").grammars([BOOK])[0].mode == "none"


# ---------------------------------------------------------------------------------------------------------------
# A random-weight model, held by the grammar


def test_required_on_a_random_model_is_a_valid_call_for_every_seed(tiny_lm):
    model, tok = tiny_lm
    names = set()
    for seed in SEEDS:
        gen, text = _forced(model, tok, TOOLS, seed, parallel=False)
        assert gen.finish_reason == "stop", text
        names.update(c.name for c in assert_valid(text, TOOLS))
    assert len(names) > 1  # the grammar lets the model choose among the functions


def test_a_named_function_is_the_one_called(tiny_lm):
    model, tok = tiny_lm
    prefill = '<tool_call>\n{"name": "book_table", "arguments": '
    for seed in range(8):
        _, text = _forced(model, tok, [BOOK], seed, prefill=prefill)
        assert {c.name for c in assert_valid(text, TOOLS)} == {"book_table"}


def test_without_parallel_calls_one_block_is_written(tiny_lm):
    model, tok = tiny_lm
    for seed in range(8):
        _, text = _forced(model, tok, TOOLS, seed, parallel=False)
        assert len(assert_valid(text, TOOLS)) == 1 and text.count(TOOL_CALL_OPEN) == 1


def test_a_small_budget_still_ends_with_a_whole_call(tiny_lm):
    model, tok = tiny_lm
    for seed in range(6):
        gen, text = _forced(model, tok, [WEATHER], seed, max_new_tokens=40)
        assert_valid(text, [WEATHER])
        assert gen.new_tokens <= 40


def test_without_a_grammar_the_same_random_model_writes_no_valid_call(tiny_lm):
    model, tok = tiny_lm  # what the grammar is for: a control, so the tests above can fail
    [gen] = generate(
        model, tok, ["Call a function." + REQUIRED_PREFILL], None, DecodeConfig(max_new_tokens=40)
    )
    assert parse_json_calls(REQUIRED_PREFILL + gen.text)[1] == []


# ---------------------------------------------------------------------------------------------------------------
# A scripted model, corrected by the grammar


def _scripted(tok, script, grammar, max_new_tokens=120):
    model = ScriptedLM(tok, [script])
    config = DecodeConfig(max_new_tokens=max_new_tokens, grammar=grammar)
    return generate(model, tok, ["Hi"], None, config)[0].text


def _block(name, args):
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': args})}\n</tool_call>"


def test_auto_leaves_text_free_and_holds_an_opened_call(smol_tokenizer):
    script = "Let me check. " + _block("get_wether", {"town": "Oslo"}) + " Done."
    text = _scripted(smol_tokenizer, script, call_grammar(TOOLS, "auto"))
    assert text.startswith("Let me check. <tool_call>\n")
    assert_valid(text, TOOLS)  # the misspelled name and the unknown argument could not be written
    unconstrained = _scripted(smol_tokenizer, script, None)
    assert unconstrained == script and parse_json_calls(unconstrained)[1][0].name == "get_wether"


def test_auto_takes_several_blocks_unless_parallel_calls_are_off(smol_tokenizer):
    script = _block("get_weather", {"city": "Paris"}) + _block("get_weather", {"city": "Rome"})
    both = _scripted(smol_tokenizer, script, call_grammar(TOOLS, "auto"))
    assert [c.arguments["city"] for c in assert_valid(both, TOOLS)] == ["Paris", "Rome"]
    one = _scripted(smol_tokenizer, script, call_grammar(TOOLS, "auto", parallel=False))
    assert one.count(TOOL_CALL_OPEN) == 1  # the second opener cannot be completed
    assert assert_valid(one, TOOLS)[0].arguments == {"city": "Paris"}


def test_no_inline_call_runs_inside_a_held_json_call(smol_tokenizer):
    note = {
        "type": "function",
        "function": {"name": "note", "parameters": {"type": "object", "properties": {}}},
    }
    note["function"]["parameters"]["properties"]["text"] = {"type": "string"}
    script = [
        '<tool_call>\n{"name": "note", "arguments": {"text": "see [Calculator(1 + 2)',
        '"}}\n</tool_call>',
    ]
    model = ScriptedLM(smol_tokenizer, [script + [" Then [Calculator(2 + 2)", " 4."]])
    config = DecodeConfig(max_new_tokens=80, max_calls=2, grammar=call_grammar([note], "auto"))
    [gen] = generate(model, smol_tokenizer, ["Hi"], load_tools("Calculator"), config)
    assert assert_valid(gen.text, [note])[0].arguments == {"text": "see [Calculator(1 + 2)"}
    assert [(c.tool, c.input) for c in gen.calls] == [
        ("Calculator", "2 + 2")
    ]  # only the call outside the JSON


def test_none_never_opens_a_call(smol_tokenizer):
    script = "Sure. " + _block("get_weather", {"city": "Paris"})
    text = _scripted(smol_tokenizer, script, call_grammar([], "none"))
    assert TOOL_CALL_OPEN not in text and text.startswith("Sure. <tool_call")  # everything but its last ">"


# ---------------------------------------------------------------------------------------------------------------
# llama.cpp


def test_llamacpp_required_is_a_valid_call_for_every_seed(tiny_lm, tmp_path):
    pytest.importorskip("llama_cpp")
    from toolformer.export.gguf import export_gguf
    from toolformer.runtime import llamacpp

    model, tok = tiny_lm
    lm = llamacpp.LlamaCppModel(export_gguf(model, tok, tmp_path / "tiny.gguf", quant="f32").path, n_ctx=512)
    try:
        grammar = call_grammar(TOOLS, "forced", True, REQUIRED_PREFILL)
        for seed in range(10):
            config = DecodeConfig(max_new_tokens=200, do_sample=True, seed=seed, grammar=grammar)
            [gen] = llamacpp.generate(lm, ["Call a function." + REQUIRED_PREFILL], None, config)
            assert gen.finish_reason == "stop"
            assert_valid(REQUIRED_PREFILL + gen.text, TOOLS)
    finally:
        lm.close()


# ---------------------------------------------------------------------------------------------------------------
# The server, through the official client, on the random model


@pytest.fixture(scope="module")
def client(tiny_lm):
    openai = pytest.importorskip("openai")
    from toolformer.serve.app import create_app
    from toolformer.serve.config import ServeConfig

    model, tok = tiny_lm
    backend = ToolformerBackend(Toolformer(model, tok, load_tools("Calculator"), name=MODEL))
    with running_server(create_app(backend, ServeConfig(examples="off"))) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60)


def _ask(client, **kwargs):
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Book a table, please."}], **kwargs
    )


def test_openai_client_required_always_gets_a_valid_tool_call(client):
    for seed in range(10):
        choice = _ask(client, tools=TOOLS, tool_choice="required", seed=seed, temperature=1.0).choices[0]
        assert choice.finish_reason == "tool_calls"
        for tc in choice.message.tool_calls:
            assert tc.function.name in _schemas(TOOLS)
            jsonschema.validate(json.loads(tc.function.arguments), _schemas(TOOLS)[tc.function.name])


def test_openai_client_named_function_and_none(client):
    named = {"type": "function", "function": {"name": "get_weather"}}
    for seed in range(5):
        choice = _ask(client, tools=TOOLS, tool_choice=named, seed=seed, temperature=1.0).choices[0]
        assert {tc.function.name for tc in choice.message.tool_calls} == {"get_weather"}
        none = _ask(client, tools=TOOLS, tool_choice="none", seed=seed, temperature=1.0, max_tokens=30)
        assert none.choices[0].message.tool_calls is None
        assert TOOL_CALL_OPEN not in (none.choices[0].message.content or "")


def test_openai_client_streams_parallel_calls_with_an_index_each(client):
    seen = None
    for seed in SEEDS:  # a seed where the random model writes several calls in one turn
        resp = _ask(client, tools=[PING, WEATHER], tool_choice="required", seed=seed, temperature=1.0)
        if len(resp.choices[0].message.tool_calls) >= 2:
            seen = seed, resp.choices[0].message.tool_calls
            break
    assert seen is not None, "no seed gave parallel calls"
    seed, plain = seen
    stream = _ask(
        client, tools=[PING, WEATHER], tool_choice="required", seed=seed, temperature=1.0, stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    for chunk in stream:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                slot["id"] += tc.id or ""
                slot["name"] += tc.function.name or ""
                slot["arguments"] += tc.function.arguments or ""
    assert sorted(calls) == list(range(len(plain)))
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        (c.function.name, json.loads(c.function.arguments)) for c in plain
    ]
    assert len({c["id"] for c in calls.values()}) == len(plain)


@pytest.mark.slow
def test_real_model_required_and_named_calls_are_valid(smol):
    openai = pytest.importorskip("openai")
    from toolformer.serve.app import create_app
    from toolformer.serve.config import ServeConfig

    model, tok = smol
    backend = ToolformerBackend(Toolformer(model, tok, load_tools([]), name=MODEL))  # client tools only
    with running_server(create_app(backend, ServeConfig(examples="off"))) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=120)
        messages = [{"role": "user", "content": "What is the weather in Lisbon?"}]
        for choice_ in ("required", {"type": "function", "function": {"name": "get_weather"}}):
            resp = client.chat.completions.create(
                model=MODEL, messages=messages, tools=TOOLS, tool_choice=choice_, max_tokens=64
            )
            [tc, *_] = resp.choices[0].message.tool_calls
            assert resp.choices[0].finish_reason == "tool_calls"
            jsonschema.validate(json.loads(tc.function.arguments), _schemas(TOOLS)[tc.function.name])
        assert tc.function.name == "get_weather"
