"""Run a request's jobs on the worker threads until they finish, the client goes away or `request_timeout` passes.

A job is `job(sink, cancelled)` (`session.run_chat` or `run_completion` with its request bound): it blocks, so it
runs on the state's pool, and it stops once `cancelled()` is true. Streams run their jobs in `toolformer.serve.sse`.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable

from fastapi import Request

from toolformer.serve.errors import ApiError, as_api_error
from toolformer.serve.session import Reply
from toolformer.serve.state import ServerState

CLIENT_GONE = 499  # nginx's "client closed request": logged and counted, never read by the client

Job = Callable[..., Reply]


class ClientGone(Exception):
    """The client disconnected before its reply was ready."""


async def client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read by then: what comes next is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def run_blocking(state: ServerState, jobs: list[Job], request: Request) -> list[Reply]:
    """Run `jobs` (each `job(cancelled=...)`) on worker threads until all are done, the client goes away
    (`ClientGone`) or `request_timeout` passes (504); any failure cancels the rest of the request."""
    loop = asyncio.get_running_loop()
    cancel = threading.Event()
    replies = asyncio.gather(
        *(loop.run_in_executor(state.pool, functools.partial(job, cancelled=cancel.is_set)) for job in jobs)
    )
    gone = asyncio.ensure_future(client_gone(request))
    try:
        await asyncio.wait(
            {replies, gone}, timeout=state.config.request_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if replies.done():
            return replies.result()
        raise ClientGone if gone.done() else state.timeout_error()
    except BaseException as exc:
        state.abandon(cancel)  # one failed prompt ends the request: its other prompts stop too
        if isinstance(exc, (ApiError, ClientGone)) or not isinstance(exc, Exception):
            raise
        # As an ApiError it is answered here; a bare exception would reach uvicorn, which drops the connection.
        raise as_api_error(exc) from exc
    finally:
        gone.cancel()
        if not replies.done():
            replies.cancel()  # the threads see `cancel` and stop; their results are not waited for
