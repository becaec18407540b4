"""`PretrainConfig`: every option of `toolformer pretrain`, with its help text; and `SIZES`, the models by name.

The model is a Llama (transformers' `LlamaForCausalLM`: RMSNorm, rotary positions, SwiGLU MLP) trained from random
weights with SmolLM2's tokenizer (49,152 tokens), so it reads and writes the same token ids as the toolkit's other
models and loads wherever they do. At these sizes the vocabulary dominates: one 49,152 × hidden matrix is most of
the weights, so input embedding and output head are tied (one matrix, not two), as in SmolLM2. Parameters, tied
embedding counted once (`ModelSize.parameters`, checked against the built model by the tests):

| size | hidden | layers | heads | MLP   | embedding  | the rest   | total      |
|------|--------|--------|-------|-------|------------|------------|------------|
| tiny | 32     | 2      | 2     | 64    | 1,572,864  | 20,640     | 1,593,504  |
| 10m  | 128    | 12     | 4     | 512   | 6,291,456  | 3,148,928  | 9,440,384  |
| 30m  | 256    | 16     | 8     | 1,024 | 12,582,912 | 16,785,664 | 29,368,576 |

`tiny` is for tests (seconds on a CPU); `10m` and `30m` are small enough to train on CPU cores for minutes to hours.

Training defaults follow common practice for small GPT-style models, not the paper (which fine-tunes GPT-J): AdamW
with β2 0.95 and weight decay 0.1, peak learning rate 1e-3 (small models take large steps; SmolLM2-135M used 3e-3),
linear warmup over the first 5 % of the steps then cosine decay to 10 % of the peak, gradient clipping at norm 1.0,
packed sequences of 256 tokens (a Vital Article lead is ~130 tokens; packing leaves no padding), 8 × 4 = 32 blocks
(8,192 tokens) per optimizer step, bf16 autocast on a CUDA GPU only (on CPU it measured no faster, see `train`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from toolformer.configs import JsonRecord, field_default, field_help, option
from toolformer.errors import ConfigError
from toolformer.models.aliases import BASE_MODEL
from toolformer.train.config import DEVICES

CONFIG_FILE = "pretrain_config.json"
REPORT_FILE = "pretrain_report.json"
PLOT_FILE = "loss.png"


@dataclass(frozen=True)
class ModelSize:
    """The shape of one named model size (a LlamaConfig's hidden size, layers, heads and MLP width)."""

    name: str
    hidden: int
    layers: int
    heads: int
    mlp: int

    def parameters(self, vocab: int) -> int:
        """Weights of this shape over a vocabulary of `vocab` tokens, with tied embeddings (counted once)."""
        per_layer = 4 * self.hidden * self.hidden + 3 * self.hidden * self.mlp + 2 * self.hidden
        return vocab * self.hidden + self.layers * per_layer + self.hidden  # + the final norm

    def llama_config(self, tokenizer: Any, seq_len: int) -> Any:
        """The transformers LlamaConfig of this size for `tokenizer` and training blocks of `seq_len` tokens."""
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=self.hidden,
            intermediate_size=self.mlp,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.heads,
            max_position_embeddings=seq_len,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )


SIZES: dict[str, ModelSize] = {
    s.name: s
    for s in (
        ModelSize("tiny", hidden=32, layers=2, heads=2, mlp=64),
        ModelSize("10m", hidden=128, layers=12, heads=4, mlp=512),
        ModelSize("30m", hidden=256, layers=16, heads=8, mlp=1024),
    )
}

SMOLLM2_VOCAB = 49152  # len() of SmolLM2's tokenizer: the counts in help texts and the table above
_opt = option


@dataclass
class PretrainConfig(JsonRecord):
    """Every option of a pretraining run from random weights. Saved as `pretrain_config.json` in `out`."""

    corpus: str = _opt(
        "",
        "Training text: a JSONL file (one document per row, in --text-field; a `split` field of train/dev is "
        "kept), a text file (documents separated by blank lines), or a folder of such files (.jsonl, .txt, .md, "
        "also .gz).",
    )
    out: str = _opt(
        "",
        "Output folder: the model (a normal Hugging Face folder with the tokenizer), pretrain_report.json, "
        "loss.png, TensorBoard logs and checkpoints.",
    )
    size: str = _opt(
        "10m",
        "Model size by name: "
        + ", ".join(f"{s.name} ({s.parameters(SMOLLM2_VOCAB) / 1e6:.1f}M parameters)" for s in SIZES.values())
        + "; tied embeddings, SmolLM2's 49,152-token vocabulary.",
    )
    tokenizer: str = _opt(
        BASE_MODEL,
        "Where the tokenizer comes from: a model alias, GGUF file or model folder (default: SmolLM2's, read "
        "offline from the embedded model).",
    )
    text_field: str = _opt("text", "JSONL field holding the document text.")
    seq_len: int = _opt(
        256,
        "Tokens per packed training block: documents are joined with the end-of-text token between them and cut "
        "into blocks of this length, so no token is padding (also the model's position limit).",
    )
    batch_size: int = _opt(8, "Blocks per forward pass.")
    grad_accum: int = _opt(
        4, "Forward passes per optimizer step: batch_size × grad_accum × seq_len tokens a step."
    )
    learning_rate: float = _opt(1e-3, "Peak learning rate (AdamW), reached after the warmup.")
    min_lr_ratio: float = _opt(0.1, "The cosine decay ends at this share of the peak learning rate.")
    warmup_ratio: float = _opt(0.05, "Share of the steps with linear warmup from 0 to the peak.")
    weight_decay: float = _opt(0.1, "AdamW weight decay (decoupled; GPT-style pretraining uses 0.1).")
    adam_beta2: float = _opt(0.95, "AdamW β2 (0.95 rather than 0.999: steadier with large early gradients).")
    max_grad_norm: float = _opt(1.0, "Clip the gradient to this global norm (0 = no clipping).")
    epochs: float = _opt(
        1.0, "Passes over the training blocks (when neither max_tokens nor max_steps is set)."
    )
    max_tokens: int | None = _opt(
        None,
        "Train on this many tokens (rounded up to whole steps; blocks repeat when the corpus is smaller).",
    )
    max_steps: int | None = _opt(
        None, "Stop after this many optimizer steps (overrides epochs; max_tokens wins)."
    )
    max_minutes: float | None = _opt(
        None,
        "Stop after this many minutes of training, saving and evaluating the last step; the checkpoints stay, "
        "and --resume continues the run (the cosine schedule is planned for the whole run, so a stopped run's "
        "learning rate is not decayed yet).",
    )
    dev_fraction: float = _opt(
        0.02,
        "Dev share of the documents without a split field (by a hash of their id; rows may carry their own).",
    )
    max_dev_blocks: int = _opt(
        64, "Dev blocks scored at each evaluation (a seeded sample, the same each time)."
    )
    eval_steps: int = _opt(50, "Dev perplexity every N optimizer steps (and at the start and the end).")
    save_steps: int = _opt(50, "Checkpoint every N optimizer steps into out/checkpoints (for --resume).")
    save_total_limit: int = _opt(3, "Checkpoints kept on disk (the oldest are deleted).")
    keep_checkpoints: bool = _opt(
        False, "Keep out/checkpoints after a finished run (each loads as a model; with optimizer state)."
    )
    resume: bool = _opt(
        False, "Continue from the last complete checkpoint in out/checkpoints (after a kill or a crash)."
    )
    seed: int = _opt(0, "Seed of the initial weights, the data order and the sample of dev blocks.")
    bf16: bool | None = _opt(
        None,
        "Run forward and backward under bfloat16 autocast (weights stay float32); default: on for a CUDA GPU "
        "with bf16, off on CPU.",
    )
    device: str = _opt("auto", "auto (cuda when available, else cpu), cpu or cuda.")
    logging_steps: int = _opt(10, "Log loss and learning rate every N steps (report, TensorBoard, plot).")
    tensorboard: bool = _opt(
        True, "Write TensorBoard logs to out/tensorboard (needs the tensorboard package)."
    )

    # ------------------------------------------------------------------------------------------ checks

    def check(self) -> None:
        """Raise ConfigError naming the first bad field and its value."""
        if not str(self.corpus).strip():
            raise ConfigError("corpus='' : give a JSONL file, a text file or a folder of them")
        if not str(self.out).strip():
            raise ConfigError("out='' : give an output folder (--out)")
        if self.size not in SIZES:
            raise ConfigError(f"size={self.size!r} is not one of {', '.join(SIZES)}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"device={self.device!r} is not one of {', '.join(DEVICES)} (or cuda:N)")
        positive = {
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "eval_steps": self.eval_steps,
            "save_steps": self.save_steps,
            "save_total_limit": self.save_total_limit,
            "logging_steps": self.logging_steps,
            "max_dev_blocks": self.max_dev_blocks,
        }
        for name in ("max_steps", "max_tokens"):
            if getattr(self, name) is not None:
                positive[name] = getattr(self, name)
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be an integer >= 1")
        if self.seq_len < 8:
            raise ConfigError(f"seq_len={self.seq_len!r} must be at least 8 tokens")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate={self.learning_rate!r} must be > 0")
        ranges = {
            "min_lr_ratio": (self.min_lr_ratio, 0.0, 1.0, True),
            "warmup_ratio": (self.warmup_ratio, 0.0, 1.0, False),
            "adam_beta2": (self.adam_beta2, 0.0, 1.0, False),
            "dev_fraction": (self.dev_fraction, 0.0, 1.0, False),
        }
        for name, (value, low, high, closed) in ranges.items():
            if not (low <= value <= high if closed else low <= value < high):
                raise ConfigError(f"{name}={value!r} must be in [{low:g}, {high:g}{']' if closed else ')'}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay={self.weight_decay!r} must be >= 0")
        if self.max_grad_norm < 0:
            raise ConfigError(f"max_grad_norm={self.max_grad_norm!r} must be >= 0")
        if self.max_steps is None and self.max_tokens is None and not self.epochs > 0:
            raise ConfigError(f"epochs={self.epochs!r} must be > 0")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"max_minutes={self.max_minutes!r} must be > 0")

    # ------------------------------------------------------------------------------------------ derived

    @property
    def lr(self) -> float:
        """The peak learning rate (the name `configs.trainer_arguments` reads)."""
        return self.learning_rate

    @property
    def model_size(self) -> ModelSize:
        return SIZES[self.size]

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum * self.seq_len

    def planned_steps(self, train_blocks: int) -> int:
        """Optimizer steps of the run: from max_tokens, else max_steps, else epochs over `train_blocks` blocks."""
        if self.max_tokens is not None:
            return -(-self.max_tokens // self.tokens_per_step)
        if self.max_steps is not None:
            return self.max_steps
        per_epoch = train_blocks / (self.batch_size * self.grad_accum)
        return max(1, round(per_epoch * self.epochs + 0.4999))  # a partial last step still counts

    # ------------------------------------------------------------------------------------------ files

    def save(self, folder: Path) -> Path:
        """Write `pretrain_config.json` into `folder` and return its path."""
        path = Path(folder) / CONFIG_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> PretrainConfig:
        """A PretrainConfig from a saved `pretrain_config.json` (unknown keys are ignored)."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def differences(self, other: PretrainConfig) -> list[str]:
        """Fields that must not change between a run and its resumption, and differ: `name: old -> new`."""
        names = [f.name for f in fields(self) if f.name not in RESUMABLE_CHANGES]
        return [
            f"{n}: {getattr(other, n)!r} -> {getattr(self, n)!r}"
            for n in names
            if getattr(self, n) != getattr(other, n)
        ]

    # ------------------------------------------------------------------------------------------ CLI

    help = classmethod(field_help)
    default = classmethod(field_default)


# Fields a resumed run may change: where things go, how often it reports, how long it runs, how fast it runs.
RESUMABLE_CHANGES = frozenset(
    {
        "resume", "out", "epochs", "max_tokens", "max_steps", "max_minutes", "eval_steps", "save_steps",
        "save_total_limit", "keep_checkpoints", "logging_steps", "tensorboard", "device", "bf16", "max_dev_blocks",
    }
)  # fmt: skip
