"""The gate in front of the server (`serve/gate.py`), on its own: API keys (401), body size (413), request metrics,
and the per-key limit on prompts in flight (429). The inner app is a bare ASGI echo, so only the gate is tested."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from toolformer.serve.config import ServeConfig
from toolformer.serve.errors import ApiError
from toolformer.serve.gate import Gate, KeyLimiter, route_label
from toolformer.serve.metrics import Metrics


class _Echo:
    """An ASGI app that answers 200 with the body it read, and records the key the gate let the request in with."""

    def __init__(self, swallow: bool = False) -> None:
        self.keys: list[Any] = []
        self.swallow = swallow  # like FastAPI: a failure to read the body becomes this app's own 400

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        try:
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    break
        except Exception:
            if not self.swallow:
                raise
            await send({"type": "http.response.start", "status": 400, "headers": []})
            await send({"type": "http.response.body", "body": b"unreadable"})
            return
        self.keys.append(scope.get("state", {}).get("api_key"))
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": body})


def _gated(inner: _Echo, **config: Any) -> tuple[TestClient, Metrics]:
    metrics = Metrics()
    return TestClient(Gate(inner, ServeConfig(**config), metrics)), metrics


def _count(metrics: Metrics, route: str, status: int) -> float:
    return (
        metrics.registry.get_sample_value(
            "toolformer_requests_total", {"route": route, "status": str(status)}
        )
        or 0
    )


def test_without_keys_everything_passes_with_an_empty_key():
    inner = _Echo()
    client, _ = _gated(inner)
    assert client.post("/v1/completions", content=b"hello").text == "hello"
    assert client.get("/metrics").status_code == 200
    assert inner.keys == ["", ""]


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Bearer k2", "k2"),
        ("bearer k1", "k1"),  # the scheme is case-insensitive
        ("Bearer   k1  ", "k1"),
        ("Bearer k3", None),
        ("Basic k1", None),
        ("Bearer", None),
        ("k1", None),
        ("", None),
    ],
)
def test_a_key_is_accepted_only_as_a_bearer_token_of_the_servers_keys(header, key):
    gate = Gate(_Echo(), ServeConfig(api_keys=["k1", "k2"]), Metrics())
    assert gate.key(header) == key


def test_guarded_paths_answer_401_before_the_app_runs_and_open_paths_stay_open():
    inner = _Echo()
    client, metrics = _gated(inner, api_keys=["secret"])
    for path in ("/v1/chat/completions", "/v1/models/anything", "/metrics"):
        response = client.post(path, content=b"x", headers={"Authorization": "Bearer wrong"})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert response.json()["error"]["type"] == "authentication_error"
    assert inner.keys == []  # the app never saw them
    assert client.get("/health").status_code == 200 and client.get("/").status_code == 200
    ok = client.post("/v1/completions", content=b"x", headers={"Authorization": "Bearer secret"})
    assert ok.status_code == 200 and inner.keys[-1] == "secret"
    assert _count(metrics, "/v1/chat/completions", 401) == 1
    assert _count(metrics, "/v1/models", 401) == 1  # any model's card is counted under /v1/models
    assert _count(metrics, "/v1/completions", 200) == 1


def test_a_body_over_the_limit_is_413_whether_announced_or_streamed():
    inner = _Echo()
    client, metrics = _gated(inner, max_request_bytes=100)
    assert client.post("/v1/completions", content=b"x" * 100).status_code == 200  # the limit itself is fine
    announced = client.post("/v1/completions", content=b"x" * 101)
    assert announced.status_code == 413 and announced.json()["error"]["code"] == "request_too_large"
    assert "100 bytes" in announced.json()["error"]["message"]
    streamed = client.post("/v1/completions", content=iter([b"x" * 60, b"x" * 60]))  # chunked: no length
    assert streamed.status_code == 413
    assert len(inner.keys) == 1
    assert _count(metrics, "/v1/completions", 413) == 2
    assert metrics.registry.get_sample_value("toolformer_requests_in_flight") == 0


def test_an_app_that_answers_its_own_error_for_an_unreadable_body_still_answers_413():
    client, _ = _gated(_Echo(swallow=True), max_request_bytes=10)
    response = client.post("/v1/completions", content=iter([b"x" * 8, b"x" * 8]))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/v1/chat/completions", "/v1/chat/completions"),
        ("/v1/models", "/v1/models"),
        ("/v1/models/org/name", "/v1/models"),
        ("/", "/"),
        ("/docs", "other"),
        ("/v1/nope", "other"),
    ],
)
def test_metrics_label_known_routes_and_lump_the_rest(path, label):
    assert route_label(path) == label


def test_the_limiter_counts_prompts_per_key_and_gives_slots_back_once():
    limiter = KeyLimiter(3)
    first = limiter.acquire("a", 2)
    with pytest.raises(ApiError) as over:
        limiter.acquire("a", 2)
    assert over.value.status == 429 and "limit 3, 2 in flight" in over.value.message
    other = limiter.acquire("b", 3)  # another key has its own slots
    first()
    first()  # a second release gives nothing back twice
    assert limiter.active["a"] == 0
    again = limiter.acquire("a", 3)
    with pytest.raises(ApiError):
        limiter.acquire("a")
    again()
    other()
    assert dict(limiter.active) == {"a": 0, "b": 0}


def test_a_request_with_more_prompts_than_the_limit_is_429_on_the_prompt():
    with pytest.raises(ApiError) as too_many:
        KeyLimiter(2).acquire("", 3)
    error = too_many.value.body()["error"]
    assert too_many.value.status == 429
    assert (error["param"], error["code"], error["type"]) == (
        "prompt",
        "rate_limit_exceeded",
        "rate_limit_error",
    )
