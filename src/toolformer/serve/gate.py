"""The gate every HTTP request passes before FastAPI parses it: API key (401), body size (413), request metrics; and
`KeyLimiter`, the prompts each API key may have in flight (429).

With API keys set, `/v1/*` and `/metrics` need one (`Authorization: Bearer KEY`); `/health` and the playground page
stay open (the page sends the key its user types). The caller's key is left in the request's state (`api_key`,
'' when the server has none) for the routes to count against the limiter.
"""

from __future__ import annotations

import hmac
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from toolformer.serve.config import ServeConfig
from toolformer.serve.errors import ApiError
from toolformer.serve.metrics import Metrics

ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics", "/")
GUARDED = ("/v1/", "/metrics")  # what an API key protects: the model and what it has been asked (metrics)


class _TooLarge(Exception):
    """The request body grew past the limit while it was being read."""


def route_label(path: str) -> str:
    """The metrics label of a path: a known route, `/v1/models` for any model's card, else 'other'."""
    return path if path in ROUTES else "/v1/models" if path.startswith("/v1/models/") else "other"


def api_key(request: Request) -> str:
    """The key the gate let this request in with ('' when the server has none)."""
    return getattr(request.state, "api_key", "")


class KeyLimiter:
    """Prompts in flight per API key (touched only on the event loop's thread)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active: dict[str, int] = defaultdict(int)

    def acquire(self, key: str, n: int = 1) -> Callable[[], None]:
        """Take `n` slots (one per prompt) or raise 429; the returned function gives them back (once)."""
        if n > self.limit:
            raise ApiError(
                429,
                f"this request has {n} prompts, more than the {self.limit} this API key may have in flight",
                param="prompt",
                code="rate_limit_exceeded",
            )
        if self.active[key] + n > self.limit:
            raise ApiError(
                429,
                f"too many prompts in flight for this API key (limit {self.limit}, {self.active[key]} in flight)",
                code="rate_limit_exceeded",
            )
        self.active[key] += n
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.active[key] -= n

        return release


class Gate:
    """ASGI middleware: auth, body size and metrics for every HTTP request (`app.add_middleware(Gate, ...)`)."""

    def __init__(self, app: Any, config: ServeConfig, metrics: Metrics) -> None:
        self.app = app
        self.keys = [k.encode() for k in config.api_keys]
        self.max_bytes = config.max_request_bytes
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope.get("path", "")
        route = route_label(path)
        status = 500

        async def send_and_record(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.metrics.observe_request(route, status, time.perf_counter() - started)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if path.startswith(GUARDED):
            key = self.key(headers.get("authorization", ""))
            if key is None:
                error = ApiError(
                    401,
                    "missing or incorrect API key: send 'Authorization: Bearer KEY'",
                    code="invalid_api_key",
                )
                await JSONResponse(error.body(), status_code=401)(scope, receive, send_and_record)
                return
            scope.setdefault("state", {})["api_key"] = key
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(scope, receive, send_and_record)
            return
        seen, too_large, answered = 0, False, False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise _TooLarge
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            # FastAPI turns any failure to read the body into its own 400; answer 413 instead.
            nonlocal answered
            if not too_large:
                await send_and_record(message)
            elif not answered:
                answered = True
                await self._too_large(scope, receive, send_and_record)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not answered:
                await self._too_large(scope, receive, send_and_record)
        finally:
            self.metrics.in_flight.dec()

    def key(self, header: str) -> str | None:
        """The caller's key ('' when the server has none), or None when it is missing or wrong."""
        if not self.keys:
            return ""
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        ok = False
        for key in self.keys:  # compare with every key, in constant time, so timing says nothing
            ok |= hmac.compare_digest(key, token.encode())
        return token if ok else None

    async def _too_large(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        error = ApiError(
            413, f"the request body is larger than {self.max_bytes} bytes", code="request_too_large"
        )
        await JSONResponse(error.body(), status_code=413)(scope, receive, send)
