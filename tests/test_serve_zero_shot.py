"""`serve` with a trained Toolformer (`toolformer.json` `{"prompt": "zero-shot"}`): chat without client tools is
`Toolformer.chat`'s one inline-call generation on the zero-shot chat prompt, streamed exactly as it is answered;
client tools keep the JSON path; completions continue the client's own prompt."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import ScriptedLM
from serve_helpers import MODEL, WEATHER, ran
from toolformer.runtime.decode import DecodeConfig
from toolformer.runtime.engine import Toolformer
from toolformer.runtime.prompts import STOP
from toolformer.serve.app import create_app
from toolformer.serve.backend import ToolformerBackend, load_backend
from toolformer.serve.config import ServeConfig
from toolformer.serve.session import REQUIRED_PREFILL
from toolformer.tools import load_tools

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "What is 23 times 47?"},
]


def _answer(prompt: str) -> Any:
    if prompt.endswith(REQUIRED_PREFILL):
        return 'Calculator", "arguments": {"expression": "2 + 3"}}\n</tool_call>'
    if "<tool_response>" in prompt:
        return "Done."
    if "<|im_start|>" in prompt:  # a chat-template prompt: the JSON path
        return '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    if "23 times 47" in prompt:
        return [" It is [Calculator(23 * 47)", " 1081.", "\n\nQuestion: and more"]
    return " Hello there."


def _trained(tokenizer: Any, answer: Any = _answer) -> tuple[ToolformerBackend, ScriptedLM]:
    model = ScriptedLM(tokenizer, answer)
    tf = Toolformer(model, tokenizer, load_tools("Calculator,Calendar"), name=MODEL, prompt_style="zero-shot")
    return ToolformerBackend(tf), model


def _chat(client: TestClient, messages: list[dict[str, Any]] = MESSAGES, **body: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", json={"model": MODEL, "messages": messages, **body})


def _events(response: httpx.Response) -> list[dict[str, Any]]:
    lines = [x[len("data: ") :] for x in response.text.split("\n\n") if x.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(x) for x in lines[:-1]]


def _streamed(response: httpx.Response) -> dict[str, Any]:
    content, trace, finish = "", [], None
    for event in _events(response):
        for choice in event["choices"]:
            content += choice["delta"].get("content") or ""
            trace += choice.get("tool_trace") or []
            finish = choice.get("finish_reason") or finish
    return {"content": content, "trace": [{**t, "ms": None} for t in trace], "finish": finish}


def _plain(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    trace = [{**t, "ms": None} for t in choice["tool_trace"]]
    return {"content": choice["message"]["content"] or "", "trace": trace, "finish": choice["finish_reason"]}


def test_a_trained_model_chats_zero_shot_with_inline_calls_as_toolformer_chat_does(smol_tokenizer):
    backend, model = _trained(smol_tokenizer)
    with TestClient(create_app(backend)) as client:
        response = _chat(client, max_tokens=40)
    assert model.prompts == [backend.tf.chat_prompt(MESSAGES)]  # system, tools header, Q/A turns; no template
    reply = _plain(response)
    assert reply["content"] == "It is [Calculator(23 * 47) → 1081] 1081."
    assert reply["finish"] == "stop"  # at the answer's stop strings, as `ask`
    [call] = reply["trace"]
    assert ran(call) == ("Calculator", "23 * 47", "1081", True)
    # Offsets index the generated text, which the content is trimmed from (" It is …").
    assert (" " + reply["content"])[call["start"] : call["end"]] == "[Calculator(23 * 47) → 1081]"
    # The same answer `Toolformer.chat` gives for the same model and conversation.
    direct, _ = _trained(smol_tokenizer)
    result = direct.tf.chat(MESSAGES, DecodeConfig(max_new_tokens=40))
    assert result.content == reply["content"]
    assert [(c.tool, c.input, c.output, c.start, c.end) for c in result.calls] == [
        (call["tool"], call["input"], call["output"], call["start"], call["end"])
    ]
    assert response.json()["usage"]["prompt_tokens"] == len(
        smol_tokenizer.encode(model.prompts[0], add_special_tokens=False)
    )


def test_the_stream_of_a_zero_shot_chat_adds_up_to_the_plain_reply(smol_tokenizer):
    backend, _ = _trained(smol_tokenizer)
    with TestClient(create_app(backend)) as client:
        plain = _plain(_chat(client, max_tokens=40))
        response = _chat(client, max_tokens=40, stream=True)
    streamed = _streamed(response)
    assert streamed == plain
    assert "Question" not in streamed["content"]  # the stop string was never sent, not even in part


_PIECE = st.one_of(
    st.text(alphabet="ab XY.,;\n\t:", max_size=8),
    st.sampled_from(["\n\nQuestion: x", "\nQuestion:", " [Calculator(2 + 3)", "[Calendar()", "  ", "\n\n\n"]),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(_PIECE, min_size=1, max_size=5), stop=st.sampled_from([None, ["b"], ["\n"]]))
def test_property_a_zero_shot_stream_equals_the_plain_reply(smol_tokenizer, pieces, stop):
    """Any mix of text, blanks, stop strings and inline calls streams to exactly the plain reply."""
    backend, _ = _trained(smol_tokenizer, lambda prompt: pieces)
    extra = {"max_tokens": 30} if stop is None else {"max_tokens": 30, "stop": stop}
    with TestClient(create_app(backend)) as client:
        plain = _plain(_chat(client, **extra))
        streamed = _streamed(_chat(client, stream=True, **extra))
    assert streamed == plain


def test_client_tools_keep_the_json_path(smol_tokenizer):
    backend, model = _trained(smol_tokenizer)
    with TestClient(create_app(backend)) as client:
        body = _chat(client, [{"role": "user", "content": "Weather in Oslo?"}], tools=[WEATHER]).json()
        required = _chat(client, [{"role": "user", "content": "Hi"}], tool_choice="required").json()
    assert "<|im_start|>" in model.prompts[0]  # the chat template with the client's tool
    message = body["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"
    assert body["choices"][0]["finish_reason"] == "tool_calls"
    # A forced call is a JSON-call prefill: the JSON path too, whatever the model.
    assert model.prompts[1].endswith(REQUIRED_PREFILL) and "<|im_start|>" in model.prompts[1]
    assert [(t["tool"], t["output"]) for t in required["choices"][0]["tool_trace"]] == [("Calculator", "5")]


def test_tool_choice_none_keeps_the_zero_shot_prompt_and_runs_no_call(smol_tokenizer):
    backend, model = _trained(smol_tokenizer)
    with TestClient(create_app(backend)) as client:
        reply = _plain(_chat(client, tool_choice="none", max_tokens=20))
    assert model.prompts == [backend.tf.chat_prompt(MESSAGES)]
    assert reply["trace"] == [] and "→" not in reply["content"]


def test_completions_continue_the_clients_own_prompt(smol_tokenizer):
    backend, model = _trained(smol_tokenizer)
    prompt = "Question: What is 23 times 47?\nAnswer:"
    with TestClient(create_app(backend)) as client:
        body = {"model": MODEL, "prompt": prompt, "max_tokens": 40, "stop": STOP}
        plain = client.post("/v1/completions", json=body).json()["choices"][0]
        events = _events(client.post("/v1/completions", json={**body, "stream": True}))
    assert model.prompts == [prompt, prompt]  # no header or template added: the client owns the prompt
    assert plain["text"] == " It is [Calculator(23 * 47) → 1081] 1081."
    assert plain["tool_trace"][0]["output"] == "1081"
    assert "".join(c["text"] for e in events for c in e["choices"]) == plain["text"]


def _save(model: Any, tokenizer: Any, folder: Any, meta: dict[str, Any] | None) -> str:
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    if meta is not None:
        (folder / "toolformer.json").write_text(json.dumps(meta), encoding="utf-8")
    return str(folder)


def test_serve_reads_the_prompt_style_from_a_trained_model_folder(tiny_lm, tmp_path):
    model, tok = tiny_lm
    trained = load_backend(
        _save(model, tok, tmp_path / "trained", {"prompt": "zero-shot"}), tools="Calculator"
    )
    base = load_backend(_save(model, tok, tmp_path / "base", None), tools="Calculator")
    assert (trained.prompt_style, base.prompt_style) == ("zero-shot", "few-shot")
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    trained.name = base.name = MODEL
    with TestClient(create_app(trained)) as client:
        plain = _chat(client, messages, max_tokens=8)
        streamed = _streamed(_chat(client, messages, max_tokens=8, stream=True))
    assert _plain(plain) == streamed
    # The tiny model's reply is noise, but it is `Toolformer.chat`'s, from the prompt `Toolformer.chat` sends.
    zero_shot = len(tok.encode(trained.tf.chat_prompt(messages), add_special_tokens=False))
    assert plain.json()["usage"]["prompt_tokens"] == zero_shot
    config = DecodeConfig(max_new_tokens=8, max_calls=ServeConfig().max_calls)
    assert plain.json()["choices"][0]["message"]["content"] == trained.tf.chat(messages, config).content
    with TestClient(create_app(base)) as client:
        untrained = _chat(client, messages, max_tokens=8).json()
    template = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # The untrained model keeps the chat template, with the server's tools shown in it.
    assert untrained["usage"]["prompt_tokens"] > len(tok.encode(template, add_special_tokens=False)) > 0


@pytest.mark.parametrize("style", ["zero-shot", "few-shot"])
def test_the_backend_reports_the_engines_prompt_style(smol_tokenizer, style):
    tf = Toolformer(
        ScriptedLM(smol_tokenizer, _answer), smol_tokenizer, load_tools("Calculator"), prompt_style=style
    )
    assert ToolformerBackend(tf).prompt_style == style
