"""`Toolformer`: a model, its tokenizer and its tools in one object, with `generate`, `ask` and `chat`.

How `ask` and `chat` prompt depends on the model (`model_prompt_style`): a trained Toolformer (its folder's
`toolformer.json` says `{"prompt": "zero-shot"}`: `toolformer-135m`, `toolformer train` output) gets the zero-shot
prompt it was trained with, under the header naming the loaded tools, and chats with inline calls; any other model
gets the few-shot prompt, which also names every loaded tool, and chats with JSON tool calls.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from toolformer.calls import Call
from toolformer.errors import ConfigError
from toolformer.runtime.decode import generate
from toolformer.runtime.prompts import STOP, few_shot_prompt, tools_header, zero_shot_prompt
from toolformer.runtime.results import CallTrace, DecodeConfig, Event, Generation
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


PROMPT_STYLES = ("few-shot", "zero-shot")


def model_prompt_style(model: Any) -> str:
    """How to prompt `model` (a model spec or path, or a loaded model; None for none): "zero-shot" when its
    `toolformer.json` holds `{"prompt": "zero-shot"}` (a trained Toolformer), else "few-shot"."""
    if model is None:
        return "few-shot"
    from toolformer.models.adapters import model_meta

    style = model_meta(model).get("prompt", "few-shot")
    if style not in PROMPT_STYLES:
        raise ConfigError(
            f"prompt={style!r} in the model's toolformer.json is not one of {', '.join(PROMPT_STYLES)}"
        )
    return str(style)


def answer_config(config: DecodeConfig) -> DecodeConfig:
    """`config` with the answer's stop strings (`prompts.STOP`) when it has none: how `ask` and an inline chat
    end a reply (at the next "Question:" or a blank line)."""
    return config if config.stop else replace(config, stop=list(STOP))


def _template_takes_tools(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None) or ""
    return isinstance(template, str) and "tools" in template


class Toolformer:
    """A causal LM that calls tools while it writes.

    >>> tf = Toolformer.load()                       # the embedded SmolLM2-135M and the five built-in tools
    >>> tf.ask("What is 23 times 47?").text          # ' 23 * 47 is [Calculator(23 * 47) → 1081] 1081.'
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        tools: ToolRegistry | None = None,
        name: str = "",
        prompt_style: str | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.tools = tools if tools is not None else load_tools(None)
        self.name = name or getattr(getattr(model, "config", None), "_name_or_path", "") or "model"
        if prompt_style is not None and prompt_style not in PROMPT_STYLES:
            raise ConfigError(f"prompt_style={prompt_style!r} is not one of {', '.join(PROMPT_STYLES)}")
        # "zero-shot" for a trained Toolformer, "few-shot" otherwise (see `model_prompt_style`).
        self.prompt_style = prompt_style or model_prompt_style(model)

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
        from toolformer.models.aliases import DEFAULT_MODEL
        from toolformer.models.load import load_model
        from toolformer.runtime.llamacpp import DEFAULT_CTX, choose_backend, load_llamacpp

        name = model or DEFAULT_MODEL
        if choose_backend(name, backend) == "llamacpp":
            if device != "cpu":
                raise ConfigError(f"device={device!r}: the llama.cpp backend runs on the CPU")
            lm = load_llamacpp(name, n_ctx=n_ctx or DEFAULT_CTX, n_threads=n_threads)
            style = model_prompt_style(name)
            return cls(lm, lm.tokenizer, load_tools(tools, **tool_options), name=name, prompt_style=style)
        lm, tok = load_model(name, device=device)
        style = model_prompt_style(name)
        return cls(lm, tok, load_tools(tools, **tool_options), name=name, prompt_style=style)

    @property
    def backend(self) -> str:
        """'llamacpp' for a llama.cpp model, else 'transformers'."""
        return getattr(self.model, "backend", "transformers")

    def generate(
        self,
        prompts: str | Sequence[str],
        config: DecodeConfig | None = None,
        on_event: Callable[[Event], None] | None = None,
        cancelled: Callable[[int], bool] | None = None,
    ) -> list[Generation]:
        """Continue each prompt, running tool calls inline (see `toolformer.runtime.decode.generate`).

        `cancelled(i)`, when given, is asked as prompt i decodes: once true, that prompt stops with finish_reason
        "cancelled" and the others go on (a server drops the rows of a client that went away).
        """
        batch = [prompts] if isinstance(prompts, str) else list(prompts)
        if self.backend == "llamacpp":
            from toolformer.runtime import llamacpp

            return llamacpp.generate(self.model, batch, self.tools, config, on_event, cancelled=cancelled)
        return generate(self.model, self.tokenizer, batch, self.tools, config, on_event, cancelled=cancelled)

    def ask(
        self,
        question: str,
        config: DecodeConfig | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> Generation:
        """Answer a question, prompted as the model expects (see `prompt`)."""
        return self.generate([self.prompt(question)], answer_config(config or DecodeConfig()), on_event)[0]

    def prompt(self, question: str) -> str:
        """The prompt `ask` sends: a trained Toolformer's zero-shot prompt under the header naming the loaded
        tools, or for any other model the few-shot prompt, which names them too (a user's tool with its examples)."""
        tools = list(self.tools.values())
        if self.prompt_style == "zero-shot":
            return zero_shot_prompt(question, tools)
        return few_shot_prompt(question, tools)

    def chat_prompt(self, messages: list[dict[str, Any]]) -> str:
        """A trained Toolformer's chat prompt: the system messages, the tools header, the earlier user and
        assistant turns as `Question:`/`Answer:` pairs, then the last user message as its zero-shot question."""
        system = [str(m.get("content") or "").strip() for m in messages if m.get("role") == "system"]
        turns = [m for m in messages if m.get("role") in ("user", "assistant")]
        last = max((i for i, m in enumerate(turns) if m["role"] == "user"), default=-1)
        if last == -1:
            raise ConfigError("messages hold no user message to answer")
        history: list[str] = []
        question = ""
        for m in turns[:last]:
            content = str(m.get("content") or "").strip()
            if m["role"] == "user":  # consecutive user messages read as one question
                question = f"{question}\n{content}" if question else content
            elif question:  # an answer to the question before it
                history.append(f"Question: {question}\nAnswer: {content}\n\n")
                question = ""
        tools = list(self.tools.values())
        head = "".join(f"{s}\n" for s in system if s) + (tools_header(tools) if tools else "")
        return head + "".join(history) + zero_shot_prompt(str(turns[last].get("content") or ""))

    def chats_inline(self, client_tools: Sequence[dict[str, Any]] | None = None) -> bool:
        """Whether `chat` answers with one inline-call generation on `chat_prompt` (a trained Toolformer, no
        client tools) rather than chat-template rounds with JSON tool calls."""
        return self.prompt_style == "zero-shot" and not client_tools

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

        A trained Toolformer (`prompt_style` "zero-shot") without client tools (`chats_inline`) answers the last
        user message through `chat_prompt` instead, calling tools inline as it was trained to (up to
        `config.max_calls`); its content is the generated text trimmed (call offsets index the generated text).
        """
        from toolformer.runtime.jsoncalls import parse_json_calls

        config = config or DecodeConfig(max_new_tokens=256)
        if self.chats_inline(client_tools):
            gen = self.generate([self.chat_prompt(messages)], answer_config(config), on_event)[0]
            content = gen.text.strip()
            convo = [dict(m) for m in messages] + [{"role": "assistant", "content": content}]
            return ChatResult(
                content, gen.calls, [], convo, gen.finish_reason, gen.prompt_tokens, gen.new_tokens
            )
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
