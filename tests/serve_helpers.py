"""Helpers for the server tests: a backend over the scripted fake LM, a real uvicorn server on a free port."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fakes import Script, ScriptedLM
from toolformer.runtime.engine import Toolformer
from toolformer.serve.backend import ToolformerBackend
from toolformer.serve.session import REQUIRED_PREFILL
from toolformer.tools import load_tools

_TURN = re.compile(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>", re.DOTALL)


def turns(prompt: str) -> list[tuple[str, str]]:
    """(role, content) of every turn in a ChatML prompt (the SmolLM2 template)."""
    return [(m.group(1), m.group(2)) for m in _TURN.finditer(prompt)]


def last_user(prompt: str) -> str:
    users = [content for role, content in turns(prompt) if role == "user"]
    return users[-1] if users else prompt


def scripted_backend(
    tokenizer: Any,
    choose: Callable[[str], Script],
    tools: str = "Calculator,Calendar",
    name: str = "fake-model",
) -> ToolformerBackend:
    """A backend whose model follows `choose(prompt)`, with real tools and the real decoder."""
    model = ScriptedLM(tokenizer, choose)
    return ToolformerBackend(Toolformer(model, tokenizer, load_tools(tools), name=name))


def wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Whether `predicate()` came true within `seconds` (polled every 10 ms)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


# Scripts shared by the server tests

MODEL = "fake-model"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
PING = {"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}}


def ran(entry: dict[str, Any]) -> tuple[str, str, str, bool]:
    """(tool, input, output, ok) of a choice's `tool_trace` entry."""
    return entry["tool"], entry["input"], entry["output"], entry["ok"]


def _call(name: str, args: dict[str, Any]) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': args})}\n</tool_call>"


def choose(prompt: str) -> Any:
    """The scripted model's answers, by what the prompt asks."""
    if prompt.endswith(REQUIRED_PREFILL):
        return 'get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    if prompt.endswith('"arguments": '):
        return '{"city": "Oslo"}}\n</tool_call>'
    q = last_user(prompt)
    if q.startswith("<tool_response>"):
        return f"The tool said {q[len('<tool_response>') : -len('</tool_response>')]}."
    if "23 times 47" in q:
        return ["23 times 47 is [Calculator(23 * 47)", " 1081."]
    if "divide by zero" in q:
        return ["It is [Calculator(1 / 0)", " undefined."]
    if "two cities" in q:
        return (
            "Checking both.\n"
            + _call("get_weather", {"city": "Paris"})
            + _call("get_weather", {"city": "Rome"})
        )
    if "weather" in q:
        return _call("get_weather", {"city": "Paris"})
    if "ping" in q:
        return _call("ping", {})
    if "add on the server" in q:
        return "Let me add.\n" + _call("Calculator", {"expression": "2 + 3"})
    if "count" in q:
        return " ".join(str(i) for i in range(1, 40))
    if "stop words" in q:
        return "one two\n\nthree four"
    if "Q:" in prompt:  # a raw completion prompt
        return [" 23 * 47 = [Calculator(23 * 47)", " 1081", "\nQ: next"]
    return "Hello there."
