"""`create_app(backend, config)`: the FastAPI app: OpenAI-compatible routes, SSE streaming, limits, metrics, playground.

Routes: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`, `GET /health`, `GET /metrics`, and
the playground at `/`. The model runs on the batcher's thread and each request's chat loop on a worker thread, so
the event loop only moves bytes. Every failure a client can cause is a 4xx in OpenAI's error shape: 400 bad JSON or
fields, 401 missing/wrong key, 404 unknown model or route, 413 body too large, 429 too many prompts in flight for
one key (a completions request counts each of its prompts); 504 when a request outlives `request_timeout`.
With API keys set, `/v1/*` and `/metrics` need one (`Authorization: Bearer KEY`); `/health` and the playground page
stay open (the page sends the key its user types). A request whose client goes away, streamed or not, is cancelled
at once: its slot is freed, its queued prompts dropped, and its rows leave the batch being decoded.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import threading
import time
import uuid
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from toolformer.errors import ConfigError
from toolformer.runtime.decode import CallTrace
from toolformer.serve.batcher import Batcher, Cancelled
from toolformer.serve.config import ServeConfig
from toolformer.serve.errors import ApiError
from toolformer.serve.metrics import Metrics
from toolformer.serve.schemas import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionRequest,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    ErrorResponse,
    Health,
    ModelCard,
    ModelList,
    ResponseMessage,
    ToolCall,
    ToolInfo,
    TraceEntry,
    Usage,
)
from toolformer.serve.session import Reply, chat_plan, decode_config, run_chat, run_completion

logger = logging.getLogger(__name__)

ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics", "/")
GUARDED = ("/v1/", "/metrics")  # what an API key protects: the model and what it has been asked (metrics)
CLIENT_GONE = 499  # nginx's "client closed request": logged and counted, never read by the client
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 429, 504)
}


class _TooLarge(Exception):
    """The request body grew past the limit while it was being read."""


class _ClientGone(Exception):
    """The client disconnected before its reply was ready."""


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def trace_entry(call: CallTrace) -> TraceEntry:
    return TraceEntry(
        tool=call.tool,
        input=call.input,
        output=call.output,
        ok=call.ok,
        ms=round(call.seconds * 1000, 3),
        start=call.start,
        end=call.end,
    )


def _usage(prompt: int, completion: int) -> Usage:
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _sse(payload: Any) -> str:
    text = (
        payload.model_dump_json(exclude_none=True)
        if hasattr(payload, "model_dump_json")
        else json.dumps(payload)
    )
    return f"data: {text}\n\n"


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return "the request body is not valid JSON", None
    parts, first = [], None
    for e in errors[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        first = first or loc or None
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request", first


def _as_api_error(exc: BaseException, timed_out: bool = False) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if timed_out or isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return ApiError(504, "the request timed out", code="timeout")
    if isinstance(exc, Cancelled):
        return ApiError(503, str(exc), code="cancelled")
    if isinstance(exc, ConfigError):
        return ApiError(400, str(exc))
    logger.error("request failed", exc_info=exc)
    return ApiError(500, f"internal error: {type(exc).__name__}", code="internal_error")


class _KeyLimiter:
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


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read by then: what comes next is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


# ---------------------------------------------------------------------------------------------------------------
# The gate: auth, body size, metrics, for every HTTP request before FastAPI parses anything


class _Gate:
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
        route = path if path in ROUTES else "/v1/models" if path.startswith("/v1/models/") else "other"
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
            key = self._key(headers.get("authorization", ""))
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

    def _key(self, header: str) -> str | None:
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


# ---------------------------------------------------------------------------------------------------------------
# The app


def create_app(backend: Any, config: ServeConfig | None = None) -> FastAPI:
    """The server for `backend` (see `toolformer.serve.backend`); the batcher starts now and stops at shutdown."""
    config = config or ServeConfig()
    batcher = Batcher(backend, config.max_batch, config.batch_wait_ms / 1000)
    metrics = Metrics(queue_depth=lambda: batcher.depth)
    batcher.on_batch = metrics.batch_size.observe
    pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="request")
    limiter = _KeyLimiter(config.max_concurrency_per_key)
    created = int(time.time())
    playground = resources.files("toolformer.serve").joinpath("static/playground.html").read_text("utf-8")
    batcher.start()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        batcher.stop()
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="toolformer",
        summary="An OpenAI-compatible server whose model runs its tools while it writes.",
        lifespan=lifespan,
        version="1",
    )
    app.state.backend, app.state.batcher, app.state.metrics, app.state.config = (
        backend,
        batcher,
        metrics,
        config,
    )
    app.add_middleware(_Gate, config=config, metrics=metrics)

    # -- errors ---------------------------------------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        error = ApiError(400, message, param=param, code="invalid_json" if param is None else "invalid_value")
        return JSONResponse(error.body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")
        return JSONResponse(error.body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        error = _as_api_error(exc)
        return JSONResponse(error.body(), status_code=error.status)

    # -- helpers --------------------------------------------------------------------------------------------

    def check_model(name: str) -> None:
        if name != backend.name:
            raise ApiError(
                404,
                f"model {name!r} is not served here (this server has {backend.name!r})",
                param="model",
                code="model_not_found",
            )

    def api_key(request: Request) -> str:
        return getattr(request.state, "api_key", "")

    def abandon(cancel: threading.Event) -> None:
        """Nothing more of this request is decoded: its rows leave their batch and its queued prompts go now."""
        cancel.set()
        batcher.prune()

    def timeout_error() -> ApiError:
        return ApiError(504, f"the request took longer than {config.request_timeout:g} s", code="timeout")

    async def run_blocking(jobs: list[Callable[..., Reply]], request: Request) -> list[Reply]:
        """Run `jobs` (each `job(cancelled=...)`) on worker threads until all are done, the client goes away
        (`_ClientGone`) or `request_timeout` passes (504); any failure cancels the rest of the request."""
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        replies = asyncio.gather(
            *(loop.run_in_executor(pool, functools.partial(job, cancelled=cancel.is_set)) for job in jobs)
        )
        gone = asyncio.ensure_future(_client_gone(request))
        try:
            await asyncio.wait(
                {replies, gone}, timeout=config.request_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if replies.done():
                return replies.result()
            raise _ClientGone if gone.done() else timeout_error()
        except BaseException as exc:
            abandon(cancel)  # one failed prompt ends the request: its other prompts stop too
            if isinstance(exc, (ApiError, _ClientGone)) or not isinstance(exc, Exception):
                raise
            # As an ApiError it is answered here; a bare exception would reach uvicorn, which drops the connection.
            raise _as_api_error(exc) from exc
        finally:
            gone.cancel()
            if not replies.done():
                replies.cancel()  # the threads see `cancel` and stop; their results are not waited for

    def observe(reply: Reply) -> None:
        metrics.observe_reply(reply.prompt_tokens, reply.completion_tokens, reply.trace)

    def tool_call_models(reply: Reply) -> list[ToolCall] | None:
        return [ToolCall.model_validate(c.to_openai()) for c in reply.tool_calls] or None

    async def event_stream(
        jobs: list[Callable[..., Reply]],
        render: Callable[[int, str, Any], list[Any]],
        release: Callable[[], None],
        request: Request,
    ) -> AsyncIterator[str]:
        """Run `jobs` (one per choice) on worker threads and yield SSE lines rendered from their items; stop
        when the client goes away."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, str, Any]] = asyncio.Queue()
        cancel = threading.Event()
        gone: asyncio.Future[None] | None = None

        async def watch() -> None:
            await _client_gone(request)
            queue.put_nowait((-1, "gone", None))

        def put(index: int, kind: str, payload: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (index, kind, payload))

        def work(index: int, job: Callable[..., Reply]) -> None:
            try:
                put(index, "done", job(lambda kind, payload: put(index, kind, payload), cancel.is_set))
            except BaseException as exc:  # the stream reports it; the thread must not die silently
                put(index, "error", exc)

        for index, job in enumerate(jobs):
            pool.submit(work, index, job)
        deadline = loop.time() + config.request_timeout
        left = len(jobs)
        try:
            gone = asyncio.ensure_future(watch())
            for line in render(-1, "start", None):
                yield line
            while left:
                try:
                    index, kind, payload = await asyncio.wait_for(
                        queue.get(), max(0.0, deadline - loop.time())
                    )
                except (TimeoutError, asyncio.TimeoutError):
                    abandon(cancel)
                    yield _sse(timeout_error().body())
                    return
                if kind == "gone":
                    logger.info("client went away: its stream is cancelled")
                    return
                if kind == "error":
                    yield _sse(_as_api_error(payload).body())
                    return
                if kind == "done":
                    left -= 1
                    observe(payload)
                for line in render(index, kind, payload):
                    yield line
            for line in render(-1, "end", None):
                yield line
            yield "data: [DONE]\n\n"
        finally:
            if gone is not None:
                gone.cancel()
            abandon(cancel)  # a stream that ended early (client gone, error, timeout) leaves no work behind
            release()

    def streaming(body: AsyncIterator[str], release: Callable[[], None]) -> StreamingResponse:
        weakref.finalize(body, release)  # a stream dropped before it started still frees its slot
        return StreamingResponse(
            body,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # -- routes ---------------------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(playground)

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health(model=backend.name, backend=backend.kind, queued=batcher.depth)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    def model_card() -> ModelCard:
        tools = [ToolInfo(name=n, description=d) for n, d in backend.tools.describe()]
        return ModelCard(id=backend.name, created=created, backend=backend.kind, tools=tools)

    @app.get("/v1/models", response_model=ModelList, responses=_ERRORS)
    async def models() -> ModelList:
        return ModelList(data=[model_card()])

    @app.get("/v1/models/{model_id:path}", response_model=ModelCard, responses=_ERRORS)
    async def model(model_id: str) -> ModelCard:
        check_model(model_id)
        return model_card()

    @app.post("/v1/chat/completions", response_model=ChatCompletion, responses=_ERRORS)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        check_model(body.model)
        plan = chat_plan(body, config, backend)
        release = limiter.acquire(api_key(request))
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not body.stream:
            try:
                [reply] = await run_blocking(
                    [functools.partial(run_chat, plan, backend, batcher, None)], request
                )
            except _ClientGone:
                return Response(status_code=CLIENT_GONE)  # nobody reads it: for the logs and metrics
            finally:
                release()  # at once, also when the client went away: the slot is not held until a timeout
            observe(reply)
            message = ResponseMessage(
                content=reply.content if reply.content or not reply.tool_calls else None,
                tool_calls=tool_call_models(reply),
            )
            choice = ChatChoice(
                index=0,
                message=message,
                finish_reason=reply.finish_reason,
                tool_trace=[trace_entry(c) for c in reply.trace],
            )
            return ChatCompletion(
                id=rid,
                created=now,
                model=backend.name,
                choices=[choice],
                usage=_usage(reply.prompt_tokens, reply.completion_tokens),
            )
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        totals = [0, 0]

        def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> str:
            return _sse(
                ChatCompletionChunk(id=rid, created=now, model=backend.name, choices=choices, usage=usage)
            )

        def render(index: int, kind: str, payload: Any) -> list[str]:
            if kind == "start":
                return [chunk([ChunkChoice(index=0, delta=Delta(role="assistant", content=""))])]
            if kind == "content":
                return [chunk([ChunkChoice(index=0, delta=Delta(content=payload))])]
            if kind == "trace":
                return [chunk([ChunkChoice(index=0, delta=Delta(), tool_trace=[trace_entry(payload)])])]
            if kind == "done":
                reply: Reply = payload
                totals[0], totals[1] = reply.prompt_tokens, reply.completion_tokens
                lines = []
                for i, call in enumerate(reply.tool_calls):
                    entry = call.to_openai()
                    head = DeltaToolCall(
                        index=i,
                        id=entry["id"],
                        type="function",
                        function=DeltaFunction(name=entry["function"]["name"], arguments=""),
                    )
                    args = DeltaToolCall(
                        index=i, function=DeltaFunction(arguments=entry["function"]["arguments"])
                    )
                    lines += [
                        chunk([ChunkChoice(index=0, delta=Delta(tool_calls=[head]))]),
                        chunk([ChunkChoice(index=0, delta=Delta(tool_calls=[args]))]),
                    ]
                lines.append(chunk([ChunkChoice(index=0, delta=Delta(), finish_reason=reply.finish_reason)]))
                return lines
            if kind == "end" and include_usage:
                return [chunk([], usage=_usage(*totals))]
            return []

        job = functools.partial(_chat_job, plan, backend, batcher)
        return streaming(event_stream([job], render, release, request), release)

    @app.post("/v1/completions", response_model=Completion, responses=_ERRORS)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        check_model(body.model)
        if body.echo:
            raise ApiError(400, "echo is not supported", param="echo", code="unsupported_value")
        config_ = decode_config(body, config, 16)  # OpenAI's default max_tokens for completions
        prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
        if not prompts:
            raise ApiError(400, "prompt must not be an empty list", param="prompt")
        release = limiter.acquire(api_key(request), len(prompts))  # every prompt is a row in flight
        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if not body.stream:
            try:
                replies = await run_blocking(
                    [functools.partial(run_completion, p, config_, backend, batcher, None) for p in prompts],
                    request,
                )
            except _ClientGone:
                return Response(status_code=CLIENT_GONE)
            finally:
                release()
            for reply in replies:
                observe(reply)
            choices = [
                CompletionChoice(
                    index=i,
                    text=r.content,
                    finish_reason=r.finish_reason,
                    tool_trace=[trace_entry(c) for c in r.trace],
                )
                for i, r in enumerate(replies)
            ]
            usage = _usage(sum(r.prompt_tokens for r in replies), sum(r.completion_tokens for r in replies))
            return Completion(id=rid, created=now, model=backend.name, choices=choices, usage=usage)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        totals = [0, 0]

        def chunk(choices: list[CompletionChoice], usage: Usage | None = None) -> str:
            return _sse(Completion(id=rid, created=now, model=backend.name, choices=choices, usage=usage))

        def render(index: int, kind: str, payload: Any) -> list[str]:
            if kind == "content":
                return [chunk([CompletionChoice(index=index, text=payload, finish_reason=None)])]
            if kind == "trace":
                return [
                    chunk(
                        [
                            CompletionChoice(
                                index=index, text="", finish_reason=None, tool_trace=[trace_entry(payload)]
                            )
                        ]
                    )
                ]
            if kind == "done":
                totals[0] += payload.prompt_tokens
                totals[1] += payload.completion_tokens
                return [chunk([CompletionChoice(index=index, text="", finish_reason=payload.finish_reason)])]
            if kind == "end" and include_usage:
                return [chunk([], usage=_usage(*totals))]
            return []

        jobs = [functools.partial(_completion_job, p, config_, backend, batcher) for p in prompts]
        return streaming(event_stream(jobs, render, release, request), release)

    return app


def _chat_job(
    plan: Any, backend: Any, batcher: Batcher, sink: Callable, cancelled: Callable[[], bool]
) -> Reply:
    return run_chat(plan, backend, batcher, sink, cancelled)


def _completion_job(
    prompt: str, config: Any, backend: Any, batcher: Batcher, sink: Callable, cancelled: Callable[[], bool]
) -> Reply:
    return run_completion(prompt, config, backend, batcher, sink, cancelled)
