"""`TrainConfig`: every option of `toolformer train`, with its help text; the CLI reads it, the output stores it.

Defaults are chosen for the embedded 135M model on a few CPU cores, not copied from the paper (GPT-J 6.7B on
8×A100: lr 1e-5, batch 128, 10 % linear warmup, max length 1,024, up to 2k steps, dev perplexity every 500 steps,
best checkpoint kept). What we keep from the paper: the plain LM loss, 10 % linear warmup then linear decay, max
length 1,024, dev perplexity with the best checkpoint kept. What differs, and why:

- learning rate 5e-5 (full) / 2e-4 (LoRA): a 135M model and a small corpus need larger steps than GPT-J's 1e-5;
- batch 4 × 8 accumulation = 32 texts per step: 128 would leave a corpus of a few thousand texts with a few dozen
  steps; 4 per forward pass bounds CPU memory (the full-vocabulary logits of 4 × 1,024 tokens take 0.8 GB, and
  a CPU gains little from wider batches);
- bf16 autocast on CUDA only by default: on our CPU (Zen 4, avx512_bf16) it was no faster than float32;
- eval/save every 50 steps, not 500: CPU runs are short, and best-by-dev needs several points;
- `mix_ratio` 0.5: the paper trains on annotated texts only; mixing in plain texts teaches when *not* to call.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from toolformer.configs import field_default, field_help, option
from toolformer.errors import ConfigError

CONFIG_FILE = "train_config.json"
REPORT_FILE = "train_report.json"
LOSS_MODES = ("all", "after-call")
MIX_FROM = ("auto", "plain", "source")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_LR_FULL = 5e-5
DEFAULT_LR_LORA = 2e-4


_opt = option


@dataclass
class TrainConfig:
    """Every option of a fine-tuning run (paper §2, "Model finetuning"). Saved as `train_config.json` in `out`."""

    data: str = _opt(
        "",
        "Training data: an output folder of `toolformer annotate` (shard-*.jsonl rows with calls, split train/dev), "
        "a JSONL file, or a folder of JSONL files.",
    )
    out: str = _opt("", "Output folder: the fine-tuned model (a normal Hugging Face folder) and its reports.")
    model: str = _opt(
        "smollm2-135m-instruct", "Base model: an alias, a GGUF file or a Hugging Face model folder."
    )
    text_field: str = _opt("text", "JSONL field holding the training text (with inline calls).")
    lora: bool = _opt(False, "Train a LoRA adapter instead of every weight (full fine-tuning, the paper's).")
    init_adapter: str = _opt(
        "",
        "LoRA: continue training this adapter (a `train --lora --no-merge` output folder, or an adapter alias such "
        "as toolformer-135m) instead of a new one; its rank and target modules are kept, and --model must be the "
        "base it was trained on.",
    )
    lora_r: int = _opt(16, "LoRA rank r.")
    lora_alpha: int = _opt(32, "LoRA alpha (the update is scaled by alpha / r).")
    lora_dropout: float = _opt(0.05, "Dropout on the LoRA input.")
    lora_target_modules: str = _opt(
        "all-linear",
        "Modules that get LoRA adapters: comma-separated names (q_proj,v_proj) or all-linear (every linear "
        "layer except the output head).",
    )
    merge: bool = _opt(
        True,
        "LoRA: merge the adapter into the base weights so the output loads anywhere (off: save the adapter only).",
    )
    learning_rate: float | None = _opt(
        None,
        f"Peak learning rate (default: {DEFAULT_LR_FULL:g} full, {DEFAULT_LR_LORA:g} LoRA; paper: 1e-5 for GPT-J).",
    )
    epochs: float = _opt(2.0, "Passes over the training texts (ignored when max_steps is set).")
    max_steps: int | None = _opt(None, "Stop after this many optimizer steps (paper: up to 2,000).")
    batch_size: int = _opt(4, "Texts per forward pass.")
    grad_accum: int = _opt(
        8, "Forward passes per optimizer step: batch_size × grad_accum texts per step (paper: 128)."
    )
    max_length: int = _opt(
        1024, "Tokens per text; longer texts are cut (a text whose calls are all cut is dropped)."
    )
    warmup_ratio: float = _opt(
        0.1, "Share of the steps with linear warmup; then linear decay to 0 (paper: 0.1)."
    )
    weight_decay: float = _opt(0.0, "AdamW weight decay.")
    loss: str = _opt(
        "all",
        "Tokens in the loss: all (the paper's plain LM loss) or after-call (only from the first call's '[' on; "
        "plain texts mixed in keep their whole text, or from where their annotated twin has its first call).",
    )
    mix_ratio: float | None = _opt(
        0.5,
        "Plain texts (without calls) per text with calls, e.g. 0.5 = one plain per two annotated, so the model "
        "also learns when not to call; 0 = annotated texts only; all (None) = every row of the data as given.",
    )
    mix_from: str = _opt(
        "auto",
        "Where plain texts come from: plain (documents without a kept call: rows without calls, or for an annotate "
        "folder its input's documents that kept none), source (the annotated rows' text without the calls), or "
        "auto (plain first, then source).",
    )
    dev_fraction: float = _opt(
        0.05,
        "Dev share for rows without a split field (hash of the id; annotate rows carry their own split).",
    )
    allow_partial: bool = _opt(
        False,
        "Train on the documents written so far by an annotate run that has not finished or was killed (a "
        "manifest still says status running); without it such a partial folder is refused.",
    )
    max_dev_texts: int = _opt(
        200, "Dev texts scored at each evaluation (the first ones by hash; paper: 1,000)."
    )
    eval_steps: int = _opt(50, "Dev perplexity every N optimizer steps (and at the start and the end).")
    save_steps: int = _opt(
        50,
        "Checkpoint every N steps (a multiple of eval_steps: the best checkpoint by dev perplexity is kept).",
    )
    save_total_limit: int = _opt(2, "Checkpoints kept on disk (the best and the latest are always kept).")
    keep_checkpoints: bool = _opt(
        False, "Keep out/checkpoints after a finished run (they hold optimizer state: 3× the model size)."
    )
    resume: bool = _opt(
        False, "Continue from the last complete checkpoint in out/checkpoints (after a kill or a crash)."
    )
    seed: int = _opt(0, "Seed of the mix sampling, the data order, dropout and LoRA initialisation.")
    bf16: bool | None = _opt(
        None,
        "Run forward and backward under bfloat16 autocast (weights stay float32); default: on for a CUDA GPU "
        "with bf16, off on CPU (measured no faster there).",
    )
    gradient_checkpointing: bool = _opt(
        False, "Recompute activations in the backward pass: less memory, ~30 % slower."
    )
    device: str = _opt("auto", "auto (cuda when available, else cpu), cpu or cuda.")
    logging_steps: int = _opt(1, "Log loss, learning rate and tokens/s every N steps (TensorBoard, report).")
    tensorboard: bool = _opt(
        True, "Write TensorBoard logs to out/tensorboard (needs the tensorboard package)."
    )

    # ------------------------------------------------------------------------------------------ checks

    def check(self) -> None:
        """Raise ConfigError naming the first bad field and its value."""
        if not str(self.data).strip():
            raise ConfigError(
                "data='' : give an annotate output folder, a JSONL file or a folder of JSONL files"
            )
        if not str(self.out).strip():
            raise ConfigError("out='' : give an output folder (--out)")
        if self.loss not in LOSS_MODES:
            raise ConfigError(f"loss={self.loss!r} is not one of {', '.join(LOSS_MODES)}")
        if self.mix_from not in MIX_FROM:
            raise ConfigError(f"mix_from={self.mix_from!r} is not one of {', '.join(MIX_FROM)}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"device={self.device!r} is not one of {', '.join(DEVICES)} (or cuda:N)")
        positive = {
            "lora_r": self.lora_r,
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "max_length": self.max_length,
            "eval_steps": self.eval_steps,
            "save_steps": self.save_steps,
            "save_total_limit": self.save_total_limit,
            "logging_steps": self.logging_steps,
            "max_dev_texts": self.max_dev_texts,
        }
        if self.max_steps is not None:
            positive["max_steps"] = self.max_steps
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be an integer >= 1")
        if self.max_length < 8:
            raise ConfigError(f"max_length={self.max_length!r} must be at least 8 tokens")
        if self.lora_alpha <= 0:
            raise ConfigError(f"lora_alpha={self.lora_alpha!r} must be > 0")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"lora_dropout={self.lora_dropout!r} must be in [0, 1)")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ConfigError(f"learning_rate={self.learning_rate!r} must be > 0")
        if self.max_steps is None and not self.epochs > 0:
            raise ConfigError(f"epochs={self.epochs!r} must be > 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"warmup_ratio={self.warmup_ratio!r} must be in [0, 1)")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay={self.weight_decay!r} must be >= 0")
        if self.mix_ratio is not None and not self.mix_ratio >= 0:
            raise ConfigError(f"mix_ratio={self.mix_ratio!r} must be >= 0 (or all)")
        if not 0.0 <= self.dev_fraction < 1.0:
            raise ConfigError(f"dev_fraction={self.dev_fraction!r} must be in [0, 1)")
        if self.save_steps % self.eval_steps:
            raise ConfigError(
                f"save_steps={self.save_steps} must be a multiple of eval_steps={self.eval_steps}: the best "
                "checkpoint by dev perplexity can only be one that was evaluated"
            )
        if self.init_adapter and not self.lora:
            raise ConfigError(
                f"init_adapter={self.init_adapter!r} needs --lora (it continues a LoRA adapter)"
            )
        if not [m for m in self.lora_target_modules.split(",") if m.strip()]:
            raise ConfigError(f"lora_target_modules={self.lora_target_modules!r} names no module")

    # ------------------------------------------------------------------------------------------ derived

    @property
    def lr(self) -> float:
        """The learning rate in use: the one given, else the default for full or LoRA training."""
        if self.learning_rate is not None:
            return self.learning_rate
        return DEFAULT_LR_LORA if self.lora else DEFAULT_LR_FULL

    def target_modules(self) -> str | list[str]:
        """LoRA target modules as peft takes them: the string 'all-linear' or a list of names."""
        names = [m.strip() for m in self.lora_target_modules.split(",") if m.strip()]
        return "all-linear" if names == ["all-linear"] else names

    # ------------------------------------------------------------------------------------------ files

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, folder: Path) -> Path:
        """Write `train_config.json` into `folder` (with the learning rate in use) and return its path."""
        path = Path(folder) / CONFIG_FILE
        data = {**self.to_dict(), "learning_rate_used": self.lr}
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """A TrainConfig from a saved `train_config.json` (unknown keys are ignored)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def differences(self, other: TrainConfig) -> list[str]:
        """Fields that must not change between a run and its resumption, and differ: `name: old -> new`."""
        out = []
        for f in fields(self):
            if f.name in RESUMABLE_CHANGES:
                continue
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                out.append(f"{f.name}: {theirs!r} -> {mine!r}")
        return out

    # ------------------------------------------------------------------------------------------ CLI

    help = classmethod(field_help)
    default = classmethod(field_default)


# Fields a resumed run may change: where things go, how often it reports, how long it runs, how fast it runs.
RESUMABLE_CHANGES = frozenset(
    {
        "resume", "out", "epochs", "max_steps", "eval_steps", "save_steps", "save_total_limit", "keep_checkpoints",
        "logging_steps", "tensorboard", "merge", "device", "bf16", "gradient_checkpointing", "max_dev_texts",
        "allow_partial",
    }
)  # fmt: skip


def parse_mix_ratio(value: str | float | None) -> float | None:
    """`--mix-ratio` as given on the command line: a number >= 0, or `all` (None: every row as given)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().lower()
    if text in ("all", "none"):
        return None
    try:
        ratio = float(text)
    except ValueError:
        raise ConfigError(f"mix_ratio={value!r} must be a number >= 0 or 'all'") from None
    if not ratio >= 0:
        raise ConfigError(f"mix_ratio={value!r} must be a number >= 0 or 'all'")
    return ratio
