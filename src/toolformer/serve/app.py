"""`create_app(backend, config)`: the FastAPI app: OpenAI-compatible routes, SSE streaming, limits, metrics, playground.

Routes: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`, `GET /health`, `GET /metrics`, and
the playground at `/` (`toolformer.serve.routes`). The model runs on the batcher's thread and each request's chat
loop on a worker thread, so the event loop only moves bytes. Every failure a client can cause is a 4xx in OpenAI's
error shape: 400 bad JSON or fields, 401 missing/wrong key, 404 unknown model or route, 413 body too large, 429 too
many prompts in flight for one key (a completions request counts each of its prompts); 504 when a request outlives
`request_timeout`. With API keys set, `/v1/*` and `/metrics` need one (`toolformer.serve.gate`). A request whose
client goes away, streamed or not, is cancelled at once: its slot is freed, its queued prompts dropped, and its
rows leave the batch being decoded (`toolformer.serve.workers`, `toolformer.serve.sse`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from toolformer.runlog import RunLog
from toolformer.serve.config import ServeConfig
from toolformer.serve.errors import ApiError, as_api_error
from toolformer.serve.gate import Gate
from toolformer.serve.routes import ROUTERS
from toolformer.serve.state import ServerState


def create_app(backend: Any, config: ServeConfig | None = None, runlog: RunLog | None = None) -> FastAPI:
    """The server for `backend` (see `toolformer.serve.backend`); the batcher starts now and stops at shutdown.

    With `runlog` (`toolformer.runlog.open_run_log()`), each reply is logged there, as `toolformer serve` does.
    """
    config = config or ServeConfig()
    state = ServerState.build(backend, config, runlog)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.batcher.start()
        yield
        state.close()

    app = FastAPI(
        title="toolformer",
        summary="An OpenAI-compatible server whose model runs its tools while it writes.",
        lifespan=lifespan,
        version="1",
    )
    app.state.server = state
    app.state.backend, app.state.batcher, app.state.metrics, app.state.config = (
        backend,
        state.batcher,
        state.metrics,
        config,
    )
    app.add_middleware(Gate, config=config, metrics=state.metrics)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _crash)
    for router in ROUTERS:
        app.include_router(router)
    return app


# ---------------------------------------------------------------------------------------------------------------
# Errors, all in OpenAI's shape


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    message, param = _validation_message(exc)
    error = ApiError(400, message, param=param, code="invalid_json" if param is None else "invalid_value")
    return JSONResponse(error.body(), status_code=400)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    error = ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")
    return JSONResponse(error.body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _crash(request: Request, exc: Exception) -> JSONResponse:
    error = as_api_error(exc)
    return JSONResponse(error.body(), status_code=error.status)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """pydantic's errors in one line (the first five), and the first field they name (the OpenAI `param`)."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return "the request body is not valid JSON", None
    parts, first = [], None
    for e in errors[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        first = first or loc or None
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request", first
