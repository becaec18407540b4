"""`AdaptConfig`: every option of `toolformer adapt`, with its help text; the CLI reads it, the output stores it.

Defaults suit the embedded 135M model on a few CPU cores: LoRA (r 16, all linear layers) with the task head fully
trained, AdamW, lr 2e-4 (LoRA) / 5e-5 (full), 10 % linear warmup then linear decay, weight decay 0.01, dropout
0.1 on attention and the token-classification head, dev evaluation every 50 steps with early stopping after 3
evaluations without improvement, bf16 autocast on CUDA only (on CPU it measured no faster, see train/config.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from toolformer.configs import option
from toolformer.errors import ConfigError

CONFIG_FILE = "adapt_config.json"
REPORT_JSON = "adapt_report.json"
REPORT_MD = "adapt_report.md"
PREDICTIONS_FILE = "predictions.jsonl"

TASKS = ("classification", "ner", "qa", "seq2seq")
TASK_ALIASES = {
    "cls": "classification",
    "text-classification": "classification",
    "token-classification": "ner",
    "question-answering": "qa",
    "generation": "seq2seq",
    "summarization": "seq2seq",
    "translation": "seq2seq",
}
# Every metric is reported in percent; "loss" (the dev cross-entropy) is the one where lower is better.
METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "macro_f1", "loss"),
    "ner": ("f1", "precision", "recall", "accuracy", "loss"),
    "qa": ("exact_match", "f1", "loss"),
    "seq2seq": ("rougeL", "rouge1", "rouge2", "bleu", "chrf", "exact_match", "loss"),
}
DEFAULT_METRIC = {"classification": "macro_f1", "ner": "f1", "qa": "f1", "seq2seq": "rougeL"}
FORMATS = ("auto", "jsonl", "json", "csv", "tsv", "conll")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_LR_FULL = 5e-5
DEFAULT_LR_LORA = 2e-4


_opt = option


@dataclass
class AdaptConfig:
    """Every option of a task-adaptation run. Saved as `adapt_config.json` in `out`."""

    train: str = _opt("", "Training data: a JSONL, JSON, CSV/TSV or CoNLL file (see --format).")
    task: str = _opt(
        "classification",
        "Task: classification (text → label), ner (tokens → tags), qa (extractive: question + context → span) "
        "or seq2seq (source → target text with the LM itself: summarisation, translation, …).",
    )
    out: str = _opt(
        "", "Output folder: the adapted model (a Hugging Face folder), adapt_report.md/.json, predictions."
    )
    model: str = _opt(
        "smollm2-135m-instruct", "Base model: an alias, a GGUF file or a Hugging Face model folder."
    )
    dev: str | None = _opt(
        None, "Dev file (early stopping, best weights); default: --dev-fraction of the train file."
    )
    test: str | None = _opt(None, "Test file, scored once with the best weights at the end.")
    format: str = _opt("auto", f"Input format: {', '.join(FORMATS)} (auto: by file extension).")
    text_field: str = _opt(
        "text", "classification: field with the text (dotted paths reach into objects: a.b.0)."
    )
    label_field: str = _opt("label", "classification: field with the label.")
    tokens_field: str = _opt(
        "tokens", "ner: field with the word list (a JSON list, or a space-separated string)."
    )
    tags_field: str = _opt("tags", "ner: field with one tag per word (IOB/BIO, e.g. B-PER, I-PER, O).")
    question_field: str = _opt("question", "qa: field with the question.")
    context_field: str = _opt("context", "qa: field with the context passage.")
    answers_field: str = _opt(
        "answers",
        "qa: field with the gold answers: SQuAD style {text: [...], answer_start: [...]}, a list of strings or one "
        "string (without offsets the first occurrence in the context is used).",
    )
    source_field: str = _opt("source", "seq2seq: field with the input text.")
    target_field: str = _opt(
        "target", "seq2seq: field with the output text (a list gives several references)."
    )
    id_field: str = _opt("id", "Field with the row id (optional; the row number otherwise).")
    prompt_template: str = _opt(
        "{source}\n",
        "seq2seq: the prompt around the source text; the model learns to write the target after it.",
    )
    dev_fraction: float = _opt(0.1, "Share of the train file held out as dev when --dev is not given.")
    limit: int | None = _opt(None, "Use at most this many training rows (after the dev split).")
    max_dev_rows: int | None = _opt(500, "Score at most this many dev rows at each evaluation.")
    lora: bool = _opt(True, "Train LoRA adapters plus the task head (off: full fine-tuning of every weight).")
    lora_r: int = _opt(16, "LoRA rank r.")
    lora_alpha: int = _opt(32, "LoRA alpha (the update is scaled by alpha / r).")
    lora_dropout: float = _opt(0.05, "Dropout on the LoRA input.")
    lora_target_modules: str = _opt(
        "all-linear", "Modules that get LoRA adapters: comma-separated names (q_proj,v_proj) or all-linear."
    )
    merge: bool = _opt(
        True, "LoRA: merge the adapters into the weights when saving (off: save the adapter only)."
    )
    learning_rate: float | None = _opt(
        None, f"Peak learning rate (default {DEFAULT_LR_LORA:g} with LoRA, {DEFAULT_LR_FULL:g} full)."
    )
    epochs: float = _opt(3.0, "Passes over the training rows (ignored when --max-steps is set).")
    max_steps: int | None = _opt(None, "Stop after this many optimizer steps.")
    batch_size: int = _opt(8, "Rows per forward pass.")
    grad_accum: int = _opt(1, "Forward passes per optimizer step (batch_size × grad_accum rows per step).")
    max_length: int = _opt(
        256, "Tokens per input; longer inputs are cut (qa: split into overlapping windows)."
    )
    warmup_ratio: float = _opt(0.1, "Share of the steps with linear warmup; then linear decay to 0.")
    weight_decay: float = _opt(0.01, "AdamW weight decay.")
    dropout: float = _opt(0.1, "Dropout on attention probabilities and on the token-classification head.")
    eval_steps: int = _opt(
        50, "Evaluate on dev every this many optimizer steps (and at the start and the end)."
    )
    patience: int = _opt(
        3, "Early stopping: stop after this many evaluations without a better dev metric (0: off)."
    )
    metric: str | None = _opt(
        None,
        "Dev metric that picks the best weights and drives early stopping (default: classification macro_f1, "
        "ner f1, qa f1, seq2seq rougeL; 'loss' works for every task).",
    )
    max_new_tokens: int = _opt(64, "seq2seq: tokens generated per dev/test row (greedy).")
    max_answer_tokens: int = _opt(30, "qa: longest answer span considered, in tokens.")
    doc_stride: int = _opt(64, "qa: tokens shared by consecutive windows of a long context.")
    seed: int = _opt(0, "Random seed (dev split, initialisation, data order).")
    bf16: bool | None = _opt(None, "bf16 autocast (default: on for CUDA GPUs with bf16, off on CPU).")
    device: str = _opt("auto", f"Device: {', '.join(DEVICES)}.")

    # ------------------------------------------------------------------------------------------------ derived

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return DEFAULT_LR_LORA if self.lora else DEFAULT_LR_FULL

    @property
    def best_metric(self) -> str:
        return self.metric or DEFAULT_METRIC[self.task]

    @property
    def greater_is_better(self) -> bool:
        return self.best_metric != "loss"

    def target_modules(self) -> str | list[str]:
        value = self.lora_target_modules.strip()
        if value == "all-linear":
            return value
        return [m.strip() for m in value.split(",") if m.strip()]

    # ------------------------------------------------------------------------------------------------ checks

    def check(self) -> AdaptConfig:
        """Normalise the task name and validate every option; raises ConfigError naming the first bad one."""
        self.task = TASK_ALIASES.get(self.task.strip().lower(), self.task.strip().lower())
        if self.task not in TASKS:
            raise ConfigError(f"task={self.task!r} is not one of {', '.join(TASKS)}")
        if not self.train:
            raise ConfigError("train='' : pass the training file")
        if not self.out:
            raise ConfigError("out='' : pass the output folder (--out)")
        if self.format not in FORMATS:
            raise ConfigError(f"format={self.format!r} is not one of {', '.join(FORMATS)}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(f"device={self.device!r} is not one of {', '.join(DEVICES)} (or cuda:N)")
        if self.metric is not None and self.metric not in METRICS[self.task]:
            raise ConfigError(
                f"metric={self.metric!r} is not a {self.task} metric: {', '.join(METRICS[self.task])}"
            )
        if self.dev is None and not 0.0 < self.dev_fraction < 1.0:
            raise ConfigError(
                f"dev_fraction={self.dev_fraction!r} must be in (0, 1) when no --dev file is given "
                "(a dev set drives early stopping)"
            )
        if self.task == "seq2seq" and "{source}" not in self.prompt_template:
            raise ConfigError(f"prompt_template={self.prompt_template!r} must contain {{source}}")
        positive = {
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "max_length": self.max_length,
            "eval_steps": self.eval_steps,
            "lora_r": self.lora_r,
            "max_new_tokens": self.max_new_tokens,
            "max_answer_tokens": self.max_answer_tokens,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name}={value!r} must be at least 1")
        if self.max_length < 16:
            raise ConfigError(f"max_length={self.max_length!r} must be at least 16")
        if self.task == "qa" and not 0 <= self.doc_stride < self.max_length // 2:
            raise ConfigError(f"doc_stride={self.doc_stride!r} must be in [0, max_length / 2)")
        for name in ("limit", "max_dev_rows", "max_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}={value!r} must be at least 1 (or unset)")
        if self.epochs <= 0 and self.max_steps is None:
            raise ConfigError(f"epochs={self.epochs!r} must be positive (or set --max-steps)")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ConfigError(f"learning_rate={self.learning_rate!r} must be positive")
        for name in ("warmup_ratio", "dropout", "lora_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name}={value!r} must be in [0, 1)")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay={self.weight_decay!r} must be >= 0")
        if self.patience < 0:
            raise ConfigError(f"patience={self.patience!r} must be >= 0")
        return self

    # ------------------------------------------------------------------------------------------------ io

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, out: Path) -> Path:
        path = out / CONFIG_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaptConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
