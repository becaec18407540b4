"""`Toolformer`: ask with the built-in prompt, chat with JSON tool calls (server-side and client-side tools)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from toolformer.runtime.decode import DecodeConfig
from toolformer.runtime.engine import Toolformer
from toolformer.runtime.prompts import build_prompt
from toolformer.tools import load_tools


class ChatScripted(torch.nn.Module):
    """A fake LM that answers each generation with a script chosen from the prompt it is given."""

    def __init__(self, tokenizer, choose) -> None:
        super().__init__()
        self.tok, self.choose = tokenizer, choose
        self.config = SimpleNamespace(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id)
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.prompts: list[str] = []
        self.script: list[int] = []

    def forward(self, input_ids, attention_mask, position_ids, cache=None, use_cache=True, logits_to_keep=0):
        if cache is None:  # a new generation: pick the script from the prompt
            prompt = self.tok.decode(input_ids[0][attention_mask[0].bool()].tolist())
            self.prompts.append(prompt)
            self.script = self.tok.encode(self.choose(prompt), add_special_tokens=False) + [
                self.tok.eos_token_id
            ]
            cache = SimpleNamespace(batch_select_indices=lambda index: None)
        logits = torch.full((input_ids.shape[0], 1, self.config.vocab_size), -1e4)
        logits[:, 0, self.script.pop(0) if self.script else self.tok.eos_token_id] = 1e4
        return SimpleNamespace(logits=logits, cache=cache)


def _script_for(prompt: str) -> str:
    if "<tool_response>" in prompt:
        return "The answer is 5."
    return '<tool_call>{"name": "Calculator", "arguments": {"expression": "2 + 3"}}</tool_call>'


def test_chat_runs_server_tools_and_feeds_results_back(smol_tokenizer):
    model = ChatScripted(smol_tokenizer, _script_for)
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
    model = ChatScripted(
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
    model = ChatScripted(smol_tokenizer, lambda p: "Hello there.")
    tf = Toolformer(model, smol_tokenizer, load_tools(""), name="fake")
    result = tf.chat([{"role": "user", "content": "hi"}])
    assert result.content == "Hello there." and result.calls == [] and result.tool_calls == []


def test_ask_uses_the_prompt_of_the_loaded_tools(smol_tokenizer):
    # The fake writes on after ")" as a real model would after the forced " → 42]".
    model = ChatScripted(smol_tokenizer, lambda p: " It is [Calculator(6 * 7) 42.\n\nQuestion: more")
    tf = Toolformer(model, smol_tokenizer, load_tools("Calculator"), name="fake")
    gen = tf.ask("What is 6 times 7?")
    assert gen.text == " It is [Calculator(6 * 7) → 42] 42."  # stopped at the blank line
    assert gen.calls[0].output == "42"
    assert model.prompts[0].rstrip().endswith("Question: What is 6 times 7?\nAnswer:")
    assert "WikiSearch" not in model.prompts[0]


def test_build_prompt_rejects_an_empty_question():
    from toolformer.errors import ConfigError

    with pytest.raises(ConfigError, match="question"):
        build_prompt("  ")
