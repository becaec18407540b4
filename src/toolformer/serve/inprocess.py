"""`InProcessChat`: answer OpenAI chat requests on a backend in this process, through the server's own request path
(`session.chat_plan` and `session.run_chat`: tool schemas, `tool_choice`, grammars, JSON calls), without HTTP.

For evaluations of function calling (`toolformer eval --suite bfcl`) and scripts: what a request gets here is what
`POST /v1/chat/completions` would answer, the choice's content and `tool_calls` before they are put in JSON.
A request that the server would refuse with a 400 (an invalid body, a prompt longer than the model's context, a
schema the call grammar cannot hold) raises ConfigError with the server's message.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from toolformer.errors import ConfigError
from toolformer.serve.batcher import Batcher
from toolformer.serve.config import ServeConfig
from toolformer.serve.errors import ApiError
from toolformer.serve.schemas import ChatCompletionRequest
from toolformer.serve.session import Reply, chat_plan, run_chat


class InProcessChat:
    """A backend's chat endpoint as a function: `chat(request_dict) -> Reply`. Use it as a context manager (or call
    `close`): it runs the server's batching thread while open."""

    def __init__(self, backend: Any, serve: ServeConfig | None = None) -> None:
        self.backend = backend
        self.serve = serve or ServeConfig()
        self.batcher = Batcher(backend, wait_s=0.0)
        self.batcher.start()

    def __call__(self, request: dict[str, Any]) -> Reply:
        """Answer one chat request (the JSON body of `POST /v1/chat/completions`, as a dict; `model` may be left
        out); blocks until the reply is done. Streaming is not offered here."""
        try:
            body = ChatCompletionRequest.model_validate(
                {"model": self.backend.name, **request, "stream": False}
            )
            plan = chat_plan(body, self.serve, self.backend)
            return run_chat(plan, self.batcher)
        except ValidationError as exc:
            raise ConfigError(f"request is not a valid chat request: {exc.errors()[0]['msg']}") from None
        except ApiError as exc:
            raise ConfigError(exc.message) from None

    def close(self) -> None:
        self.batcher.stop()

    def __enter__(self) -> InProcessChat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_chat(model: str, device: str = "cpu", max_tokens: int = 1024) -> InProcessChat:
    """An in-process chat endpoint for `model` (alias, path, hub id or GGUF file) with no server tools: only the
    request's `tools` can be called, and the server's tools are not shown by example. Requests may ask for up to
    `max_tokens` tokens."""
    from toolformer.runtime.engine import Toolformer
    from toolformer.serve.backend import ToolformerBackend

    tf = Toolformer.load(model, tools=[], device=device)
    serve = ServeConfig(max_tokens_cap=max(max_tokens, 1024), examples="off")
    return InProcessChat(ToolformerBackend(tf, max_batch=1), serve)
