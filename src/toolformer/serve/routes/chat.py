"""`POST /v1/chat/completions`: one chat reply, whole or streamed (SSE), with the calls the server ran.

Tool calls meant for the client come back as OpenAI `tool_calls` (streamed as a head chunk with the id and name,
then one with the arguments); calls the server ran come back in each choice's `tool_trace` (extension).
"""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from toolformer.serve.gate import api_key
from toolformer.serve.schemas import (
    ERROR_RESPONSES,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    ResponseMessage,
    ToolCall,
    TraceEntry,
    Usage,
)
from toolformer.serve.session import Reply, chat_plan, last_user_text, run_chat
from toolformer.serve.sse import event_stream, sse, streaming
from toolformer.serve.state import State
from toolformer.serve.workers import CLIENT_GONE, ClientGone, run_blocking

router = APIRouter()


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERROR_RESPONSES)
async def chat_completions(body: ChatCompletionRequest, request: Request, state: State) -> Any:
    state.check_model(body.model)
    plan = chat_plan(body, state.config, state.backend)
    release = state.limiter.acquire(api_key(request))
    rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    job = state.logged(
        functools.partial(run_chat, plan, state.batcher), last_user_text(plan.messages), plan.config
    )
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = _Chunks(rid, now, state.backend.name, include_usage)
        return streaming(event_stream(state, [job], chunks.render, release, request), release)
    try:
        [reply] = await run_blocking(state, [job], request)
    except ClientGone:
        return Response(status_code=CLIENT_GONE)  # nobody reads it: for the logs and metrics
    finally:
        release()  # at once, also when the client went away: the slot is not held until a timeout
    state.observe(reply)
    message = ResponseMessage(
        content=reply.content if reply.content or not reply.tool_calls else None,
        tool_calls=[ToolCall.model_validate(c.to_openai()) for c in reply.tool_calls] or None,
    )
    choice = ChatChoice(
        index=0,
        message=message,
        finish_reason=reply.finish_reason,
        tool_trace=[TraceEntry.of(c) for c in reply.trace],
    )
    return ChatCompletion(
        id=rid,
        created=now,
        model=state.backend.name,
        choices=[choice],
        usage=Usage.of(reply.prompt_tokens, reply.completion_tokens),
    )


class _Chunks:
    """The SSE chunks of one streamed chat reply (`render` for `event_stream`)."""

    def __init__(self, rid: str, created: int, model: str, include_usage: bool) -> None:
        self.rid, self.created, self.model = rid, created, model
        self.include_usage = include_usage
        self.usage: Usage | None = None

    def chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> str:
        return sse(
            ChatCompletionChunk(
                id=self.rid, created=self.created, model=self.model, choices=choices, usage=usage
            )
        )

    def delta(self, delta: Delta, **fields: Any) -> str:
        return self.chunk([ChunkChoice(index=0, delta=delta, **fields)])

    def render(self, index: int, kind: str, payload: Any) -> list[str]:
        if kind == "start":
            return [self.delta(Delta(role="assistant", content=""))]
        if kind == "content":
            return [self.delta(Delta(content=payload))]
        if kind == "trace":
            return [self.delta(Delta(), tool_trace=[TraceEntry.of(payload)])]
        if kind == "done":
            return self.done(payload)
        if kind == "end" and self.include_usage:
            return [self.chunk([], usage=self.usage or Usage.of(0, 0))]
        return []

    def done(self, reply: Reply) -> list[str]:
        """The client's tool calls (a head chunk with id and name, then one with the arguments) and the finish."""
        self.usage = Usage.of(reply.prompt_tokens, reply.completion_tokens)
        lines = []
        for i, call in enumerate(reply.tool_calls):
            entry = call.to_openai()
            head = DeltaToolCall(
                index=i,
                id=entry["id"],
                type="function",
                function=DeltaFunction(name=entry["function"]["name"], arguments=""),
            )
            args = DeltaToolCall(index=i, function=DeltaFunction(arguments=entry["function"]["arguments"]))
            lines += [self.delta(Delta(tool_calls=[head])), self.delta(Delta(tool_calls=[args]))]
        lines.append(self.delta(Delta(), finish_reason=reply.finish_reason))
        return lines
