"""`EvalConfig`: every setting of an evaluation run, with help text; it feeds the CLI and goes into results.json.

Cheap to import (no torch): the CLI reads the help texts and defaults from it at import time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from toolformer.configs import field_default, field_help
from toolformer.errors import ConfigError
from toolformer.models.aliases import DEFAULT_MODEL

MODES = ("tools", "disabled", "baseline")


@dataclass
class EvalConfig:
    """One evaluation: a model (and optionally a baseline model) on one suite, in several modes."""

    model: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "Model to evaluate: a directory, a GGUF file, an alias or a hub id."},
    )
    suite: str = field(
        default="math",
        metadata={
            "help": "Suite: math, facts, qa, temporal, ppl (perplexity), notool (prompts where any call is "
            "wrong), bfcl (BFCL function calling through the chat API) or all (every suite but bfcl, one report)."
        },
    )
    datasets: str | None = field(
        default=None,
        metadata={
            "help": "Only these datasets of the suite, comma-separated (e.g. asdiv,svamp); default all."
        },
    )
    data: str | None = field(
        default=None,
        metadata={
            "help": "A JSONL file with the suite's fields to evaluate instead of the shipped dev files "
            "(math: question, answer, optional formula/equation; facts: question with [MASK], answer; "
            "qa: question, answers; choice: question, options, answer; ppl: text; notool: question, or text "
            "to continue). Suite bfcl: a bfcl-eval wheel (pip download bfcl-eval --no-deps) or a folder of "
            "BFCL data files instead of the shipped copy."
        },
    )
    baseline: str | None = field(
        default=None,
        metadata={
            "help": "A second model run side by side as mode 'baseline' (e.g. the untrained base model). "
            "Like the paper's baselines it runs without tools (p('[') = 0) unless --baseline-tools."
        },
    )
    baseline_tools: bool = field(
        default=False,
        metadata={"help": "Run the baseline with the same tools and trigger as mode 'tools' instead."},
    )
    modes: str = field(
        default="tools,disabled",
        metadata={
            "help": "Modes for MODEL, comma-separated: tools (greedy, calls on, trigger top-k) and/or disabled "
            "(p('[') = 0). 'baseline' is added when --baseline is given."
        },
    )
    shots: int = field(
        default=0,
        metadata={
            "help": "Few-shot examples in front of each question (0 = zero-shot, as in the paper; "
            "untrained models need 3-4)."
        },
    )
    limit: int | None = field(
        default=None,
        metadata={"help": "Evaluate the first N scorable records of each dataset (default: all)."},
    )
    trigger_top_k: int = field(
        default=10,
        metadata={
            "help": "Mode 'tools': start a call whenever '[' is in the top-k tokens (paper: 10; 0 = off)."
        },
    )
    sweep_k: str | None = field(
        default=None,
        metadata={
            "help": "Also run mode 'tools' at each of these trigger top-k values, e.g. 0,1,3,10 (paper Table 9), "
            "reporting accuracy and call rate per k."
        },
    )
    max_calls: int = field(default=1, metadata={"help": "Tool calls allowed per answer (paper: 1)."})
    batch_size: int = field(default=8, metadata={"help": "Prompts decoded together."})
    max_new_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Tokens the model may write per answer (default: math 40, facts 32, qa 48, temporal 48 or 40, "
            "bfcl 256)."
        },
    )
    tools: str | None = field(
        default=None,
        metadata={
            "help": "Tools for mode 'tools' (default: the five built-ins); the paper's blocked tools are "
            "removed per suite (WikiSearch on facts, QA on qa)."
        },
    )
    corpus: str | None = field(
        default=None,
        metadata={
            "help": "JSONL corpus for WikiSearch and QA (default: the shipped 10k-article one); a bigger corpus "
            "(e.g. a full Wikipedia dump) lifts the tool ceiling."
        },
    )
    blocked: str | None = field(
        default=None,
        metadata={
            "help": "Tools mode 'tools' leaves out, comma-separated, instead of the suite's (the paper's: WikiSearch "
            "on facts, QA on qa); none leaves none out, e.g. for your own --data answered from --corpus."
        },
    )
    ceiling: bool | None = field(
        default=None,
        metadata={
            "help": "Compute each dataset's tool ceiling (share of examples whose tool output holds the gold "
            "answer, tools only, no model); default: on when mode tools runs."
        },
    )
    ppl_max_tokens: int = field(
        default=512, metadata={"help": "ppl: score at most this many tokens per text."}
    )
    device: str = field(default="cpu", metadata={"help": "Torch device for the models."})
    out: str = field(
        default="eval-out",
        metadata={"help": "Output folder for report.md, results.json, predictions.jsonl and plot.png."},
    )

    def __post_init__(self) -> None:
        for name in ("batch_size", "ppl_max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("shots", "trigger_top_k", "max_calls"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        for mode in self.mode_list():
            if mode not in MODES:
                raise ConfigError(f"modes={self.modes!r}: {mode!r} is not one of {', '.join(MODES)}")
        if "baseline" in self.mode_list() and not self.baseline:
            raise ConfigError(f"modes={self.modes!r} names 'baseline' but no --baseline model is given")
        if self.data and self.suite == "all":
            raise ConfigError(f"data={self.data!r} cannot be combined with suite='all' (name one suite)")
        if self.data and self.datasets and self.suite != "bfcl":
            raise ConfigError(f"datasets={self.datasets!r} cannot be combined with data={self.data!r}")
        self.sweep_values()  # validates
        if not self.mode_list() and not self.sweep_values():
            raise ConfigError(f"modes={self.modes!r} selects nothing to run")

    def mode_list(self) -> list[str]:
        """The modes to run, in report order; 'baseline' joins when a baseline model is given."""
        modes = [m.strip() for m in self.modes.split(",") if m.strip()]
        if self.baseline and "baseline" not in modes:
            modes.append("baseline")
        return modes

    def blocked_tools(self) -> tuple[str, ...] | None:
        """The tools `blocked` names (none: an empty tuple), or None to keep each suite's own."""
        if self.blocked is None:
            return None
        names = [n.strip() for n in self.blocked.split(",") if n.strip()]
        return () if [n.lower() for n in names] == ["none"] else tuple(names)

    def sweep_values(self) -> list[int]:
        """The trigger top-k values of the sweep (empty without --sweep-k)."""
        if not self.sweep_k:
            return []
        values: list[int] = []
        for item in str(self.sweep_k).split(","):
            item = item.strip()
            if not item:
                continue
            if not item.isdigit():
                raise ConfigError(f"sweep_k={self.sweep_k!r}: {item!r} is not a whole number >= 0")
            if int(item) not in values:
                values.append(int(item))
        return values

    def ceiling_on(self) -> bool:
        """Whether the tool ceiling is computed: as asked, else when mode tools (or a sweep) runs."""
        if self.ceiling is not None:
            return self.ceiling
        return "tools" in self.mode_list() or bool(self.sweep_values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    help = classmethod(field_help)
    default = classmethod(field_default)
