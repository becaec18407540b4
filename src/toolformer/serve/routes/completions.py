"""`POST /v1/completions`: continue raw prompts (one choice per prompt), whole or streamed, inline calls run.

Every prompt of a request is a row in flight: the per-key limit counts them all.
"""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from toolformer.serve.errors import ApiError
from toolformer.serve.gate import api_key
from toolformer.serve.schemas import (
    ERROR_RESPONSES,
    Completion,
    CompletionChoice,
    CompletionRequest,
    TraceEntry,
    Usage,
)
from toolformer.serve.session import Reply, decode_config, run_completion
from toolformer.serve.sse import event_stream, sse, streaming
from toolformer.serve.state import State
from toolformer.serve.workers import CLIENT_GONE, ClientGone, run_blocking

router = APIRouter()

DEFAULT_MAX_TOKENS = 16  # OpenAI's default max_tokens for completions


@router.post("/v1/completions", response_model=Completion, responses=ERROR_RESPONSES)
async def completions(body: CompletionRequest, request: Request, state: State) -> Any:
    state.check_model(body.model)
    if body.echo:
        raise ApiError(400, "echo is not supported", param="echo", code="unsupported_value")
    config = decode_config(body, state.config, DEFAULT_MAX_TOKENS)
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    if not prompts:
        raise ApiError(400, "prompt must not be an empty list", param="prompt")
    release = state.limiter.acquire(api_key(request), len(prompts))  # every prompt is a row in flight
    rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    jobs = [
        state.logged(functools.partial(run_completion, p, config, state.batcher), p, config) for p in prompts
    ]
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _Chunks(rid, now, state.backend.name, include_usage)
        return streaming(event_stream(state, jobs, chunks.render, release, request), release)
    try:
        replies = await run_blocking(state, jobs, request)
    except ClientGone:
        return Response(status_code=CLIENT_GONE)
    finally:
        release()
    for reply in replies:
        state.observe(reply)
    choices = [
        CompletionChoice(
            index=i,
            text=r.content,
            finish_reason=r.finish_reason,
            tool_trace=[TraceEntry.of(c) for c in r.trace],
        )
        for i, r in enumerate(replies)
    ]
    usage = Usage.of(sum(r.prompt_tokens for r in replies), sum(r.completion_tokens for r in replies))
    return Completion(id=rid, created=now, model=state.backend.name, choices=choices, usage=usage)


class _Chunks:
    """The SSE chunks of streamed completions, one choice per prompt (`render` for `event_stream`)."""

    def __init__(self, rid: str, created: int, model: str, include_usage: bool) -> None:
        self.rid, self.created, self.model = rid, created, model
        self.include_usage = include_usage
        self.prompt_tokens = self.completion_tokens = 0

    def chunk(self, choices: list[CompletionChoice], usage: Usage | None = None) -> str:
        return sse(
            Completion(id=self.rid, created=self.created, model=self.model, choices=choices, usage=usage)
        )

    def render(self, index: int, kind: str, payload: Any) -> list[str]:
        if kind == "content":
            return [self.chunk([CompletionChoice(index=index, text=payload, finish_reason=None)])]
        if kind == "trace":
            trace = [TraceEntry.of(payload)]
            return [
                self.chunk([CompletionChoice(index=index, text="", finish_reason=None, tool_trace=trace)])
            ]
        if kind == "done":
            reply: Reply = payload
            self.prompt_tokens += reply.prompt_tokens
            self.completion_tokens += reply.completion_tokens
            return [self.chunk([CompletionChoice(index=index, text="", finish_reason=reply.finish_reason)])]
        if kind == "end" and self.include_usage:
            return [self.chunk([], usage=Usage.of(self.prompt_tokens, self.completion_tokens))]
        return []
