"""`Toolformer`: a model, its tokenizer and its tools in one object, with `generate`, `ask` and `chat`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from toolformer.calls import Call
from toolformer.errors import ConfigError
from toolformer.runtime.decode import CallTrace, DecodeConfig, Event, Generation, generate
from toolformer.runtime.prompts import STOP, build_prompt
from toolformer.tools import ToolRegistry, load_tools


@dataclass
class ChatResult:
    """The assistant's reply to a chat: its text, the calls the server ran, and calls left for the client."""

    content: str
    calls: list[CallTrace] = field(default_factory=list)
    tool_calls: list[Call] = field(default_factory=list)  # calls to tools the server does not have
    messages: list[dict[str, Any]] = field(default_factory=list)  # the conversation including tool turns
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _template_takes_tools(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None) or ""
    return isinstance(template, str) and "tools" in template


class Toolformer:
    """A causal LM that calls tools while it writes.

    >>> tf = Toolformer.load()                       # the embedded SmolLM2-135M and the five built-in tools
    >>> tf.ask("What is 23 times 47?").text          # ' 23 * 47 is [Calculator(23 * 47) → 1081] 1081.'
    """

    def __init__(self, model: Any, tokenizer: Any, tools: ToolRegistry | None = None, name: str = "") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.tools = tools if tools is not None else load_tools(None)
        self.name = name or getattr(getattr(model, "config", None), "_name_or_path", "") or "model"

    @classmethod
    def load(
        cls,
        model: str | None = None,
        tools: str | Sequence[str] | None = None,
        device: str = "cpu",
        backend: str = "auto",
        n_ctx: int | None = None,
        n_threads: int | None = None,
        **tool_options: Any,
    ) -> Toolformer:
        """Load a model by alias, path or hub id (default: the embedded SmolLM2-135M-Instruct) with its tools.

        `backend`: 'transformers', 'llamacpp' (a .gguf file or a built-in alias, run by llama-cpp-python) or
        'auto' (llama.cpp for a .gguf path when llama-cpp-python is installed, else transformers). `n_ctx` and
        `n_threads` apply to llama.cpp only.
        """
        from toolformer.models import DEFAULT_MODEL, load_model
        from toolformer.runtime.llamacpp import DEFAULT_CTX, choose_backend, load_llamacpp

        name = model or DEFAULT_MODEL
        if choose_backend(name, backend) == "llamacpp":
            if device != "cpu":
                raise ConfigError(f"device={device!r}: the llama.cpp backend runs on the CPU")
            lm = load_llamacpp(name, n_ctx=n_ctx or DEFAULT_CTX, n_threads=n_threads)
            return cls(lm, lm.tokenizer, load_tools(tools, **tool_options), name=name)
        lm, tok = load_model(name, device=device)
        return cls(lm, tok, load_tools(tools, **tool_options), name=name)

    @property
    def backend(self) -> str:
        """'llamacpp' for a llama.cpp model, else 'transformers'."""
        return getattr(self.model, "backend", "transformers")

    def generate(
        self,
        prompts: str | Sequence[str],
        config: DecodeConfig | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> list[Generation]:
        """Continue each prompt, running tool calls inline (see `toolformer.runtime.decode.generate`)."""
        batch = [prompts] if isinstance(prompts, str) else list(prompts)
        if self.backend == "llamacpp":
            from toolformer.runtime import llamacpp

            return llamacpp.generate(self.model, batch, self.tools, config, on_event)
        return generate(self.model, self.tokenizer, batch, self.tools, config, on_event)

    def ask(
        self,
        question: str,
        config: DecodeConfig | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> Generation:
        """Answer a question with the built-in few-shot prompt for the loaded tools."""
        config = config or DecodeConfig()
        if not config.stop:
            config = replace(config, stop=list(STOP))
        prompt = build_prompt(question, self.tools.names())
        return self.generate([prompt], config, on_event)[0]

    def chat(
        self,
        messages: list[dict[str, Any]],
        config: DecodeConfig | None = None,
        client_tools: list[dict[str, Any]] | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> ChatResult:
        """One assistant turn through the chat template, with OpenAI-style JSON tool calls.

        Calls to the server's tools run here and their results go back into the conversation (up to
        `config.max_calls` rounds); calls to `client_tools` (OpenAI `tools=[…]` entries) are returned unexecuted.
        Inline `[Tool(…) → …]` calls in the text also run, as in `generate`.
        """
        from toolformer.runtime.jsoncalls import parse_json_calls

        config = config or DecodeConfig(max_new_tokens=256)
        schemas = self.tools.openai_schemas() + list(client_tools or [])
        client_names = {t.get("function", t).get("name") for t in client_tools or []}
        convo = [dict(m) for m in messages]
        traces: list[CallTrace] = []
        prompt_tokens = completion_tokens = 0
        for _ in range(max(1, config.max_calls + 1)):
            prompt = self._render(convo, schemas)
            gen = self.generate([prompt], config, on_event)[0]
            prompt_tokens += gen.prompt_tokens
            completion_tokens += gen.new_tokens
            traces.extend(gen.calls)
            content, calls = parse_json_calls(gen.text)
            if not calls:
                convo.append({"role": "assistant", "content": content})
                return ChatResult(
                    content, traces, [], convo, gen.finish_reason, prompt_tokens, completion_tokens
                )
            calls = [
                c if c.id else Call(c.name, c.args, c.result, c.arguments, f"call_{uuid.uuid4().hex[:24]}")
                for c in calls
            ]
            convo.append(
                {"role": "assistant", "content": content, "tool_calls": [c.to_openai() for c in calls]}
            )
            if any(c.name in client_names for c in calls):
                return ChatResult(
                    content, traces, calls, convo, "tool_calls", prompt_tokens, completion_tokens
                )
            for c in calls:
                out = self.tools.run(c, config.tool_timeout)
                traces.append(CallTrace(c.name, c.input, out.text, out.ok, out.seconds, -1, -1))
                if on_event is not None:  # a streaming server shows JSON calls as they run, like inline ones
                    on_event(Event("call", 0, trace=traces[-1]))
                convo.append({"role": "tool", "tool_call_id": c.id, "name": c.name, "content": out.text})
        return ChatResult(content, traces, [], convo, "length", prompt_tokens, completion_tokens)

    def _render(self, messages: list[dict[str, Any]], schemas: list[dict[str, Any]]) -> str:
        """Apply the chat template, describing the tools in the system prompt if the template cannot."""
        from toolformer.runtime.jsoncalls import render_tools_prompt

        tok = self.tokenizer
        msgs = [dict(m) for m in messages]
        for m in msgs:  # templates without tool support still need to show tool turns as text
            if m.get("tool_calls") and not _template_takes_tools(tok):
                calls = "".join(
                    f"<tool_call>{json.dumps({'name': c['function']['name'], 'arguments': json.loads(c['function']['arguments'] or '{}')})}</tool_call>"
                    for c in m["tool_calls"]
                )
                m["content"] = (m.get("content") or "") + calls
                m.pop("tool_calls")
            if m.get("role") == "tool" and not _template_takes_tools(tok):
                m["role"] = "user"
                m["content"] = f"<tool_response>{m.get('content', '')}</tool_response>"
        if not getattr(tok, "chat_template", None):
            text = "".join(f"{m['role']}: {m.get('content') or ''}\n" for m in msgs)
            return text + "assistant:"
        if schemas and _template_takes_tools(tok):
            return tok.apply_chat_template(msgs, tools=schemas, tokenize=False, add_generation_prompt=True)
        if schemas:
            block = render_tools_prompt(schemas)
            if msgs and msgs[0].get("role") == "system":
                msgs[0]["content"] = f"{msgs[0].get('content') or ''}\n\n{block}".strip()
            else:
                msgs.insert(0, {"role": "system", "content": block})
        return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
