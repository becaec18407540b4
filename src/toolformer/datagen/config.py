"""`AnnotateConfig` and `SampleConfig`: every option of `toolformer annotate` and of the LM proposer's sampling.

Cheap to import (no torch): the CLI reads the help texts and defaults at import time, and the manifest stores
`AnnotateConfig` field by field, in this order. `SampleConfig` holds the paper's per-tool sampling settings (§2 and
App. A: τ_s, k, m), `PAPER_DEFAULTS`/`paper_config` give them per tool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

from toolformer.configs import field_default, field_help, option
from toolformer.datagen.filter import PAPER_TAU_F_PER_TOOL, FilterConfig
from toolformer.errors import ConfigError

PROPOSERS = ("rule", "data", "lm")
BACKENDS = ("local", "ray")
SAMPLE_BACKENDS = ("transformers", "vllm")

_opt = option


@dataclass
class AnnotateConfig:
    """Every option of an annotation run. The CLI's options are these fields; the manifest stores them."""

    input: str = _opt(
        "", "Input: a JSONL/JSON/Parquet/text file or folder, a `datasets` folder, or a Hub id."
    )
    out: str = _opt(
        "augmented", "Output folder for shards, records and the manifest (shared by all workers)."
    )
    format: str = _opt(
        "auto",
        "Input format: auto (by suffix), jsonl, json, gsm8k (GSM8K JSONL: question + solution with <<calc>> "
        "annotations, for --proposer data), gsm8k-answer (the same records as short 'Question: …\\nAnswer: 72' texts "
        "with one call composed from the whole solution before the answer), text, parquet, hf (`datasets` folder "
        "or Hub id).",
    )
    text_field: str = _opt("text", "Field holding the text; a dotted path reaches into objects (meta.body).")
    id_field: str = _opt("id", "Field holding the document id; rows without it get <file>:<line>.")
    text_unit: str = _opt(
        "paragraph", "Plain text input: one document per blank-line paragraph, or per file."
    )
    hf_split: str = _opt("train", "Split to read from a `datasets` DatasetDict or Hub data set.")
    tools: str = _opt(
        "Calculator,Calendar,WikiSearch,QA",
        "Tools, comma-separated: built-in names (Calculator,Calendar,WikiSearch,QA,MT), module:function or mcp:CMD.",
    )
    proposer: str = _opt(
        "rule",
        "Who proposes candidate calls: rule (pattern rules), data (calls already in the data, --format gsm8k), "
        "lm (sampled from the model with the paper's prompts P(x)), your own module:function (propose(text) -> "
        "[(position, tool, args), ...], see toolformer.datagen.proposers.user), or several, comma-separated "
        "(rule,lm).",
    )
    model: str = _opt(
        "smollm2-135m-instruct",
        "Model M that scores the calls (and samples them with lm): alias, GGUF, folder.",
    )
    tau_f: float = _opt(1.0, "Keep a call if L⁻ − L⁺ ≥ tau_f (paper: 1.0).")
    tau_f_tool: dict[str, float] = field(
        default_factory=lambda: dict(PAPER_TAU_F_PER_TOOL),
        metadata={"help": "Per-tool tau_f, TOOL=VALUE, repeatable; default Calculator=0.5 MT=0.5 (paper)."},
    )
    horizon: int = _opt(5, "Tokens after a call whose loss counts (weights 1 − t/horizon, paper: 5).")
    limit: int | None = _opt(None, "Read only the first N input rows (all workers: the same N rows).")
    shard_size: int = _opt(64, "Documents per output shard; each shard is written once it is finished.")
    num_shards: int = _opt(1, "Workers splitting the input by hash(id) % num_shards (one folder for all).")
    shard_id: int = _opt(0, "This worker's number, 0 ≤ shard_id < num_shards.")
    backend: str = _opt(
        "local", "local (this process) or ray (Ray Data actors; pip install 'toolformer-kit[scale]')."
    )
    device: str = _opt("cpu", "Torch device of the model: cpu, cuda, cuda:1, mps.")
    autocast_bf16: bool | None = _opt(
        None, "Score under bfloat16 autocast; default: on for CUDA, off otherwise."
    )
    max_batch_tokens: int = _opt(4096, "Scoring batch budget: rows × longest row, in tokens.")
    batch_docs: int = _opt(8, "Documents scored together (the progress bar moves per batch).")
    max_chars: int = _opt(
        4000, "Texts longer than this many characters are skipped as bad rows (0: no limit)."
    )
    dev_fraction: float = _opt(0.05, "Fraction of documents (by hash of id) whose rows get split=dev.")
    seed: int = _opt(0, "Seed of the train/dev split hash and of LM sampling.")
    workers: int = _opt(4, "Threads running tool calls.")
    exclude_self_from_search: bool = _opt(
        True,
        "WikiSearch and QA leave out the annotated document's own passage (same id, or text that overlaps it), "
        "so a corpus that is also the search corpus does not get calls that just copy the text.",
    )
    sample_backend: str = _opt(
        "transformers",
        "Engine sampling the calls of --proposer lm: transformers, or vllm (GPU; pip install "
        "'toolformer-kit[gpu]'). The p_i scoring pass always uses transformers.",
    )
    tool_cache: str | None = _opt(
        None, "SQLite file caching tool results across runs (default: memory only)."
    )
    ray_address: str | None = _opt(
        None, "Ray cluster address for --backend ray (default: local or RAY_ADDRESS)."
    )
    ray_actors: int = _opt(2, "Ray actors (model copies) for --backend ray.")

    def check(self) -> None:
        """Raise ConfigError naming the first bad field and its value."""
        if not str(self.input).strip():
            raise ConfigError("input='' : give an input file, folder or data set")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend={self.backend!r} is not one of {', '.join(BACKENDS)}")
        for name in self.proposer_names():
            if ":" in name:  # the user's module:attr; resolved now so a bad one fails before any model loads
                from toolformer.datagen.proposers.user import load_proposer

                load_proposer(name)
            elif name not in PROPOSERS:
                raise ConfigError(
                    f"proposer={self.proposer!r}: {name!r} is not one of {', '.join(PROPOSERS)} or module:function"
                )
        if self.sample_backend not in SAMPLE_BACKENDS:
            raise ConfigError(
                f"sample_backend={self.sample_backend!r} is not one of {', '.join(SAMPLE_BACKENDS)}"
            )
        if not self.proposer_names():
            raise ConfigError(f"proposer={self.proposer!r} names no proposer")
        if not [t for t in self.tools.split(",") if t.strip()]:
            raise ConfigError(f"tools={self.tools!r} names no tool")
        positive = {"shard_size": self.shard_size, "num_shards": self.num_shards, "horizon": self.horizon}
        positive |= {
            "batch_docs": self.batch_docs,
            "workers": self.workers,
            "max_batch_tokens": self.max_batch_tokens,
        }
        positive |= {"ray_actors": self.ray_actors}
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be an integer >= 1")
        if not (isinstance(self.shard_id, int) and 0 <= self.shard_id < self.num_shards):
            raise ConfigError(f"shard_id={self.shard_id!r} must be in 0..{self.num_shards - 1} (num_shards)")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 0):
            raise ConfigError(f"limit={self.limit!r} must be a non-negative integer")
        if not isinstance(self.max_chars, int) or self.max_chars < 0:
            raise ConfigError(f"max_chars={self.max_chars!r} must be a non-negative integer")
        if not 0.0 <= self.dev_fraction < 1.0:
            raise ConfigError(f"dev_fraction={self.dev_fraction!r} must be in [0, 1)")
        for tool, tau in self.tau_f_tool.items():
            if not isinstance(tau, (int, float)) or isinstance(tau, bool):
                raise ConfigError(f"tau_f_tool[{tool!r}]={tau!r} must be a number")

    def proposer_names(self) -> list[str]:
        """The `proposer` items: built-in names lower-cased, the user's `module:attr` specs as written."""
        items = [p.strip() for p in self.proposer.split(",") if p.strip()]
        return [p if ":" in p else p.lower() for p in items]

    def tool_names(self) -> list[str]:
        return [t.strip() for t in self.tools.split(",") if t.strip()]

    def filter_config(self) -> FilterConfig:
        bf16 = self.device.startswith("cuda") if self.autocast_bf16 is None else self.autocast_bf16
        return FilterConfig(
            tau_f=self.tau_f,
            tau_f_per_tool=dict(self.tau_f_tool),
            horizon=self.horizon,
            max_batch_tokens=self.max_batch_tokens,
            autocast_bf16=bf16,
            device=self.device,
        )

    help = classmethod(field_help)
    default = classmethod(field_default)


# Fields that change only speed or where results go, not what a chunk contains: a rerun may change them.
NOT_COMPARED = frozenset(
    {
        "out", "limit", "backend", "device", "autocast_bf16", "max_batch_tokens", "batch_docs", "workers",
        "tool_cache", "ray_address", "ray_actors", "shard_id", "sample_backend",
    }
)  # fmt: skip


def parse_tau_f_tool(items: Sequence[str], base: dict[str, float] | None = None) -> dict[str, float]:
    """`["Calculator=0.5", "QA=2"]` → {tool: tau} on top of `base` (default: the paper's per-tool values)."""
    out = dict(PAPER_TAU_F_PER_TOOL if base is None else base)
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"tau_f_tool={item!r} must be TOOL=NUMBER, e.g. Calculator=0.5") from None
    return out


@dataclass
class SampleConfig:
    """How LMProposer samples calls for one tool (paper §2 and App. A)."""

    tau_s: float = _opt(
        0.05,
        "Keep positions whose p_i = p('[' | P(x), x_<i) is above this (paper: 0.05; 0 for Calculator and MT).",
    )
    k: int = _opt(
        5, "At most this many positions per text, the likeliest first (paper: 5; 20 for Calculator and MT)."
    )
    m: int = _opt(5, "Calls sampled at each kept position (paper: 5; 10 for Calculator and MT).")
    max_new_tokens: int = _opt(30, "Tokens sampled per call; a sample without ']' by then is dropped.")
    temperature: float = _opt(1.0, "Sampling temperature.")
    top_p: float = _opt(1.0, "Nucleus sampling mass (1 = plain sampling).")
    do_sample: bool = _opt(True, "Sample (the paper). False: greedy, one call per position (debugging).")
    word_boundaries: bool = _opt(
        True, "Only positions between words or next to punctuation, never inside a word or number."
    )
    max_text_tokens: int = _opt(512, "Only the first this-many tokens of a text are scored and sampled at.")
    batch_size: int = _opt(
        32, "Sequences sampled together in one generate call (memory grows with it x prompt length)."
    )
    share_prefix: bool = _opt(
        True,
        "Sample on copies of the scoring pass's KV cache instead of re-encoding every prefix (models with a plain "
        "DynamicCache; others fall back).",
    )
    seed: int | None = _opt(0, "Sampling seed, mixed with the document id and tool; None: not seeded.")
    backend: str = _opt(
        "transformers",
        "Engine of the sampling step: transformers (model.generate) or vllm (vllm.LLM over the model's path, GPU; "
        "pip install 'toolformer-kit[gpu]'). Scoring p_i always uses transformers.",
    )

    def __post_init__(self) -> None:
        if not 0 <= self.tau_s < 1:
            raise ConfigError(f"tau_s must be in [0, 1), got {self.tau_s}")
        for name in ("k", "m", "max_new_tokens", "max_text_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.backend not in SAMPLE_BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(SAMPLE_BACKENDS)}, got {self.backend!r}")

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


PAPER_DEFAULTS: dict[str, SampleConfig] = {
    "Calculator": SampleConfig(tau_s=0.0, k=20, m=10),
    "MT": SampleConfig(tau_s=0.0, k=20, m=10),
    "QA": SampleConfig(),
    "WikiSearch": SampleConfig(),
    "Calendar": SampleConfig(),
}


def paper_config(tool: str) -> SampleConfig:
    """The paper's sampling settings for `tool` (τ_s = 0.05, k = 5, m = 5 unless it is Calculator or MT)."""
    return replace(PAPER_DEFAULTS.get(tool, SampleConfig()))
