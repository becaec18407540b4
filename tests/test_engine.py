"""`Toolformer`: ask with the built-in prompt, chat with JSON tool calls (server-side and client-side tools)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from fakes import ScriptedLM
from toolformer.errors import ConfigError
from toolformer.runtime.decode import DecodeConfig
from toolformer.runtime.engine import Toolformer, model_prompt_style
from toolformer.runtime.prompts import HEADER, build_prompt, few_shot_prompt, tools_header, zero_shot_prompt
from toolformer.tools import load_tools, tool


def _script_for(prompt: str) -> str:
    if "<tool_response>" in prompt:
        return "The answer is 5."
    return '<tool_call>{"name": "Calculator", "arguments": {"expression": "2 + 3"}}</tool_call>'


def test_chat_runs_server_tools_and_feeds_results_back(smol_tokenizer):
    model = ScriptedLM(smol_tokenizer, _script_for)
    tf = Toolformer(model, smol_tokenizer, load_tools("Calculator"), name="fake")
    result = tf.chat([{"role": "user", "content": "What is 2 + 3?"}], DecodeConfig(max_new_tokens=64))
    assert result.content == "The answer is 5."
    assert [(c.tool, c.input, c.output) for c in result.calls] == [("Calculator", "2 + 3", "5")]
    assert result.finish_reason == "stop"
    roles = [m["role"] for m in result.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert json.loads(result.messages[1]["tool_calls"][0]["function"]["arguments"]) == {"expression": "2 + 3"}
    # The template has no tool support, so the tools were described in a system prompt.
    assert "Calculator" in model.prompts[0] and "<tool_call>" in model.prompts[0]
    assert "<tool_response>5</tool_response>" in model.prompts[1]


def test_chat_returns_client_tool_calls_unexecuted(smol_tokenizer):
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    model = ScriptedLM(
        smol_tokenizer,
        lambda p: '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
    )
    tf = Toolformer(model, smol_tokenizer, load_tools("Calculator"), name="fake")
    result = tf.chat([{"role": "user", "content": "Weather in Paris?"}], client_tools=[weather])
    assert result.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert result.calls == []
    assert "get_weather" in model.prompts[0]


def test_chat_without_calls_is_plain_text(smol_tokenizer):
    model = ScriptedLM(smol_tokenizer, lambda p: "Hello there.")
    tf = Toolformer(model, smol_tokenizer, load_tools(""), name="fake")
    result = tf.chat([{"role": "user", "content": "hi"}])
    assert result.content == "Hello there." and result.calls == [] and result.tool_calls == []


def test_ask_uses_the_prompt_of_the_loaded_tools(smol_tokenizer):
    # The fake writes on after ")" as a real model would after the forced " → 42]".
    model = ScriptedLM(smol_tokenizer, lambda p: " It is [Calculator(6 * 7) 42.\n\nQuestion: more")
    tf = Toolformer(model, smol_tokenizer, load_tools("Calculator"), name="fake")
    gen = tf.ask("What is 6 times 7?")
    assert gen.text == " It is [Calculator(6 * 7) → 42] 42."  # stopped at the blank line
    assert gen.calls[0].output == "42"
    assert model.prompts[0].rstrip().endswith("Question: What is 6 times 7?\nAnswer:")
    assert "WikiSearch" not in model.prompts[0]


def test_build_prompt_rejects_an_empty_question():
    with pytest.raises(ConfigError, match="question"):
        build_prompt("  ")


@tool(name="Weather", examples=['Weather("Paris")'])
def weather(city: str) -> str:
    """Current weather for a city. Any city on Earth."""
    return f"sunny in {city}"


def _tools(*extra):
    reg = load_tools("Calculator")
    for t in extra:
        reg.add(t)
    return reg


def _marked_folder(tmp_path, meta) -> str:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    if meta is not None:
        (folder / "toolformer.json").write_text(json.dumps(meta))
    return str(folder)


def test_model_prompt_style_reads_the_models_toolformer_json(tmp_path):
    marked = _marked_folder(tmp_path, {"prompt": "zero-shot", "base": "smollm2-135m-instruct"})
    assert model_prompt_style(marked) == "zero-shot"
    loaded = SimpleNamespace(config=SimpleNamespace(_name_or_path=marked))  # a model loaded from there
    assert model_prompt_style(loaded) == "zero-shot"
    (tmp_path / "model" / "toolformer.json").write_text(json.dumps({"base": "x"}))
    assert model_prompt_style(marked) == "few-shot"
    assert model_prompt_style(None) == "few-shot"
    (tmp_path / "model" / "toolformer.json").write_text(json.dumps({"prompt": "chain-of-thought"}))
    with pytest.raises(ConfigError, match="chain-of-thought"):
        model_prompt_style(marked)
    with pytest.raises(ConfigError, match="prompt_style='nope'"):
        Toolformer(None, None, _tools(), prompt_style="nope")


def test_ask_prompts_a_trained_toolformer_zero_shot_with_the_loaded_tools(smol_tokenizer):
    model = ScriptedLM(smol_tokenizer, lambda p: ' [Weather("Rome") It is sunny.')
    tools = _tools(weather)
    tf = Toolformer(model, smol_tokenizer, tools, name="fake", prompt_style="zero-shot")
    gen = tf.ask("Is it sunny in Rome?")
    assert model.prompts[0] == zero_shot_prompt("Is it sunny in Rome?", [tools["Calculator"], weather])
    assert '- Weather: Current weather for a city. Example: [Weather("Paris")]' in model.prompts[0]
    assert [(c.tool, c.output) for c in gen.calls] == [("Weather", "sunny in Rome")]
    assert gen.text.startswith(' [Weather("Rome") → sunny in Rome]')


def test_the_few_shot_prompt_names_every_loaded_tool_and_shows_a_users_example(smol_tokenizer):
    model = ScriptedLM(smol_tokenizer, lambda p: ' [Weather("Rome") It is sunny.')
    tf = Toolformer(model, smol_tokenizer, _tools(weather), name="fake")
    assert tf.prompt_style == "few-shot"
    gen = tf.ask("Is it sunny in Rome?")
    prompt = model.prompts[0]
    assert prompt.startswith(HEADER + "\n" + tools_header([tf.tools["Calculator"], weather]))
    assert '\nQuestion: Current weather for a city: Paris\nAnswer: [Weather("Paris")]\n' in prompt
    assert "Answer: 12 times 9 is [Calculator(12 * 9) → 108] 108." in prompt  # the built-in examples stay
    assert "WikiSearch" not in prompt  # only loaded tools
    assert prompt.endswith("Question: Is it sunny in Rome?\nAnswer:")
    assert [(c.tool, c.input) for c in gen.calls] == [("Weather", "Rome")]


def test_a_users_example_may_carry_its_result():
    @tool(name="Stock", examples=['Stock("ACME") → 12.5 USD', "not a call", 'Other("x")'])
    def stock(ticker: str) -> str:
        """Latest price of a stock."""
        return "1"

    prompt = few_shot_prompt("Price of ACME?", [stock])
    assert 'Question: Latest price of a stock: ACME\nAnswer: [Stock("ACME") → 12.5 USD]\n' in prompt
    assert prompt.count("\nQuestion:") == 2  # the malformed and foreign examples are left out


def test_chat_with_a_trained_toolformer_asks_the_last_message_zero_shot(smol_tokenizer):
    model = ScriptedLM(smol_tokenizer, lambda p: " It is [Calculator(23 * 47) 1081.\n\nQuestion: more")
    tf = Toolformer(model, smol_tokenizer, _tools(weather), name="fake", prompt_style="zero-shot")
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 23 times 47?"},
    ]
    result = tf.chat(messages, DecodeConfig(max_new_tokens=40))
    header = tools_header([tf.tools["Calculator"], weather])
    assert model.prompts == [
        "Be brief.\n" + header + "Question: Hi\nAnswer: Hello!\n\nQuestion: What is 23 times 47?\nAnswer:"
    ]
    assert result.content == "It is [Calculator(23 * 47) → 1081] 1081."
    assert [(c.tool, c.output) for c in result.calls] == [("Calculator", "1081")]
    assert result.messages[-1] == {"role": "assistant", "content": result.content}
    assert result.tool_calls == [] and result.finish_reason == "stop"
    with pytest.raises(ConfigError, match="no user message"):
        tf.chat([{"role": "system", "content": "x"}])


def test_load_reads_the_prompt_style_from_the_model_folder(tiny_lm, tmp_path):
    model, tok = tiny_lm
    folder = tmp_path / "tuned"
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    assert Toolformer.load(str(folder), tools="Calculator").prompt_style == "few-shot"
    (folder / "toolformer.json").write_text(json.dumps({"prompt": "zero-shot"}))
    tf = Toolformer.load(str(folder), tools="Calculator")
    assert tf.prompt_style == "zero-shot"
    assert tf.prompt("What is 2 + 2?") == zero_shot_prompt("What is 2 + 2?", [tf.tools["Calculator"]])
