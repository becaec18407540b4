"""Run one API request on a backend: turn it into a plan (messages, tools, decoding), run `Toolformer.chat` with its
generations going through the batcher, and stream settled deltas while it runs.

Conversions happen here, at the boundary: OpenAI messages and `tool_calls` (arguments as JSON strings) become the
runtime's dicts and `Call`s, and back. Tool choice: `none` decodes with calls disabled, no tools shown and no
`<tool_call>` able to open; `auto` shows the client's tools (JSON `<tool_call>` convention) and lets server tools run;
`required` and a named function start the reply with the opening of a `<tool_call>` (a prefill). Every JSON call is
held to the request's functions by a grammar (`runtime.grammar`, llguidance): once a `<tool_call>` opens, and for
`required`/named from the reply's first token, only a call naming one of them with arguments that satisfy its schema
can be written; `parallel_tool_calls=false` allows one block.
With `examples` on, the server's tools are shown as few-shot inline-call turns instead of JSON schemas: small models
that were not trained on JSON tool calls (the embedded SmolLM2-135M) copy `[Calculator(23 * 47)]` reliably.
A trained Toolformer (the backend's `prompt_style` "zero-shot") answers a request without client tools as
`Toolformer.chat` does: one generation on its zero-shot chat prompt (tools header, earlier turns as
Question/Answer pairs), calls inline; with `none` the header stays and "[" is masked, as in the paper's ablation.
Client tools, `required` and a named function keep the JSON convention (they need a JSON call or its prefill).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from toolformer.calls import Call, CallSyntaxError
from toolformer.errors import ConfigError
from toolformer.runtime.engine import Toolformer, _template_takes_tools, answer_config
from toolformer.runtime.grammar import CallGrammar, call_grammar, grammar_available
from toolformer.runtime.jsoncalls import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from toolformer.runtime.prompts import EXAMPLES, HEADER
from toolformer.runtime.results import CallTrace, DecodeConfig, Event, Generation
from toolformer.serve.batcher import Batcher, Cancelled
from toolformer.serve.config import ServeConfig
from toolformer.serve.errors import ApiError
from toolformer.serve.schemas import ChatCompletionRequest, ChatMessage, CompletionRequest
from toolformer.serve.stream import ReplyStream, join_rounds, tidy

REQUIRED_PREFILL = '<tool_call>\n{"name": "'

Sink = Callable[[str, Any], None]  # ("content", str) | ("trace", CallTrace), called from worker threads


@dataclass
class ChatPlan:
    """What a chat request asks for, validated and in the runtime's terms."""

    messages: list[dict[str, Any]]
    config: DecodeConfig
    client_tools: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "auto"  # none | auto | required | named
    named: str | None = None
    parallel: bool = True
    examples: bool = False

    @property
    def client_names(self) -> set[str]:
        return {t["function"]["name"] for t in self.client_tools}

    @property
    def prefill(self) -> str:
        if self.mode == "named":
            return f'<tool_call>\n{{"name": {json.dumps(self.named)}, "arguments": '
        return REQUIRED_PREFILL if self.mode == "required" else ""

    def grammars(
        self, server_tools: Sequence[dict[str, Any]]
    ) -> tuple[CallGrammar | None, CallGrammar | None]:
        """The grammars JSON calls are held to: in the reply's first round (forced for `required`/named, after the
        prefill) and in later rounds (after server tools ran: auto). None where llguidance is not installed."""
        if self.mode == "none":
            none = call_grammar([], "none")
            return none, none
        if not grammar_available():
            return None, None
        names = self.client_names
        tools = [*self.client_tools, *(t for t in server_tools if t["function"]["name"] not in names)]
        if not tools:  # nothing to call (and no prefill: `required` and named need a tool)
            return None, None
        later = call_grammar(tools, "auto", self.parallel)
        if self.mode == "named":
            tools = [t for t in tools if t["function"]["name"] == self.named]
        if self.prefill:
            return call_grammar(tools, "forced", self.parallel, self.prefill), later
        return later, later


@dataclass
class Reply:
    """One choice of a response, before it is put in OpenAI's shape."""

    content: str
    finish_reason: str
    trace: list[CallTrace] = field(default_factory=list)
    tool_calls: list[Call] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0


# ---------------------------------------------------------------------------------------------------------------
# Requests to plans


def decode_config(
    req: ChatCompletionRequest | CompletionRequest, serve: ServeConfig, default_tokens: int
) -> DecodeConfig:
    """Sampling fields to a DecodeConfig. No temperature means greedy; temperature 0 is greedy too."""
    if req.n != 1:
        raise ApiError(400, f"n={req.n} is not supported: only n=1", param="n", code="unsupported_value")
    if req.logprobs:
        raise ApiError(400, "logprobs are not supported", param="logprobs", code="unsupported_value")
    asked = getattr(req, "max_completion_tokens", None) or req.max_tokens
    param = "max_completion_tokens" if getattr(req, "max_completion_tokens", None) else "max_tokens"
    if asked is not None and asked > serve.max_tokens_cap:
        raise ApiError(
            400,
            f"{param}={asked} is above this server's cap of {serve.max_tokens_cap}",
            param=param,
            code="too_many_tokens",
        )
    stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stops) > 4 or any(not s for s in stops):
        raise ApiError(400, f"stop must be up to 4 non-empty strings, got {req.stop!r}", param="stop")
    opts = req.toolformer
    max_calls = serve.max_calls if opts is None or opts.max_calls is None else opts.max_calls
    if max_calls > serve.max_calls_cap:
        raise ApiError(
            400,
            f"toolformer.max_calls={max_calls} is above the cap of {serve.max_calls_cap}",
            param="toolformer.max_calls",
        )
    sample = bool(req.temperature) or (req.top_p is not None and req.top_p < 1)
    try:
        return DecodeConfig(
            max_new_tokens=asked or default_tokens,
            max_calls=max_calls,
            do_sample=sample,
            temperature=req.temperature if req.temperature else 1.0,
            top_p=req.top_p if req.top_p is not None else 1.0,
            seed=req.seed,
            stop=stops,
        )
    except ConfigError as exc:
        raise ApiError(400, str(exc)) from exc


def _text_content(msg: ChatMessage, i: int) -> str:
    if msg.content is None or isinstance(msg.content, str):
        return msg.content or ""
    parts = []
    for part in msg.content:
        if part.type != "text" or part.text is None:
            raise ApiError(
                400,
                f"messages[{i}]: content parts of type {part.type!r} are not supported, only text",
                param=f"messages[{i}].content",
            )
        parts.append(part.text)
    return "".join(parts)


def convert_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    """OpenAI messages to the runtime's dicts; tool-call arguments are checked and re-serialised."""
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        item: dict[str, Any] = {
            "role": "system" if msg.role == "developer" else msg.role,
            "content": _text_content(msg, i),
        }
        if msg.tool_calls:
            if msg.role != "assistant":
                raise ApiError(
                    400,
                    f"messages[{i}]: only assistant messages carry tool_calls",
                    param=f"messages[{i}].tool_calls",
                )
            calls = []
            for j, tc in enumerate(msg.tool_calls):
                try:
                    calls.append(Call.from_openai(tc.model_dump()).to_openai())
                except CallSyntaxError as exc:
                    raise ApiError(
                        400, str(exc), param=f"messages[{i}].tool_calls[{j}].function.arguments"
                    ) from exc
            item["tool_calls"] = calls
        if msg.role == "tool":
            item["tool_call_id"] = msg.tool_call_id or ""
        if msg.name:
            item["name"] = msg.name
        out.append(item)
    return out


def last_user_text(messages: Sequence[dict[str, Any]]) -> str:
    """The last user message's text (what a chat request asks now, as the run log records it), else ""."""
    return next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")


def chat_plan(req: ChatCompletionRequest, serve: ServeConfig, backend: Any) -> ChatPlan:
    """Validate a chat request against the server and the backend's tools."""
    config = decode_config(req, serve, serve.default_max_tokens)
    tools = [t.model_dump(exclude_none=True) for t in req.tools or []]
    names = [t["function"]["name"] for t in tools]
    if len(set(names)) != len(names):
        raise ApiError(400, f"tools: function names must be unique, got {names}", param="tools")
    choice = req.tool_choice
    mode, named = (
        ("auto", None)
        if choice is None
        else (choice, None)
        if isinstance(choice, str)
        else ("named", choice.function.name)
    )
    if mode == "named" and named not in names and named not in backend.tools:
        raise ApiError(400, f"tool_choice names {named!r}, which is not in tools", param="tool_choice")
    if mode == "required" and not tools and not len(backend.tools):
        raise ApiError(400, "tool_choice 'required' needs tools", param="tool_choice")
    if mode == "none":
        config = dataclasses.replace(config, disabled=True)
        tools = []
    opts = req.toolformer
    if opts is not None and opts.examples is not None:
        examples = opts.examples
    elif serve.examples == "auto":
        examples = not _template_takes_tools(backend.tokenizer)
    else:
        examples = serve.examples == "on"
    return ChatPlan(
        messages=convert_messages(req.messages),
        config=config,
        client_tools=tools,
        mode=mode,
        named=named,
        parallel=req.parallel_tool_calls,
        examples=examples and mode != "none",
    )


# ---------------------------------------------------------------------------------------------------------------
# Few-shot example turns


def example_turns(tool_names: Sequence[str]) -> list[dict[str, Any]]:
    """User/assistant turns showing inline calls to `tool_names`, round-robin over the tools, so the last shown is
    not always the same tool's (SmolLM2-135M copies the tool of the nearest example)."""
    queues = [list(EXAMPLES[n]) for n in reversed(list(tool_names)) if n in EXAMPLES]
    turns: list[dict[str, Any]] = []
    while any(queues):
        for q in queues:
            if q:
                question, answer = q.pop(0)
                turns += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return turns


def with_examples(messages: list[dict[str, Any]], tool_names: Sequence[str]) -> list[dict[str, Any]]:
    """The conversation behind a system prompt (the user's, then the inline-call header) and example turns."""
    turns = example_turns(tool_names)
    if not turns:
        return messages
    system, rest = HEADER, messages
    if messages and messages[0].get("role") == "system":
        system, rest = f"{messages[0].get('content') or ''}\n\n{HEADER}".strip(), messages[1:]
    return [{"role": "system", "content": system}, *turns, *rest]


# ---------------------------------------------------------------------------------------------------------------
# Running


class _Streamer:
    """Feeds a ReplyStream from decoding events and hands settled deltas and traces to the sink."""

    def __init__(self, sink: Sink, stops: Sequence[str], json_calls: bool, trim: bool = False) -> None:
        self.sink = sink
        self.reply = ReplyStream(stops, json_calls, trim)

    def on_event(self, event: Event) -> None:
        if event.kind == "text":
            self._send(self.reply.feed(event.text))
        elif event.kind == "call" and event.trace is not None:
            self.sink("trace", event.trace)

    def end_round(self, text: str) -> None:
        self._send(self.reply.end_round(text))

    def finish(self, content: str) -> None:
        self._send(self.reply.finish(content))

    def _send(self, delta: str) -> None:
        if delta:
            self.sink("content", delta)


class _Engine(Toolformer):
    """`Toolformer` for one request: generations go through the shared batcher, one prompt at a time."""

    def __init__(
        self,
        batcher: Batcher,
        plan: ChatPlan | None,
        streamer: _Streamer | None,
        cancelled: Callable[[], bool],
    ) -> None:
        backend = batcher.backend
        # The backend's prompt style: a trained Toolformer chats zero-shot here as in `Toolformer.chat`.
        style = getattr(backend, "prompt_style", None)
        super().__init__(None, backend.tokenizer, backend.tools, name=backend.name, prompt_style=style)
        self.context_length: int | None = getattr(backend, "context_length", None)
        self.batcher = batcher
        self.plan = plan
        self.streamer = streamer
        self.cancelled = cancelled
        self._prefill = plan.prefill if plan is not None else ""
        # The first round's grammar (forced after a prefill), then the later rounds'.
        self.grammars = plan.grammars(backend.tools.openai_schemas()) if plan is not None else (None, None)

    def generate(
        self,
        prompts: str | Sequence[str],
        config: DecodeConfig | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> list[Generation]:
        batch = [prompts] if isinstance(prompts, str) else list(prompts)
        return [self._one(p, config or DecodeConfig(), on_event) for p in batch]

    def _one(self, prompt: str, config: DecodeConfig, on_event: Callable[[Event], None] | None) -> Generation:
        if self.cancelled():
            raise Cancelled("the request was cancelled")
        prefill, self._prefill = self._prefill, ""  # only the first round of a reply is prefilled
        first, later = self.grammars
        grammar = first if prefill else later
        if grammar is not None:
            config = dataclasses.replace(config, grammar=grammar)
        if self.context_length:
            n = len(self.tokenizer.encode(prompt + prefill, add_special_tokens=False))
            if n + config.max_new_tokens > self.context_length:
                raise ApiError(
                    400,
                    f"the prompt is {n} tokens and max_tokens is {config.max_new_tokens}: more than the model's "
                    f"context of {self.context_length} tokens",
                    code="context_length_exceeded",
                )
        if prefill and on_event is not None:
            on_event(Event("text", 0, prefill))
        gen = self.batcher.submit(prompt + prefill, config, on_event, self.cancelled).result()
        if prefill:
            shifted = [
                dataclasses.replace(c, start=c.start + len(prefill), end=c.end + len(prefill))
                for c in gen.calls
            ]
            gen = dataclasses.replace(gen, text=prefill + gen.text, calls=shifted)
        if self.streamer is not None:
            self.streamer.end_round(gen.text)
        return gen

    def chats_inline(self, client_tools: Sequence[dict[str, Any]] | None = None) -> bool:
        # A forced call (tool_choice required or named) is a JSON-call prefill: the JSON path, whatever the model.
        forced = self.plan is not None and bool(self.plan.prefill)
        return super().chats_inline(client_tools) and not forced

    def _render(self, messages: list[dict[str, Any]], schemas: list[dict[str, Any]]) -> str:
        plan = self.plan
        if plan is not None and plan.examples:
            # The server's tools are shown by example instead; their JSON schemas would double the prompt.
            schemas = [s for s in schemas if s.get("function", s).get("name") in plan.client_names]
            messages = with_examples(messages, self.tools.names())
        return super()._render(messages, schemas)


def run_chat(
    plan: ChatPlan, batcher: Batcher, sink: Sink | None = None, cancelled: Callable[[], bool] = lambda: False
) -> Reply:
    """Run one chat reply on `batcher`'s backend (blocking: call it from a worker thread). `sink` gets settled
    deltas and traces."""
    engine = _Engine(batcher, plan, None, cancelled)
    inline = engine.chats_inline(plan.client_tools)  # one generation, as `Toolformer.chat` answers
    if inline and plan.mode != "none":
        engine.grammars = (None, None)  # inline calls only: no JSON call is read from the reply
    config = answer_config(plan.config) if inline else plan.config  # the stream must know the stop strings
    streamer = None
    if sink is not None:
        streamer = _Streamer(sink, config.stop, json_calls=not inline and plan.mode != "none", trim=inline)
    engine.streamer = streamer
    on_event = streamer.on_event if streamer is not None else None
    if plan.mode == "none" and not inline:
        gen = engine.generate([engine._render(plan.messages, [])], config, on_event)[0]
        reply = Reply(gen.text, gen.finish_reason, gen.calls, [], gen.prompt_tokens, gen.new_tokens)
    else:
        result = engine.chat(plan.messages, config, plan.client_tools or None, on_event)
        added = result.messages[len(plan.messages) :]
        content = join_rounds([tidy(m.get("content") or "") for m in added if m.get("role") == "assistant"])
        cut = content.rfind(TOOL_CALL_OPEN)
        if plan.prefill and cut != -1 and TOOL_CALL_CLOSE not in content[cut:]:
            content = content[:cut].rstrip()  # a forced call the budget cut short is no content either
        calls = [c for c in result.tool_calls if c.name in plan.client_names]
        if not plan.parallel:
            calls = calls[:1]
        finish = (
            "tool_calls"
            if calls
            else ("stop" if result.finish_reason == "tool_calls" else result.finish_reason)
        )
        reply = Reply(content, finish, result.calls, calls, result.prompt_tokens, result.completion_tokens)
    if streamer is not None:
        streamer.finish(reply.content)
    return reply


def run_completion(
    prompt: str,
    config: DecodeConfig,
    batcher: Batcher,
    sink: Sink | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> Reply:
    """Continue a raw prompt on `batcher`'s backend, with inline tool calls (blocking: call it from a worker
    thread)."""
    streamer = _Streamer(sink, config.stop, json_calls=False) if sink is not None else None
    engine = _Engine(batcher, None, streamer, cancelled)
    gen = engine.generate([prompt], config, streamer.on_event if streamer is not None else None)[0]
    if streamer is not None:
        streamer.finish(gen.text)
    return Reply(gen.text, gen.finish_reason, gen.calls, [], gen.prompt_tokens, gen.new_tokens)
