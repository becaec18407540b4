"""`CompressConfig`: every option of `toolformer compress`, with its help text and the checks on its values.

Cheap to import (no torch): the CLI reads the help texts and defaults from it at import time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from toolformer.configs import field_default, field_help, option
from toolformer.errors import ConfigError
from toolformer.models.aliases import DEFAULT_MODEL

# Methods and what they do; the order is the order of the benchmark table.
METHODS = {
    "bf16": "cast every weight to bfloat16 (half the file; CPU speed depends on avx512_bf16)",
    "int8": "dynamic int8 quantisation of the nn.Linear layers (torch.ao, per-channel weights, fbgemm kernels)",
    "int8-wo": "int8 weight-only quantisation of the decoder's linear layers (torchao Int8WeightOnlyConfig)",
    "int4-wo": "int4 weight-only quantisation, per group of 32 (torchao IntxWeightOnlyConfig; int8 storage on CPU)",
    "prune": "magnitude (L1) unstructured pruning of the decoder's linear layers (torch.nn.utils.prune)",
    "prune-structured": "remove the MLP channels with the smallest weight norms (the model gets smaller)",
    "trim": "keep N of the decoder layers (optionally healed by a short fine-tune)",
}
LAYER_CHOICES = ("importance", "spread", "first")
HEALABLE = ("trim", "prune-structured")  # unstructured pruning would lose its zeros in a fine-tune


_opt = option


@dataclass
class CompressConfig:
    """One compression run: a model, one method with its settings, the output folder and what to measure."""

    model: str = _opt(
        DEFAULT_MODEL, "Model to compress: an alias, a GGUF file or a Hugging Face model folder."
    )
    method: str = _opt("", f"Compression method: {', '.join(METHODS)}.")
    out: str = _opt("", "Output folder: the compressed model (loadable with --model OUT) and report.md/json.")
    keep_layers: int | None = _opt(None, "trim: number of decoder layers to keep.")
    layers: str | None = _opt(
        None,
        "trim: the exact layers to keep, 0-based and comma-separated (e.g. 0,1,2,29); overrides --keep-layers.",
    )
    layer_choice: str = _opt(
        "importance",
        "trim: which N layers to keep: importance (drop the layers that change their input least, ShortGPT's "
        "block influence on a few Wikipedia texts), spread (evenly spaced, first and last included) or first.",
    )
    sparsity: float = _opt(
        0.3,
        "prune: share of each linear weight set to zero; prune-structured: share of MLP channels removed.",
    )
    heal_data: str | None = _opt(
        None,
        "trim / prune-structured: fine-tune briefly on this text (JSONL with a text field, a folder of them, or a "
        ".txt file split at blank lines) to heal the damage.",
    )
    heal_steps: int = _opt(50, "Heal: optimizer steps.")
    heal_lr: float = _opt(5e-5, "Heal: peak learning rate.")
    heal_batch_size: int = _opt(4, "Heal: texts per step.")
    heal_max_length: int = _opt(256, "Heal: tokens per text (longer texts are cut).")
    group_size: int = _opt(32, "int4-wo: weights per quantisation group.")
    int8_skip: str = _opt(
        "down_proj",
        "int8: linear layers left in float32, by name part, comma-separated ('' quantises all). The MLP down "
        "projections read activations with outliers that per-batch int8 activations destroy.",
    )
    measure: bool = _opt(
        True,
        "Measure the source and the compressed model (size, peak memory, tokens/s, quality) into the report.",
    )
    ppl_limit: int = _opt(10, "Quality: texts of the ppl suite (wiki_ppl) scored.")
    ppl_max_tokens: int = _opt(256, "Quality: tokens scored per ppl text.")
    math_limit: int = _opt(
        20, "Quality: questions per math dataset, answered with the Calculator (0 = skip)."
    )
    math_datasets: str = _opt("asdiv", "Quality: math datasets, comma-separated (asdiv, svamp, mawps).")
    shots: int = _opt(4, "Quality: few-shot examples in front of each math question.")
    gen_tokens: int = _opt(32, "Speed: tokens generated (greedy, batch 1) for tokens/s.")
    overwrite: bool = _opt(False, "Replace an existing output of `toolformer compress` in OUT.")
    seed: int = _opt(0, "Seed of the heal fine-tune.")

    def check(self) -> None:
        """Raise ConfigError naming the first bad field and its value."""
        if self.method not in METHODS:
            raise ConfigError(f"method={self.method!r} is not one of {', '.join(METHODS)}")
        if not str(self.out).strip():
            raise ConfigError("out='' : give an output folder (--out)")
        if self.method == "trim":
            if self.layers is None and self.keep_layers is None:
                raise ConfigError("keep_layers=None: method trim needs --keep-layers N or --layers LIST")
            if self.keep_layers is not None and self.keep_layers < 1:
                raise ConfigError(f"keep_layers={self.keep_layers!r} must be >= 1")
            self.layer_list()  # validates
        elif self.keep_layers is not None or self.layers is not None:
            raise ConfigError(f"keep_layers/layers only apply to method trim, not method={self.method!r}")
        if self.layer_choice not in LAYER_CHOICES:
            raise ConfigError(f"layer_choice={self.layer_choice!r} is not one of {', '.join(LAYER_CHOICES)}")
        if self.method.startswith("prune") and not 0.0 < self.sparsity < 1.0:
            raise ConfigError(f"sparsity={self.sparsity!r} must be between 0 and 1 (exclusive)")
        if self.heal_data is not None and self.method not in HEALABLE:
            raise ConfigError(
                f"heal_data={self.heal_data!r}: healing applies to {' and '.join(HEALABLE)}, not method={self.method!r}"
            )
        positive = {
            "heal_steps": self.heal_steps,
            "heal_batch_size": self.heal_batch_size,
            "group_size": self.group_size,
            "ppl_limit": self.ppl_limit,
            "ppl_max_tokens": self.ppl_max_tokens,
            "gen_tokens": self.gen_tokens,
        }
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be an integer >= 1")
        if self.heal_max_length < 8:
            raise ConfigError(f"heal_max_length={self.heal_max_length!r} must be at least 8 tokens")
        if not self.heal_lr > 0:
            raise ConfigError(f"heal_lr={self.heal_lr!r} must be > 0")
        for name in ("math_limit", "shots"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be >= 0")

    def layer_list(self) -> list[int] | None:
        """The explicit --layers as sorted unique indices, or None; ConfigError for anything else."""
        if self.layers is None:
            return None
        items = [s.strip() for s in str(self.layers).split(",") if s.strip()]
        if not items or not all(s.isdigit() for s in items):
            raise ConfigError(f"layers={self.layers!r} must be 0-based layer indices separated by commas")
        values = sorted({int(s) for s in items})
        if len(values) != len(items):
            raise ConfigError(f"layers={self.layers!r} names a layer twice")
        return values

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    help = classmethod(field_help)
    default = classmethod(field_default)
