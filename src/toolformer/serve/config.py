"""`ServeConfig`: the server's limits and defaults, shared by `toolformer serve` and `create_app` (no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass, field

from toolformer.errors import ConfigError

API_KEY_ENV = "TOOLFORMER_API_KEY"
EXAMPLES_MODES = ("auto", "on", "off")
BATCHING_MODES = ("auto", "continuous", "static")


@dataclass
class ServeConfig:
    """How the server behaves. Every limit answers a client with an OpenAI-shaped 4xx, never a crash."""

    api_keys: list[str] = field(
        default_factory=list,
        metadata={
            "help": f"API keys clients must send as 'Authorization: Bearer KEY' (also ${API_KEY_ENV})."
        },
    )
    max_request_bytes: int = field(
        default=1 << 20, metadata={"help": "Largest request body accepted (413 above)."}
    )
    max_tokens_cap: int = field(
        default=1024, metadata={"help": "Largest max_tokens a request may ask for (400 above)."}
    )
    default_max_tokens: int = field(
        default=256, metadata={"help": "Tokens per reply when a chat request gives no max_tokens."}
    )
    max_concurrency_per_key: int = field(
        default=256, metadata={"help": "Requests one API key may have in flight at once (429 above)."}
    )
    request_timeout: float = field(
        default=600.0, metadata={"help": "Seconds a request may take before it is abandoned (504)."}
    )
    max_calls: int = field(default=2, metadata={"help": "Tool calls (and tool rounds) per reply by default."})
    max_calls_cap: int = field(
        default=8, metadata={"help": "Largest toolformer.max_calls a request may ask for."}
    )
    batching: str = field(
        default="auto",
        metadata={
            "help": "continuous: requests join the running decode at the next step and leave when done; "
            "static: a batch runs to its end before the next starts; auto: continuous on transformers, "
            "static on llama.cpp (one prompt at a time)."
        },
    )
    parallel: int = field(
        default=32,
        metadata={
            "help": "Slots: requests decoded at once with continuous batching (more wait in the queue). "
            "Each slot holds one row of the KV cache."
        },
    )
    max_batch: int = field(
        default=16,
        metadata={
            "help": "Prompts prefilled together in one forward pass as they join (continuous), or decoded "
            "together in one batch (static)."
        },
    )
    batch_wait_ms: float = field(
        default=5.0,
        metadata={"help": "Milliseconds the batcher waits for more requests before it starts a batch."},
    )
    examples: str = field(
        default="auto",
        metadata={
            "help": "Few-shot example turns that show the server's tools as inline calls: on, off, or auto "
            "(on when the chat template cannot take tools, as with the embedded model)."
        },
    )
    workers: int = field(
        default=512, metadata={"help": "Threads that run requests' chat loops (not the model)."}
    )

    def __post_init__(self) -> None:
        for name in (
            "max_request_bytes",
            "max_tokens_cap",
            "default_max_tokens",
            "max_concurrency_per_key",
            "max_batch",
            "parallel",
            "workers",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.request_timeout <= 0:
            raise ConfigError(f"request_timeout must be > 0 seconds, got {self.request_timeout}")
        if self.batch_wait_ms < 0:
            raise ConfigError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
        if not 0 <= self.max_calls <= self.max_calls_cap:
            raise ConfigError(
                f"max_calls must be in [0, max_calls_cap={self.max_calls_cap}], got {self.max_calls}"
            )
        if self.default_max_tokens > self.max_tokens_cap:
            raise ConfigError(
                f"default_max_tokens={self.default_max_tokens} is above max_tokens_cap={self.max_tokens_cap}"
            )
        if self.batching not in BATCHING_MODES:
            raise ConfigError(f"batching must be one of {', '.join(BATCHING_MODES)}, got {self.batching!r}")
        if self.examples not in EXAMPLES_MODES:
            raise ConfigError(f"examples must be one of {', '.join(EXAMPLES_MODES)}, got {self.examples!r}")
        self.api_keys = [k.strip() for k in self.api_keys if k and k.strip()]
