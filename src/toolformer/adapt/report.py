"""The report of one `toolformer adapt` run: `adapt_report.json` (everything) and `adapt_report.md` (for people).

The Markdown has the setup, the metric table (dev before training, dev with the best weights, test), the dev curve,
the training summary and a few dev predictions. All metrics are percentages except `loss` (mean cross-entropy).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from toolformer.adapt.config import METRICS, REPORT_JSON, REPORT_MD


@dataclass
class AdaptReport:
    out: str
    task: str
    base_model: str
    mode: str  # full, lora-merged, lora-adapter
    device: str = "cpu"
    bf16: bool = False
    metric: str = ""  # the dev metric that picked the weights
    data: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0
    head_modules: list[str] = field(default_factory=list)
    steps: int = 0
    max_steps: int = 0
    epochs: float = 0.0
    stopped_early: bool = False
    best_step: int | None = None
    baseline: dict[str, float] | None = None  # dev metrics before training (step 0)
    dev: dict[str, float] = field(default_factory=dict)  # dev metrics of the saved (best) weights
    test: dict[str, float] | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)  # dev metrics at each evaluation
    losses: list[dict[str, Any]] = field(default_factory=list)  # training loss log
    train_seconds: float = 0.0
    seconds: float = 0.0
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)  # a few dev predictions
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaptReport:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def metric_rows(self) -> list[tuple[str, str, str, str]]:
        """(metric, before, best dev, test) rows, formatted, in the task's metric order."""
        rows = []
        for name in METRICS.get(self.task, ()):
            if name not in self.dev:
                continue
            before = _fmt(self.baseline.get(name)) if self.baseline else "-"
            test = _fmt(self.test.get(name)) if self.test else "-"
            rows.append((name, before, _fmt(self.dev.get(name)), test))
        return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{float(value):.2f}"


def _cell(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_markdown(report: AdaptReport) -> str:
    """The Markdown report."""
    d = report.data
    lines = [
        f"# toolformer adapt: {report.task}",
        "",
        f"- model: `{report.base_model}` ({report.mode}, {report.device}{', bf16' if report.bf16 else ''}); "
        f"trainable parameters {report.trainable_params:,} of {report.total_params:,}"
        + (f"; new head: {', '.join(report.head_modules)}" if report.head_modules else ""),
        f"- data: {d.get('train', {}).get('examples', 0)} train, {d.get('dev', {}).get('examples', 0)} dev"
        + (f" ({d['dev'].get('from')})" if d.get("dev", {}).get("from") == "split" else "")
        + (f", {d['test']['examples']} test" if d.get("test") else ""),
    ]
    for split in ("train", "dev", "test"):
        dropped = (d.get(split) or {}).get("dropped") or {}
        if dropped:
            lines.append(f"- {split} rows dropped: " + ", ".join(f"{r} ({n})" for r, n in dropped.items()))
    if report.labels:
        shown = ", ".join(report.labels[:20]) + (" …" if len(report.labels) > 20 else "")
        lines.append(f"- labels ({len(report.labels)}): {shown}")
    lines += [
        f"- steps: {report.steps} of {report.max_steps}"
        + (" (stopped early)" if report.stopped_early else "")
        + f", {report.epochs:.2f} epochs, best dev {report.metric} at step {report.best_step}; "
        f"training {report.train_seconds:.0f} s, whole run {report.seconds:.0f} s",
        "",
        "## Metrics (percent; loss = mean cross-entropy)",
        "",
        "| metric | dev before training | dev, best weights | test |",
        "|---|---:|---:|---:|",
    ]
    for name, before, dev, test in report.metric_rows():
        mark = " (selection)" if name == report.metric else ""
        lines.append(f"| {name}{mark} | {before} | {dev} | {test} |")
    if report.curve:
        keys = [m for m in METRICS.get(report.task, ()) if m in report.curve[0]]
        lines += [
            "",
            "## Dev curve",
            "",
            "| step | " + " | ".join(keys) + " |",
            "|---:|" + "---:|" * len(keys),
        ]
        for entry in report.curve:
            lines.append(f"| {entry['step']} | " + " | ".join(_fmt(entry.get(k)) for k in keys) + " |")
    if report.examples:
        lines += [
            "",
            "## Dev predictions (first 5)",
            "",
            "| id | input | gold | prediction |",
            "|---|---|---|---|",
        ]
        for ex in report.examples:
            shown_input = ex.get("text") or ex.get("question") or ex.get("source") or ex.get("tokens") or ""
            lines.append(
                f"| {_cell(ex.get('id'), 24)} | {_cell(shown_input)} | {_cell(ex.get('gold'), 40)} | "
                f"{_cell(ex.get('prediction'), 40)} |"
            )
    hp = ", ".join(f"{k}={v}" for k, v in report.hyperparameters.items())
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items())
    lines += ["", "## Setup", "", f"- hyperparameters: {hp}", f"- versions: {versions}", ""]
    return "\n".join(lines)


def write_report(report: AdaptReport, out: Path) -> tuple[Path, Path]:
    """Write adapt_report.md, then adapt_report.json (last: it marks the run as finished)."""
    md = out / REPORT_MD
    md.write_text(to_markdown(report), encoding="utf-8")
    js = out / REPORT_JSON
    js.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return md, js
