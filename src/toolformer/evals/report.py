"""Write an evaluation's outputs: report.md (tables), results.json, predictions.jsonl, plot.png; and a rich table.

report.md tables: accuracy per dataset (rows) and mode (columns) with the share of examples with a call, tool use
per tool, and the trigger top-k sweep. results.json holds the config and every number; predictions.jsonl one line
per example and mode (prompt, text with calls, answer the metric read, extracted value, gold, correct, calls).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from toolformer.evals.evaluate import EvalResults, Run

logger = logging.getLogger(__name__)

METRIC_NOTES = {
    "math": "first number of the answer (calls removed) equals the gold within max(0.01, 1e-4·|gold|)",
    "cloze": "the gold word among the first 5 words of the continuation (SQuAD-normalised)",
    "qa": "a gold answer among the first 20 words (SQuAD-normalised)",
    "choice": "the first option named (by letter or date text) in the first 20 words is the gold one",
    "ppl": "perplexity of the text with p('[') = 0 (lower is better); tools mode is not computed",
}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _cell(run: Run, dataset: str) -> str:
    score = run.by_dataset.get(dataset)
    if score is None:
        return "n/a"
    if score.ppl is not None:
        return f"{score.ppl:.2f}"
    return _pct(score.accuracy)


def _mode_label(results: EvalResults, run: Run) -> str:
    if run.mode == "baseline":
        how = "tools" if run.uses_tools else "no tools"
        return f"baseline ({Path(run.model).name or run.model}, {how})"
    if run.mode == "tools":
        return f"tools (k={run.trigger_top_k})"
    return run.mode


def main_table(results: EvalResults) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the main table: datasets × modes, then the call rate of each tool-using mode."""
    main = [results.run(m) for m in results.modes()]
    with_tools = [r for r in main if r.uses_tools]
    header = ["dataset", "n", *(_mode_label(results, r) for r in main)]
    header += [f"calls % ({r.mode})" for r in with_tools]
    rows = []
    for info in results.datasets:
        row = [info.name, str(info.n), *(_cell(r, info.name) for r in main)]
        for r in with_tools:
            score = r.by_dataset.get(info.name)
            row.append("n/a" if score is None else _pct(score.call_rate))
        rows.append(row)
    return header, rows


def tool_table(results: EvalResults) -> tuple[list[str], list[list[str]]]:
    """Share of examples calling each tool, per dataset and tool-using run; calls that returned an error."""
    runs = [r for r in results.runs if r.uses_tools]
    names = sorted({t for r in runs for s in r.by_dataset.values() for t in s.per_tool})
    header = ["dataset", "run", "any call", *names, "tool errors"]
    rows = []
    for info in results.datasets:
        for r in runs:
            score = r.by_dataset.get(info.name)
            if score is None or score.ppl is not None:
                continue
            per = [_pct(score.per_tool.get(t, 0) / score.n if score.n else None) for t in names]
            rows.append([info.name, r.mode, _pct(score.call_rate), *per, str(score.call_errors)])
    return header, rows


def sweep_table(results: EvalResults) -> tuple[list[str], list[list[str]]]:
    """Accuracy % / % of examples with a call, per dataset and trigger top-k (paper Table 9)."""
    points = results.sweep()
    header = ["dataset", *(f"k={r.trigger_top_k}" for r in points)]
    rows = []
    for info in results.datasets:
        if info.kind == "ppl":
            continue
        cells = []
        for r in points:
            score = r.by_dataset.get(info.name)
            cells.append("n/a" if score is None else f"{_pct(score.accuracy)} / {_pct(score.call_rate)}")
        rows.append([info.name, *cells])
    return header, rows


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_report(results: EvalResults, plot: str | None = "plot.png") -> str:
    """The whole report.md text."""
    cfg = results.config
    kinds = sorted({d.kind for d in results.datasets})
    lines = [
        f"# Evaluation: `{cfg.model}` on suite `{cfg.suite}`",
        "",
        f"- shots: {cfg.shots} ({'zero-shot, as in the paper' if cfg.shots == 0 else 'few-shot'}); greedy decoding; "
        f"at most {cfg.max_calls} call(s) per answer; trigger top-k {cfg.trigger_top_k} in mode tools",
        f"- baseline: {cfg.baseline or '–'}"
        + (
            f" ({'with the same tools' if cfg.baseline_tools else 'no tools, p([) = 0'})"
            if cfg.baseline
            else ""
        ),
        f"- limit: {cfg.limit or 'all'} per dataset; {results.seconds:.0f} s in all",
    ]
    for info in results.datasets:
        skipped = f"; skipped {info.skipped} ({', '.join(f'{k}: {v}' for k, v in info.skip_reasons.items())})"
        lines.append(
            f"- {info.name}: {info.n} examples from `{info.path}`{skipped if info.skipped else ''}; "
            f"tools: {', '.join(info.tools) or '–'}"
        )
    lines += [
        "",
        "## Results (accuracy %, lenient; ppl rows: perplexity)",
        "",
        _markdown(*main_table(results)),
    ]
    lines += ["", "Metrics:"] + [f"- {k}: {METRIC_NOTES[k]}" for k in kinds]
    tool_header, tool_rows = tool_table(results)
    if tool_rows:
        lines += [
            "",
            "## Tool use (% of examples with a call to each tool)",
            "",
            _markdown(tool_header, tool_rows),
        ]
    if results.sweep():
        lines += [
            "",
            "## Trigger top-k sweep (accuracy % / % with a call)",
            "",
            _markdown(*sweep_table(results)),
        ]
    if plot:
        lines += ["", f"![results]({plot})"]
    return "\n".join(lines) + "\n"


def write_plot(results: EvalResults, path: Path) -> bool:
    """Grouped bars per dataset per mode (accuracy), perplexity and the sweep in their own panels; False if no
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    main = [results.run(m) for m in results.modes()]
    acc = [d for d in results.datasets if d.kind != "ppl"]
    ppl = [d for d in results.datasets if d.kind == "ppl"]
    points = results.sweep()
    panels = [p for p in (("acc", acc), ("ppl", ppl)) if p[1]] + ([("sweep", acc)] if points and acc else [])
    fig, axes = plt.subplots(
        1, len(panels), figsize=(max(6, 2.2 * len(acc) + 3) * len(panels), 4.5), squeeze=False
    )
    for ax, (panel, infos) in zip(axes[0], panels):
        if panel == "sweep":
            for info in infos:
                ks = [r.trigger_top_k for r in points]
                ax.plot(
                    ks, [100 * (r.by_dataset[info.name].accuracy or 0) for r in points], "o-", label=info.name
                )
                ax.plot(
                    ks, [100 * (r.by_dataset[info.name].call_rate or 0) for r in points], "x--", alpha=0.5,
                    label=f"{info.name} calls",
                )  # fmt: skip
            ax.set_xlabel("trigger top-k")
            ax.set_ylabel("% (solid: accuracy, dashed: with a call)")
            ax.set_title("Trigger sweep")
            ax.legend(fontsize=7)
            continue
        runs = [r for r in main if any(d.name in r.by_dataset for d in infos)]
        width = 0.8 / max(1, len(runs))
        for j, r in enumerate(runs):
            values = []
            for info in infos:
                score = r.by_dataset.get(info.name)
                if score is None:
                    values.append(0.0)
                elif panel == "ppl":
                    values.append(score.ppl or 0.0)
                else:
                    values.append(100 * (score.accuracy or 0.0))
            xs = [i + (j - (len(runs) - 1) / 2) * width for i in range(len(infos))]
            bars = ax.bar(xs, values, width, label=_mode_label(results, r))
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_xticks(range(len(infos)), [d.name for d in infos])
        ax.set_ylabel("perplexity (lower is better)" if panel == "ppl" else "accuracy %")
        ax.set_title(f"{results.config.model} · {results.config.suite} · {results.config.shots}-shot")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_outputs(results: EvalResults, out: str | Path) -> dict[str, Path]:
    """Write report.md, results.json, predictions.jsonl and plot.png into `out`; returns their paths."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "results": folder / "results.json",
        "predictions": folder / "predictions.jsonl",
        "report": folder / "report.md",
        "plot": folder / "plot.png",
    }
    paths["results"].write_text(
        json.dumps(results.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    with paths["predictions"].open("w", encoding="utf-8") as fh:
        for pred in results.predictions:
            fh.write(json.dumps(pred.to_dict(), ensure_ascii=False) + "\n")
    plotted = write_plot(results, paths["plot"])
    if not plotted:
        paths.pop("plot")
    paths["report"].write_text(markdown_report(results, "plot.png" if plotted else None), encoding="utf-8")
    return paths


def rich_tables(results: EvalResults) -> list[Any]:
    """The report's tables as rich Tables, for the terminal."""
    from rich.table import Table

    out = []
    for title, (header, rows) in [
        (
            f"{results.config.model} · {results.config.suite} · {results.config.shots}-shot (accuracy %)",
            main_table(results),
        ),
        ("Tool use (% of examples)", tool_table(results)),
        (
            "Trigger top-k sweep (accuracy % / % with a call)",
            sweep_table(results) if results.sweep() else ([], []),
        ),
    ]:
        if not rows:
            continue
        table = Table(title=title)
        for i, col in enumerate(header):
            table.add_column(col, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*row)
        out.append(table)
    return out
