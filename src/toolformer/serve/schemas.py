"""Pydantic models of the OpenAI-compatible API: every request, response, stream chunk and error the server speaks.

Requests accept (and ignore) fields this server does not use, as OpenAI clients send many; fields it uses are
type-checked, so a wrong type is a 400 with pydantic's message. Extensions: a request's `toolformer` object, and
each choice's `tool_trace` (the calls the server ran: tool, input, output, ok, ms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from toolformer.runtime.results import CallTrace


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------------------------------
# Requests


class FunctionDef(_Request):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(_Request):
    type: Literal["function"] = "function"
    function: FunctionDef


class ToolCallFunction(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class NamedFunction(_Request):
    name: str


class NamedToolChoice(_Request):
    type: Literal["function"] = "function"
    function: NamedFunction


class ContentPart(_Request):
    type: str
    text: str | None = None


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class StreamOptions(_Request):
    include_usage: bool = False


class ToolformerOptions(_Request):
    """The `toolformer` extension object of a request."""

    max_calls: int | None = Field(
        default=None, ge=0, description="Server-tool calls (and rounds) for this reply."
    )
    examples: bool | None = Field(
        default=None, description="Show the server's tools as few-shot example turns."
    )


class _Sampling(_Request):
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    # The decoders seed a 64-bit generator: anything else would fail deep inside them (a 500), not here (a 400).
    seed: int | None = Field(default=None, ge=0, lt=2**64, strict=True)
    n: int = Field(default=1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool | int | None = None
    toolformer: ToolformerOptions | None = None


class ChatCompletionRequest(_Sampling):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[ToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_Sampling):
    model: str
    prompt: str | list[str]
    echo: bool = False


# ---------------------------------------------------------------------------------------------------------------
# Responses


class TraceEntry(_Response):
    """One call the server ran (extension)."""

    tool: str
    input: str
    output: str
    ok: bool
    ms: float
    start: int
    end: int

    @classmethod
    def of(cls, call: CallTrace) -> TraceEntry:
        """The entry of a call the decoder ran (its seconds as milliseconds)."""
        return cls(
            tool=call.tool,
            input=call.input,
            output=call.output,
            ok=call.ok,
            ms=round(call.seconds * 1000, 3),
            start=call.start,
            end=call.end,
        )


class Usage(_Response):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt: int, completion: int) -> Usage:
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class ResponseMessage(_Response):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(_Response):
    index: int
    message: ResponseMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: None = None
    tool_trace: list[TraceEntry] = []


class _Envelope(_Response):
    """The fields every completion-shaped response has, in this order (a subclass narrows `object` and `choices`;
    pydantic keeps a field's place when a subclass redeclares it, so the JSON keys keep OpenAI's order)."""

    id: str
    object: str
    created: int
    model: str
    choices: list[Any]
    usage: Usage | None = None


class ChatCompletion(_Envelope):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]
    usage: Usage


class DeltaFunction(_Response):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(_Response):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunction


class Delta(_Response):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChunkChoice(_Response):
    index: int
    delta: Delta
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None
    logprobs: None = None
    tool_trace: list[TraceEntry] | None = None


class ChatCompletionChunk(_Envelope):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChunkChoice]


class CompletionChoice(_Response):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None
    logprobs: None = None
    tool_trace: list[TraceEntry] | None = None


class Completion(_Envelope):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class ToolInfo(_Response):
    name: str
    description: str


class ModelCard(_Response):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "toolformer"
    backend: str
    tools: list[ToolInfo]


class ModelList(_Response):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(_Response):
    status: Literal["ok"] = "ok"
    model: str
    backend: str
    queued: int


class ErrorBody(_Response):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(_Response):
    error: ErrorBody


# What the OpenAPI docs list for the routes that answer in OpenAI's error shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 429, 504)
}
