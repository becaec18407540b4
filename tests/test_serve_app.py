"""The OpenAI-compatible server, through HTTP: server-side tools, client tools, tool_choice, streaming, errors, limits.

The model is `ScriptedLM` (tests/fakes.py): it writes a script chosen from the prompt, decoded by the real
decoder with the real tools, so everything but the model's choice of words is the production path.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import threading
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from serve_helpers import MODEL, PING, WEATHER, _call, choose, ran, running_server, scripted_backend
from toolformer.runtime.decode import Generation
from toolformer.serve.app import create_app
from toolformer.serve.backend import ToolformerBackend
from toolformer.serve.batcher import Batcher
from toolformer.serve.config import ServeConfig
from toolformer.serve.session import example_turns


@pytest.fixture
def backend(smol_tokenizer):
    return scripted_backend(smol_tokenizer, choose, name=MODEL)


@pytest.fixture
def client(backend):
    with TestClient(create_app(backend)) as c:
        yield c


def chat(client: TestClient, content: str, **body: Any) -> httpx.Response:
    return client.post(
        "/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": content}], **body},
    )


def sse(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON events of an SSE body (without the final [DONE], which must be there)."""
    lines = [line[len("data: ") :] for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def accumulate(events: list[dict[str, Any]]) -> dict[str, Any]:
    """A streamed chat reply put back together, as a client library would."""
    content, calls, trace, finish, usage = "", {}, [], None, None
    for event in events:
        if event.get("usage"):
            usage = event["usage"]
        for choice in event["choices"]:
            delta = choice["delta"]
            content += delta.get("content") or ""
            for tc in delta.get("tool_calls") or []:
                slot = calls.setdefault(tc["index"], {"id": None, "name": "", "arguments": ""})
                slot["id"] = tc.get("id") or slot["id"]
                slot["name"] += tc.get("function", {}).get("name") or ""
                slot["arguments"] += tc.get("function", {}).get("arguments") or ""
            trace += choice.get("tool_trace") or []
            finish = choice.get("finish_reason") or finish
    return {
        "content": content,
        "tool_calls": [calls[i] for i in sorted(calls)],
        "trace": trace,
        "finish": finish,
        "usage": usage,
    }


def flat(response: dict[str, Any]) -> dict[str, Any]:
    choice = response["choices"][0]
    calls = [
        {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
        for c in choice["message"]["tool_calls"] or []
    ]
    return {
        "content": choice["message"]["content"] or "",
        "tool_calls": calls,
        "trace": choice["tool_trace"],
        "finish": choice["finish_reason"],
    }


def _same(streamed: dict[str, Any], plain: dict[str, Any]) -> None:
    """Equal replies, except for call ids (fresh per reply) and tool timings."""
    assert streamed["content"] == plain["content"]
    assert streamed["finish"] == plain["finish"]
    strip = lambda calls: [{**c, "id": None} for c in calls]  # noqa: E731
    assert strip(streamed["tool_calls"]) == strip(plain["tool_calls"])
    assert all(c["id"] for c in streamed["tool_calls"] + plain["tool_calls"])
    untimed = lambda trace: [{**t, "ms": None} for t in trace]  # noqa: E731
    assert untimed(streamed["trace"]) == untimed(plain["trace"])


# ---------------------------------------------------------------------------------------------------------------
# Server-side tools


def test_server_tools_run_during_decoding_and_the_trace_comes_back(client):
    body = chat(client, "What is 23 times 47?").json()
    choice = body["choices"][0]
    assert choice["message"]["content"] == "23 times 47 is [Calculator(23 * 47) → 1081] 1081."
    assert choice["finish_reason"] == "stop"
    [trace] = choice["tool_trace"]
    assert ran(trace) == ("Calculator", "23 * 47", "1081", True)
    assert trace["ms"] >= 0
    text = choice["message"]["content"]
    assert text[trace["start"] : trace["end"]] == "[Calculator(23 * 47) → 1081]"
    assert (
        body["usage"]["total_tokens"]
        == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
        > 0
    )


def test_server_json_calls_run_and_their_result_goes_back_to_the_model(client, backend):
    body = chat(client, "Please add on the server").json()
    choice = body["choices"][0]
    assert choice["message"]["content"] == "Let me add.\n\nThe tool said 5."
    assert choice["message"]["tool_calls"] is None
    assert [(t["tool"], t["output"]) for t in choice["tool_trace"]] == [("Calculator", "5")]
    assert "<tool_response>5</tool_response>" in backend.tf.model.prompts[-1]


def test_example_turns_show_the_server_tools_instead_of_their_schemas(client, backend):
    chat(client, "What is 23 times 47?")
    prompt = backend.tf.model.prompts[-1]
    assert "[Calculator(12 * 9) → 108]" in prompt  # an example turn
    assert '"name": "Calculator"' not in prompt  # no JSON schema for a server tool
    turns = example_turns(["Calculator", "Calendar", "Nope"])
    assert [t["role"] for t in turns] == ["user", "assistant"] * 4
    assert "Calendar()" in turns[1]["content"]  # round-robin: the last tool registered comes first


def test_a_failing_tool_is_an_error_in_the_trace_and_the_metrics(client):
    choice = chat(client, "Can you divide by zero?").json()["choices"][0]
    [trace] = choice["tool_trace"]
    assert trace["tool"] == "Calculator" and not trace["ok"] and trace["output"].startswith("error:")
    metrics = client.get("/metrics").text
    assert 'toolformer_tool_errors_total{tool="Calculator"} 1.0' in metrics
    assert 'toolformer_tool_calls_total{tool="Calculator"} 1.0' in metrics
    assert 'toolformer_requests_total{route="/v1/chat/completions",status="200"} 1.0' in metrics
    assert "toolformer_tokens_total" in metrics and "toolformer_request_seconds_bucket" in metrics


# ---------------------------------------------------------------------------------------------------------------
# Client tools and tool_choice


def test_client_tool_calls_come_back_as_openai_tool_calls(client, backend):
    body = chat(client, "What is the weather in Paris?", tools=[WEATHER]).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert '"name": "get_weather"' in backend.tf.model.prompts[-1]  # the client's tool was described

    followup = [
        {"role": "user", "content": "What is the weather in Paris?"},
        choice["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 C"},
    ]
    body = client.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": followup, "tools": [WEATHER]}
    ).json()
    assert body["choices"][0]["message"]["content"] == "The tool said sunny, 21 C."
    assert body["choices"][0]["finish_reason"] == "stop"


def test_parallel_tool_calls_and_empty_arguments(client):
    choice = chat(client, "weather in two cities", tools=[WEATHER]).json()["choices"][0]
    assert choice["message"]["content"] == "Checking both."
    assert [json.loads(c["function"]["arguments"]) for c in choice["message"]["tool_calls"]] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]
    one = chat(client, "weather in two cities", tools=[WEATHER], parallel_tool_calls=False).json()["choices"][
        0
    ]
    assert len(one["message"]["tool_calls"]) == 1
    ping = chat(client, "ping please", tools=[PING]).json()["choices"][0]
    assert ping["message"]["tool_calls"][0]["function"]["arguments"] == "{}"


def test_tool_choice_none_shows_no_tools_and_calls_none(client, backend):
    choice = chat(client, "What is the weather in Paris?", tools=[WEATHER], tool_choice="none").json()[
        "choices"
    ][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["tool_calls"] is None
    prompt = backend.tf.model.prompts[-1]
    assert "get_weather" not in prompt and "Calculator" not in prompt


def test_tool_choice_required_and_named_start_the_reply_with_a_call(client):
    for tool_choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        choice = chat(client, "Hi", tools=[WEATHER], tool_choice=tool_choice).json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls", tool_choice
        [call] = choice["message"]["tool_calls"]
        assert call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}


def test_tool_choice_naming_an_unknown_tool_is_a_400(client):
    r = chat(client, "Hi", tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tool_choice"


# ---------------------------------------------------------------------------------------------------------------
# Streaming


@pytest.mark.parametrize(
    ("content", "body"),
    [
        ("What is 23 times 47?", {}),
        ("Please add on the server", {}),
        ("weather in two cities", {"tools": [WEATHER]}),
        ("ping please", {"tools": [PING]}),
        ("count to forty", {"max_tokens": 7}),
        ("stop words", {"stop": ["three"]}),
        ("Hi", {"tools": [WEATHER], "tool_choice": "required"}),
    ],
)
def test_the_stream_adds_up_to_the_plain_response(client, content, body):
    plain = flat(chat(client, content, **body).json())
    response = chat(client, content, stream=True, stream_options={"include_usage": True}, **body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse(response)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(e["object"] == "chat.completion.chunk" and e["model"] == MODEL for e in events)
    streamed = accumulate(events)
    _same(streamed, plain)
    assert events[-1]["choices"] == [] and streamed["usage"]["completion_tokens"] > 0
    heads = [
        tc for e in events for c in e["choices"] for tc in c["delta"].get("tool_calls") or [] if tc.get("id")
    ]
    assert [h["index"] for h in heads] == list(range(len(plain["tool_calls"])))


def test_length_and_stop_finish_reasons(client):
    cut = chat(client, "count to forty", max_tokens=5).json()
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["usage"]["completion_tokens"] == 5
    stopped = chat(client, "stop words", stop="three").json()["choices"][0]
    assert stopped["message"]["content"] == "one two" and stopped["finish_reason"] == "stop"


_PIECE = st.one_of(
    st.text(alphabet="abc XY.,;\n{}[]<>", max_size=10),
    st.dictionaries(st.sampled_from(["city", "n"]), st.integers(0, 9), max_size=2).map(
        lambda a: _call("get_weather", a)
    ),
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(_PIECE, min_size=1, max_size=4))
def test_property_streamed_and_plain_replies_are_equal(smol_tokenizer, pieces):
    """Any mix of text and client calls (empty arguments included) streams to exactly the plain response."""
    script = "".join(pieces)
    backend = scripted_backend(smol_tokenizer, lambda prompt: script, name=MODEL)
    with TestClient(create_app(backend)) as client:
        plain = flat(chat(client, "go", tools=[WEATHER]).json())
        streamed = accumulate(sse(chat(client, "go", tools=[WEATHER], stream=True)))
    _same(streamed, plain)


# ---------------------------------------------------------------------------------------------------------------
# Completions, models, health


def test_completions_run_inline_tools_and_stream_the_same_text(client):
    body = {"model": MODEL, "prompt": "Q: 23 * 47?\nA:", "max_tokens": 40, "stop": ["\nQ:"]}
    plain = client.post("/v1/completions", json=body).json()
    choice = plain["choices"][0]
    assert plain["object"] == "text_completion"
    assert choice["text"] == " 23 * 47 = [Calculator(23 * 47) → 1081] 1081"
    assert choice["finish_reason"] == "stop" and choice["tool_trace"][0]["output"] == "1081"
    events = sse(client.post("/v1/completions", json={**body, "stream": True}))
    assert "".join(c["text"] for e in events for c in e["choices"]) == choice["text"]
    two = client.post("/v1/completions", json={**body, "prompt": ["Q: a", "Q: b"]}).json()
    assert [c["index"] for c in two["choices"]] == [0, 1]


def test_models_and_health(client):
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    [card] = models["data"]
    assert card["id"] == MODEL and card["object"] == "model"
    assert [t["name"] for t in card["tools"]] == ["Calculator", "Calendar"]
    assert client.get(f"/v1/models/{MODEL}").json()["id"] == MODEL
    assert client.get("/v1/models/other").status_code == 404
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == MODEL


def test_the_playground_page_is_served_at_the_root(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/v1/chat/completions" in page.text and "tool_trace" in page.text


# ---------------------------------------------------------------------------------------------------------------
# Errors: always 4xx in the OpenAI shape


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (b"{not json", None),
        (b"", None),
        (b"[1, 2]", None),
        (json.dumps({"model": MODEL}).encode(), "messages"),
        (json.dumps({"model": MODEL, "messages": []}).encode(), "messages"),
        (
            json.dumps({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}).encode(),
            "messages.0.role",
        ),
        (
            json.dumps(
                {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}
            ).encode(),
            "temperature",
        ),
        (
            json.dumps(
                {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}
            ).encode(),
            "max_tokens",
        ),
        (
            json.dumps(
                {
                    "model": MODEL,
                    "messages": [{"role": "user", "content": "x"}],
                    "tools": [{"type": "function"}],
                }
            ).encode(),
            "tools.0.function",
        ),
    ],
)
def test_malformed_requests_are_400_not_500(client, payload, param):
    r = client.post("/v1/chat/completions", content=payload, headers={"content-type": "application/json"})
    error = _error(r, 400)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": 5000}, "max_tokens"),
        ({"n": 2}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"toolformer": {"max_calls": 99}}, "toolformer.max_calls"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [
                            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_requests_the_server_cannot_honour_are_400(client, body, param):
    base = {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}
    assert _error(client.post("/v1/chat/completions", json={**base, **body}), 400)["param"] == param


def test_unknown_model_and_route_are_404(client):
    assert _error(chat(client, "x", model="gpt-4o"), 404)["code"] == "model_not_found"
    _error(client.get("/v1/nothing"), 404)
    _error(client.get("/v1/chat/completions"), 405)


def test_api_keys(backend):
    with TestClient(create_app(backend, ServeConfig(api_keys=["k1", "k2"]))) as client:
        assert _error(chat(client, "Hi"), 401)["code"] == "invalid_api_key"
        wrong = client.post("/v1/chat/completions", content=b"{bad", headers={"Authorization": "Bearer nope"})
        _error(wrong, 401)  # the key is checked before the body is read
        for key in ("k1", "k2"):
            r = client.post(
                "/v1/chat/completions",
                json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert r.status_code == 200
        assert client.get("/health").status_code == 200 and client.get("/").status_code == 200
        assert client.get("/v1/models").status_code == 401


def test_request_size_cap_with_and_without_content_length(backend):
    with TestClient(create_app(backend, ServeConfig(max_request_bytes=300))) as client:
        big = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 400}]}
        assert _error(client.post("/v1/chat/completions", json=big), 413)["code"] == "request_too_large"

        def chunks():
            yield json.dumps(big).encode()[:200]
            yield json.dumps(big).encode()[200:]

        r = client.post(
            "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
        )
        _error(r, 413)
        assert chat(client, "Hi").status_code == 200


def test_the_prompt_must_fit_the_models_context(smol_tokenizer, tiny_lm):
    from toolformer.runtime.engine import Toolformer
    from toolformer.tools import load_tools

    model, tok = tiny_lm
    backend = ToolformerBackend(Toolformer(model, tok, load_tools("Calculator"), name=MODEL))
    assert backend.context_length == 2048
    with TestClient(create_app(backend)) as client:
        error = _error(chat(client, "word " * 2100, max_tokens=4), 400)
        assert error["code"] == "context_length_exceeded"
        ok = chat(client, "Hi", max_tokens=3).json()  # the random tiny model still answers
        assert ok["choices"][0]["finish_reason"] in ("stop", "length")


# ---------------------------------------------------------------------------------------------------------------
# Concurrency: batching, per-key limit, timeouts


class _Gated:
    """Wraps a backend so the first batch waits until `gate` is set (to line requests up deterministically)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = threading.Event()
        for attr in ("name", "kind", "tokenizer", "tools", "max_batch", "context_length"):
            setattr(self, attr, getattr(inner, attr))

    def generate(self, prompts, config, on_event=None):
        self.gate.wait(10)
        return self.inner.generate(prompts, config, on_event)


def test_batcher_decodes_queued_requests_together(backend):
    gated = _Gated(backend)
    batcher = Batcher(gated, max_batch=8, wait_s=0)
    batcher.start()
    try:
        from toolformer.runtime.decode import DecodeConfig

        config = DecodeConfig(max_new_tokens=8)
        futures = [batcher.submit("first", config)]
        deadline = time.monotonic() + 5
        while (
            not batcher.running and time.monotonic() < deadline
        ):  # the first batch is taken, held at the gate
            time.sleep(0.01)
        futures += [batcher.submit(f"prompt {i}", config) for i in range(4)]
        cancelled = batcher.submit("gone", config, cancelled=lambda: True)
        seeded = batcher.submit("seeded", DecodeConfig(max_new_tokens=8, seed=1))
        gated.gate.set()
        results = [f.result(10) for f in futures]
        assert all(isinstance(g, Generation) and g.text == "Hello there." for g in results)
        assert seeded.result(10).text == "Hello there."
        with pytest.raises(Exception, match="cancelled"):
            cancelled.result(10)
        assert backend.tf.model.batch_sizes == [1, 4, 1]
    finally:
        batcher.stop()


def test_concurrent_http_requests_share_a_batch_and_the_key_limit_holds(backend):
    gated = _Gated(backend)
    app = create_app(gated, ServeConfig(max_concurrency_per_key=4, batch_wait_ms=0))
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    with running_server(app) as url, cf.ThreadPoolExecutor(4) as pool:
        post = lambda: httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)  # noqa: E731
        futures = [pool.submit(post) for _ in range(4)]
        deadline = time.monotonic() + 10
        batcher = app.state.batcher
        while batcher.depth + batcher.running < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        over = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        assert _error(over, 429)["type"] == "rate_limit_error"
        gated.gate.set()
        assert [f.result().status_code for f in futures] == [200] * 4
        assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).status_code == 200
    sizes = backend.tf.model.batch_sizes
    # The first batch is held at the gate; the requests that arrive meanwhile are decoded together after it.
    assert sum(sizes[:-1]) == 4 and len(sizes[:-1]) <= 2 and sizes[-1] == 1


def test_a_request_past_its_timeout_is_504_and_its_stream_ends_with_an_error(backend):
    gated = _Gated(backend)
    with TestClient(create_app(gated, ServeConfig(request_timeout=0.3))) as client:
        assert _error(chat(client, "Hi"), 504)["code"] == "timeout"
        events = [
            json.loads(line[6:])
            for line in chat(client, "Hi", stream=True).text.split("\n\n")
            if line.startswith("data: {")
        ]
        assert events[-1]["error"]["code"] == "timeout"
        gated.gate.set()
        time.sleep(0.2)
        assert client.get("/health").json()["status"] == "ok"


# ---------------------------------------------------------------------------------------------------------------
# CLI


def test_serve_command_builds_the_app_from_its_options(monkeypatch, backend):
    import uvicorn

    from toolformer import cli
    from toolformer.serve import backend as backend_module

    seen: dict[str, Any] = {}
    monkeypatch.setattr(
        backend_module, "load_backend", lambda *a, **k: seen.setdefault("load", (a, k)) and backend
    )
    monkeypatch.setattr(uvicorn, "run", lambda app, **k: seen.update(app=app, run=k))
    monkeypatch.setenv("TOOLFORMER_API_KEY", "secret")
    result = CliRunner().invoke(
        cli.app, ["serve", "--port", "8123", "--tools", "Calculator", "--max-batch", "4"]
    )
    assert result.exit_code == 0, result.output
    assert seen["run"] == {"host": "127.0.0.1", "port": 8123, "log_level": "info"}
    config = seen["app"].state.config
    assert config.api_keys == ["secret"] and config.max_batch == 4
    assert seen["load"][0][1] == "Calculator"


# ---------------------------------------------------------------------------------------------------------------
# The real embedded model


@pytest.mark.slow
def test_real_model_answers_with_a_calculator_call(smol):
    from toolformer.runtime.engine import Toolformer
    from toolformer.tools import load_tools

    model, tok = smol
    backend = ToolformerBackend(Toolformer(model, tok, load_tools(None), name="smollm2-135m-instruct"))
    with TestClient(create_app(backend)) as client:
        body = client.post(
            "/v1/chat/completions",
            json={
                "model": "smollm2-135m-instruct",
                "messages": [{"role": "user", "content": "What is 23 times 47?"}],
                "max_tokens": 40,
            },
        ).json()
    choice = body["choices"][0]
    assert [(t["tool"], t["output"]) for t in choice["tool_trace"]][:1] == [("Calculator", "1081")]
    assert "1081" in choice["message"]["content"]
