"""Server-sent events: run a request's jobs on worker threads and stream what they produce as `data:` lines.

A job reports ("content", text) and ("trace", CallTrace) to its sink as it decodes, and its `Reply` when done; a
route's `render(index, kind, payload)` turns each of these (and "start" and "end", index -1) into SSE lines. The
stream ends with `data: [DONE]`, or with one error event (the OpenAI error shape) when a job fails or the request
outlives `request_timeout`. A client that goes away ends it at once: its rows leave their batch and its slot is
freed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from toolformer.serve.errors import as_api_error
from toolformer.serve.session import Reply
from toolformer.serve.state import ServerState
from toolformer.serve.workers import Job, client_gone

logger = logging.getLogger(__name__)

Render = Callable[[int, str, Any], list[str]]


def sse(payload: Any) -> str:
    """One event: a pydantic model (without its None fields) or a plain JSON value."""
    text = (
        payload.model_dump_json(exclude_none=True)
        if hasattr(payload, "model_dump_json")
        else json.dumps(payload)
    )
    return f"data: {text}\n\n"


async def event_stream(
    state: ServerState,
    jobs: list[Job],
    render: Render,
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
        await client_gone(request)
        queue.put_nowait((-1, "gone", None))

    def put(index: int, kind: str, payload: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (index, kind, payload))

    def work(index: int, job: Job) -> None:
        try:
            put(index, "done", job(lambda kind, payload: put(index, kind, payload), cancel.is_set))
        except BaseException as exc:  # the stream reports it; the thread must not die silently
            put(index, "error", exc)

    for index, job in enumerate(jobs):
        state.pool.submit(work, index, job)
    deadline = loop.time() + state.config.request_timeout
    left = len(jobs)
    try:
        gone = asyncio.ensure_future(watch())
        for line in render(-1, "start", None):
            yield line
        while left:
            try:
                index, kind, payload = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
            except (TimeoutError, asyncio.TimeoutError):
                state.abandon(cancel)
                yield sse(state.timeout_error().body())
                return
            if kind == "gone":
                logger.info("client went away: its stream is cancelled")
                return
            if kind == "error":
                yield sse(as_api_error(payload).body())
                return
            if kind == "done":
                left -= 1
                reply: Reply = payload
                state.observe(reply)
            for line in render(index, kind, payload):
                yield line
        for line in render(-1, "end", None):
            yield line
        yield "data: [DONE]\n\n"
    finally:
        if gone is not None:
            gone.cancel()
        state.abandon(cancel)  # a stream that ended early (client gone, error, timeout) leaves no work behind
        release()


def streaming(body: AsyncIterator[str], release: Callable[[], None]) -> StreamingResponse:
    """The response for an `event_stream`; `release` frees the request's slot even if the stream never starts."""
    weakref.finalize(body, release)  # a stream dropped before it started still frees its slot
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
