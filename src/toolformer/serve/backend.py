"""The seam between the server and a model: the `Backend` protocol (generate a batch with tools, streaming events).

The server calls only `backend.generate(prompts, config, on_event)`, from its one batching thread, and reads
`name`, `kind`, `tokenizer` (for the chat template), `tools`, `max_batch`, `context_length` and, when it has one,
`prompt_style` ("zero-shot" for a trained Toolformer, which then chats as `Toolformer.chat` does). A backend whose
`drops_rows` is true also gets `cancelled=fn`, `fn(row) -> bool`: it should stop decoding a row once that is true
(the row's client went away), so the rest of the batch goes on without it. A backend with `decoder(parallel)` (a
`runtime.continuous.SlotDecoder`, or None) is served with continuous batching (`serve.continuous`).
`ToolformerBackend` adapts a `Toolformer`, which already runs either decoder: transformers (`runtime.decode`,
every prompt of a batch in one forward pass per step) or llama.cpp (`runtime.llamacpp`, prompts one after another
on one context, so its static `max_batch` is 1; its `decoder()` batches many sequences, `runtime.llamaslots`).
Another engine (vLLM, a remote model) only has to provide the same attributes and method.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from toolformer.runtime.results import DecodeConfig, Event, Generation
from toolformer.tools import ToolRegistry


class Backend(Protocol):
    """What the server needs from a model."""

    name: str
    kind: str
    tokenizer: Any
    tools: ToolRegistry
    max_batch: int
    context_length: int | None  # tokens of prompt + reply the model takes; None: unchecked
    # Optional: when true, `generate` also takes `cancelled(row) -> bool` and stops decoding rows it flags.
    drops_rows: bool
    # Optional: "zero-shot" or "few-shot" (the default), as `Toolformer.prompt_style`.
    prompt_style: str

    def generate(
        self, prompts: Sequence[str], config: DecodeConfig, on_event: Callable[[Event], None] | None = None
    ) -> list[Generation]:
        """One `Generation` per prompt, tool calls executed inline; events carry `row` = the prompt's index."""
        ...


class ToolformerBackend:
    """A `Toolformer` (model, tokenizer, tools) as a server backend."""

    def __init__(self, tf: Any, max_batch: int = 16) -> None:
        self.tf = tf
        self.name: str = tf.name
        self.kind: str = getattr(tf, "backend", "transformers")
        self.tokenizer = tf.tokenizer
        self.tools: ToolRegistry = tf.tools
        self.max_batch = 1 if self.kind == "llamacpp" else max(1, max_batch)
        config = getattr(tf.model, "config", None)
        limit = getattr(tf.model, "n_ctx", None) or getattr(config, "max_position_embeddings", None)
        self.context_length: int | None = limit if isinstance(limit, int) else None
        # Both decoders stop single rows (`Toolformer.generate(..., cancelled=)`: transformers drops the row from
        # its batch, llama.cpp stops between tokens); an engine without that still has its batch stopped once
        # every request in it is gone.
        self.drops_rows = "cancelled" in inspect.signature(tf.generate).parameters
        # How the model is prompted (`runtime.engine.model_prompt_style`): a trained Toolformer chats zero-shot.
        self.prompt_style: str = getattr(tf, "prompt_style", "few-shot")

    def decoder(self, parallel: int = 32) -> Any:
        """A step-wise decoder of `parallel` rows for continuous batching (`runtime.continuous` on transformers,
        `runtime.llamaslots` on llama.cpp); None where the model has none (a stand-in engine)."""
        model = self.tf.model
        if self.kind == "llamacpp":
            if getattr(model, "backend", None) != "llamacpp":
                return None
            from toolformer.runtime.llamaslots import LlamaSlotDecoder

            return LlamaSlotDecoder(model, self.tf.tools, slots=parallel)
        if self.kind != "transformers" or not hasattr(model, "forward"):
            return None
        from toolformer.runtime.continuous import ContinuousDecoder

        return ContinuousDecoder(model, self.tf.tokenizer, self.tf.tools)

    def generate(
        self,
        prompts: Sequence[str],
        config: DecodeConfig,
        on_event: Callable[[Event], None] | None = None,
        cancelled: Callable[[int], bool] | None = None,
    ) -> list[Generation]:
        if cancelled is not None and self.drops_rows:
            return self.tf.generate(list(prompts), config, on_event, cancelled=cancelled)
        return self.tf.generate(list(prompts), config, on_event)


def load_backend(
    model: str | None = None,
    tools: str | Sequence[str] | None = None,
    backend: str = "auto",
    device: str = "cpu",
    max_batch: int = 16,
    **tool_options: Any,
) -> ToolformerBackend:
    """Load `model` (default: the embedded SmolLM2-135M-Instruct) and its tools.

    `backend`: 'transformers', 'llamacpp' (a GGUF file or built-in alias, needs llama-cpp-python) or 'auto'
    (llama.cpp for a .gguf path when llama-cpp-python is installed, else transformers).
    """
    from toolformer.runtime.engine import Toolformer

    tf = Toolformer.load(model, tools, device=device, backend=backend, **tool_options)
    return ToolformerBackend(tf, max_batch=max_batch)
