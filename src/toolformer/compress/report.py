"""Write the trade-off of compressed variants: a Markdown table (report.md), every number (report.json), a plot.

Rows are variants, the first one the reference (the uncompressed model); Δ columns compare with it. The plot has
three panels: perplexity against weights on disk and against tokens/s, and math accuracy against tokens/s, one
labelled point per variant.
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolformer.compress.measure import Measurement
from toolformer.versions import dist_versions

logger = logging.getLogger(__name__)

HEADER = [
    "variant", "layers", "params (M)", "zeros %", "weights MB", "peak RSS MB", "tokens/s",
    "speed ×", "ppl", "Δppl %", "math acc %", "Δacc (pts)", "calls %",
]  # fmt: skip

CONSOLE_COLUMNS = ["variant", "params (M)", "weights MB", "peak RSS MB", "tokens/s", "ppl", "math acc %"]


@dataclass
class Variant:
    """A measured variant: its name, how it was made and its numbers."""

    name: str
    method: str
    measurement: Measurement
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None  # time to make it

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "method": self.method,
            "settings": self.settings,
            "seconds": self.seconds,
            **self.measurement.to_dict(),
        }


def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value / 1e6:,.1f}"


def _delta_pct(value: float | None, ref: float | None) -> str:
    if value is None or ref is None or ref == 0:
        return "–"
    return f"{100 * (value - ref) / ref:+.1f}"


def _delta_pts(value: float | None, ref: float | None) -> str:
    if value is None or ref is None:
        return "–"
    return f"{100 * (value - ref):+.1f}"


def table_rows(variants: Sequence[Variant]) -> list[list[str]]:
    """One row of strings per variant (the first is the reference)."""
    ref = variants[0].measurement if variants else None
    rows = []
    for v in variants:
        m = v.measurement
        zeros = None
        if m.params and m.nonzero_params is not None:
            zeros = 100 * (m.params - m.nonzero_params) / m.params
        speedup = None
        if ref is not None and m.tokens_per_second and ref.tokens_per_second:
            speedup = m.tokens_per_second / ref.tokens_per_second
        rows.append(
            [
                v.name,
                _num(m.layers, "d"),
                _num(None if m.params is None else m.params / 1e6, ".1f"),
                _num(zeros, ".1f"),
                _mb(m.weights_bytes),
                _num(m.peak_rss_mb, ",.0f"),
                _num(m.tokens_per_second, ".1f"),
                _num(speedup, ".2f"),
                _num(m.ppl, ".2f"),
                _delta_pct(m.ppl, ref.ppl if ref else None),
                _num(None if m.math_accuracy is None else 100 * m.math_accuracy, ".1f"),
                _delta_pts(m.math_accuracy, ref.math_accuracy if ref else None),
                _num(None if m.math_call_rate is None else 100 * m.math_call_rate, ".0f"),
            ]
        )
    return rows


def markdown_table(variants: Sequence[Variant]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(variants)]
    return "\n".join(lines)


def _environment() -> dict[str, Any]:
    versions = dist_versions(("torch", "transformers", "torchao"), missing=None)
    return {"python": platform.python_version(), "machine": platform.machine(), **versions}


def markdown_report(
    title: str, variants: Sequence[Variant], notes: Sequence[str] = (), plot: str | None = "plot.png"
) -> str:
    """The whole report.md text."""
    first = variants[0].measurement if variants else None
    env = _environment()
    lines = [f"# {title}", ""]
    if first is not None:
        lines.append(
            f"- measured on CPU, {first.threads} thread(s); torch {env['torch']}, transformers "
            f"{env['transformers']}, torchao {env['torchao'] or '–'}"
        )
    lines += [f"- {note}" for note in notes]
    lines += [
        "- weights MB: weight files on disk; peak RSS: peak resident memory of the measuring process after loading "
        "and generating (report.json also has its memory after importing torch and transformers; lazy imports "
        "while loading add ~250 MB, so the difference is not the model's alone)",
        "- tokens/s: greedy generate, batch 1, per CPU-second of the measuring process (wall-clock rate in "
        "report.json); speed ×: against the first row; ppl: perplexity with tools disabled (lower is better); "
        "math acc: math suite in mode tools with the Calculator; calls %: answers with a call",
        "",
        markdown_table(variants),
    ]
    extras = [v for v in variants if v.settings.get("notes")]
    for v in extras:
        lines += ["", f"{v.name}: " + "; ".join(v.settings["notes"])]
    if plot:
        lines += ["", f"![trade-off]({plot})"]
    return "\n".join(lines) + "\n"


def write_plot(variants: Sequence[Variant], path: Path) -> bool:
    """Three panels: ppl vs weights MB, ppl vs tokens/s, math accuracy vs tokens/s; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    panels = [
        (axes[0], "weights_bytes", "ppl", 1e-6, 1.0, "weights on disk (MB)", "perplexity (lower is better)"),
        (axes[1], "tokens_per_second", "ppl", 1.0, 1.0, "tokens per CPU-second (batch 1)", "perplexity"),
        (
            axes[2],
            "tokens_per_second",
            "math_accuracy",
            1.0,
            100.0,
            "tokens per CPU-second (batch 1)",
            "math acc %",
        ),
    ]
    for ax, xkey, ykey, xs, ys, xlabel, ylabel in panels:
        for v in variants:
            x, y = getattr(v.measurement, xkey), getattr(v.measurement, ykey)
            if x is None or y is None:
                continue
            ax.scatter([x * xs], [y * ys], s=40, marker="*" if v is variants[0] else "o")
            ax.annotate(v.name, (x * xs, y * ys), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    ppls = [v.measurement.ppl for v in variants if v.measurement.ppl]
    if ppls and max(ppls) > 10 * min(ppls):  # one broken variant would flatten the others
        axes[0].set_yscale("log")
        axes[1].set_yscale("log")
    axes[0].set_title("Size vs perplexity")
    axes[1].set_title("Speed vs perplexity")
    n = variants[0].measurement.math_n if variants else None
    axes[2].set_title(f"Speed vs math accuracy (n={n})" if n else "Speed vs math accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(
    out: str | Path,
    title: str,
    variants: Sequence[Variant],
    notes: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
    plot: bool = True,
) -> dict[str, Path]:
    """Write report.md, report.json and (with matplotlib and something to plot) plot.png into `out`."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"md": folder / "report.md", "json": folder / "report.json"}
    drew = plot and write_plot(variants, folder / "plot.png")
    if drew:
        paths["png"] = folder / "plot.png"
    paths["md"].write_text(
        markdown_report(title, variants, notes, "plot.png" if drew else None), encoding="utf-8"
    )
    data = {
        "title": title,
        "notes": list(notes),
        "environment": _environment(),
        "variants": [v.to_dict() for v in variants],
        **(extra or {}),
    }
    paths["json"].write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return paths
