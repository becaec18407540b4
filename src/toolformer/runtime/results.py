"""What decoding takes and returns, the same for both backends: `DecodeConfig` in; `Generation`s, with their
`CallTrace`s, out; `Event`s streamed on the way."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from toolformer.calls import Call
from toolformer.errors import ConfigError


@dataclass
class DecodeConfig:
    """How to decode. The same object feeds the CLI, the server and the run logs."""

    max_new_tokens: int = field(
        default=128, metadata={"help": "Tokens the model may sample (tool results are extra)."}
    )
    max_calls: int = field(
        default=1, metadata={"help": "Tool calls allowed per generation (paper's evals: 1)."}
    )
    trigger_top_k: int = field(
        default=0,
        metadata={
            "help": "Start a call whenever '[' is among the top-k next tokens (paper's evals: 10; 0 = off)."
        },
    )
    disabled: bool = field(
        default=False, metadata={"help": "Never call tools: p('[') = 0 (the paper's ablation)."}
    )
    force_arrow: bool = field(
        default=True,
        metadata={
            "help": "Run the tool as soon as a call's ')' is written, adding ' →' if the model does not."
        },
    )
    do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy decoding."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (with do_sample)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (with do_sample)."})
    seed: int | None = field(default=None, metadata={"help": "Random seed for sampling."})
    stop: list[str] = field(
        default_factory=list, metadata={"help": "Stop when one of these strings is written."}
    )
    tool_timeout: float | None = field(
        default=None, metadata={"help": "Seconds per tool call (default: the tool's)."}
    )
    autocast_bf16: bool = field(default=False, metadata={"help": "Run forward passes under bf16 autocast."})
    grammar: Any = field(
        default=None,
        metadata={"help": "A `runtime.grammar.CallGrammar` holding JSON tool calls (the server sets it)."},
    )

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.max_calls < 0:
            raise ConfigError(f"max_calls must be >= 0, got {self.max_calls}")
        if self.trigger_top_k < 0:
            raise ConfigError(f"trigger_top_k must be >= 0, got {self.trigger_top_k}")
        if self.do_sample and self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class CallTrace:
    """One executed call: what the model asked, what the tool said, how long it took, where it sits in the text."""

    tool: str
    input: str
    output: str
    ok: bool
    seconds: float
    start: int  # character offset of "[" in the generated text
    end: int  # character offset just after "]"

    @property
    def call(self) -> Call:
        return Call(self.tool, self.input, self.output)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Event:
    """A streaming event: `text` (new generated text), `call` (a call finished) or `done` (the row finished)."""

    kind: str
    row: int
    text: str = ""
    trace: CallTrace | None = None
    finish_reason: str | None = None


@dataclass
class Generation:
    """The result for one prompt."""

    prompt: str
    text: str
    calls: list[CallTrace]
    finish_reason: str  # "stop" (eos or stop string), "length", or "cancelled" (`cancelled(row)` said so)
    new_tokens: int  # tokens the model sampled
    forced_tokens: int  # tool-result tokens the model was made to read
    prompt_tokens: int
    seconds: float
    token_ids: list[int] = field(default_factory=list, repr=False)  # generated and forced ids, as fed

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["calls"] = [c.to_dict() for c in self.calls]
        return out
