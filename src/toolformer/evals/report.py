"""Write an evaluation's outputs: report.md (tables), results.json, predictions.jsonl, ceiling.jsonl, plot.png.

report.md: notices first (e.g. a tool mode that made no call), then accuracy per dataset (rows) and mode (columns)
with the share of examples with a call, the tool ceiling and how much of it mode tools realises, tool choice (%
of examples calling each tool, paper Table 10), perplexity with tools disabled against the baseline (Table 8),
why mode tools' math answers are wrong (`evals.analysis`) and the trigger top-k sweep. results.json holds the
config and every number; predictions.jsonl one line per example and mode (prompt, text with calls, answer the
metric read, extracted value, gold, correct, calls); ceiling.jsonl one line per example of the ceiling (tool,
input, output, hit).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from toolformer.evals import analysis, suites
from toolformer.evals.results import EvalResults, Run

logger = logging.getLogger(__name__)

METRIC_NOTES = {
    "math": "first number of the answer (calls removed) equals the gold within max(0.01, 1e-4·|gold|)",
    "cloze": "the gold word among the first 5 words of the continuation (SQuAD-normalised)",
    "qa": "a gold answer among the first 20 words (SQuAD-normalised)",
    "choice": "the first option named (by letter or date text) in the first 20 words is the gold one",
    "ppl": "perplexity of the text with p('[') = 0 (lower is better); tools mode is not computed",
    "continuation": "no-tool set: % of continuations with no call, finished or started (any call is wrong)",
    "chat": "no-tool set: % of answers with no call, finished or started (any call is wrong)",
    "function": "BFCL's AST checker (name, required and unexpected parameters, types, possible values; parallel "
    "calls order-free; irrelevance: no call); strict reads only the reply's tool_calls, -tolerant also JSON calls "
    "in its text",
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
        return "tools (strict)" if results.config.suite == "bfcl" else f"tools (k={run.trigger_top_k})"
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
    """Tool choice (paper Table 10): share of examples calling each tool, per dataset and tool-using run ("–":
    the tool is not available on that dataset); calls that returned an error."""
    runs = [r for r in results.runs if r.uses_tools]
    names: list[str] = []
    for info in results.datasets:
        names += [t for t in info.tools if t not in names]
    names += sorted({t for r in runs for s in r.by_dataset.values() for t in s.per_tool} - set(names))
    header = ["dataset", "run", "any call", *names, "tool errors"]
    rows = []
    for info in results.datasets:
        for r in runs:
            score = r.by_dataset.get(info.name)
            if score is None or score.ppl is not None:
                continue
            per = [_pct(score.tool_rate(t)) if t in info.tools or t in score.per_tool else "–" for t in names]
            rows.append([info.name, r.mode, _pct(score.call_rate), *per, str(score.call_errors)])
    return header, rows


def ceiling_table(results: EvalResults) -> tuple[list[str], list[list[str]]]:
    """Per dataset: the tool, the ceiling (% of examples whose tool output holds the gold), mode tools'
    accuracy and the share of the ceiling it realises."""
    header = ["dataset", "tool", "tool input", "n", "checked", "ceiling %", "tools acc %", "realised %"]
    rows = []
    no_answer = {d.name for d in results.datasets if d.kind in ("ppl", *suites.NO_TOOL_KINDS)}
    for name, c in results.ceiling().items():
        if name in no_answer:
            continue  # in results.json with its reason; a table row would only say "no answer"
        if c["reason"] is not None:
            rows.append([name, c["tool"] or "–", "–", str(c["n"]), "–", "n/a", "–", f"n/a: {c['reason']}"])
            continue
        rows.append(
            [
                name,
                c["tool"],
                c["input"] or "–",
                str(c["n"]),
                str(c["checked"]),
                _pct(c["ceiling"]),
                _pct(c["tools_accuracy"]),
                _pct(c["realised"]),
            ]
        )
    return header, rows


def perplexity_table(results: EvalResults) -> tuple[list[str], list[list[str]]]:
    """Perplexity with tools disabled, MODEL against the baseline, and the relative difference (Table 8)."""
    cfg = results.config
    header = [
        "dataset",
        f"{_short(cfg.model)} (disabled)",
        f"{_short(cfg.baseline or '–')} (baseline)",
        "Δ %",
    ]
    rows = []
    for name, p in results.perplexity().items():
        rows.append(
            [
                name,
                _num(p["model_ppl"]),
                _num(p["baseline_ppl"]),
                "–" if p["relative_difference"] is None else f"{100 * p['relative_difference']:+.1f}",
            ]
        )
    return header, rows


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _short(name: str) -> str:
    return Path(name).name or name


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
        f"- search corpus (WikiSearch, QA): {cfg.corpus or 'the shipped one'}",
    ]
    for info in results.datasets:
        skipped = f"; skipped {info.skipped} ({', '.join(f'{k}: {v}' for k, v in info.skip_reasons.items())})"
        shots = f"; {info.shots} shots" if info.shots != cfg.shots else ""
        lines.append(
            f"- {info.name}: {info.n} examples from `{info.path}`{skipped if info.skipped else ''}; "
            f"tools: {', '.join(info.tools) or '–'}{shots}"
        )
    notices = results.notices()
    if notices:
        lines += [""] + [f"> **Note:** {n}" for n in notices]
    lines += [
        "",
        "## Results (accuracy %, lenient; ppl rows: perplexity; no-tool rows: % of answers without a call)",
        "",
        _markdown(*main_table(results)),
    ]
    lines += ["", "Metrics:"] + [f"- {k}: {METRIC_NOTES[k]}" for k in kinds]
    ceiling_header, ceiling_rows = ceiling_table(results)
    if ceiling_rows:
        lines += [
            "",
            "## Tool ceiling (% of examples whose tool output holds the gold answer; tools only, no model)",
            "",
            _markdown(ceiling_header, ceiling_rows),
            "",
            "Realised: mode tools' accuracy as a share of the ceiling. The tools search the corpus named above; "
            "a bigger one (`--corpus`) lifts the ceiling. Per example: `ceiling.jsonl`.",
        ]
    tool_header, tool_rows = tool_table(results)
    if tool_rows:
        lines += [
            "",
            "## Tool choice (% of examples calling each tool; paper Table 10)",
            "",
            _markdown(tool_header, tool_rows),
        ]
    ppl_header, ppl_rows = perplexity_table(results)
    if ppl_rows:
        lines += [
            "",
            "## Perplexity with tools disabled (paper Table 8; lower is better)",
            "",
            _markdown(ppl_header, ppl_rows),
            "",
            "Δ: the model's perplexity relative to the baseline's (model / baseline − 1); tools should cost no "
            "language modelling.",
        ]
    if results.errors:
        lines += [
            "",
            "## Why math answers are wrong (mode tools; % of the wrong answers, count in parentheses)",
            "",
            _markdown(*analysis.error_table(results.errors)),
            "",
            analysis.NOTE,
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
    # Each panel as wide as its datasets need (a lone ppl bar must not take half of a 14-dataset figure).
    widths = [max(2.5, 1.1 * len(infos) + 1.5) if panel != "sweep" else 6.0 for panel, infos in panels]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(sum(widths), 4.5), squeeze=False, gridspec_kw={"width_ratios": widths}
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
        ax.set_xticks(
            range(len(infos)),
            [d.name for d in infos],
            rotation=30 if len(infos) > 6 else 0,
            ha="right" if len(infos) > 6 else "center",
        )
        ax.set_ylabel("perplexity (lower is better)" if panel == "ppl" else "accuracy %")
        ax.set_title(f"{results.config.model} · {results.config.suite} · {results.config.shots}-shot")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def portable_model_name(name: str | None, cwd: Path | None = None) -> str | None:
    """A model name that means the same on another machine, for published results.

    An alias, a hub id or a relative path stays as the user gave it; an absolute path under the current directory
    becomes relative to it; any other absolute path keeps its last two components (`/work/runs/m1` → `runs/m1`).
    """
    if not name or not str(name).startswith(("/", "~")) and not Path(name).is_absolute():
        return name
    path = Path(name).expanduser()
    base = cwd or Path.cwd()
    for inside, root in ((path.absolute(), base.absolute()), (path.resolve(), base.resolve())):
        if inside.is_relative_to(root):
            return inside.relative_to(root).as_posix()
    return "/".join(path.parts[-2:]) if len(path.parts) > 2 else path.name or str(name)


def portable_data_path(path: str) -> str:
    """A dataset path for published results: a shipped dev file as `toolformer/data/evals/NAME`, another path as
    `portable_model_name` writes it."""
    from toolformer.evals.suites import SUITES

    shipped = {
        Path(str(spec.location())).resolve(): spec.file
        for specs in SUITES.values()
        for spec in specs
        if spec.file
    }
    name = shipped.get(Path(path).resolve()) if path else None
    return f"toolformer/data/evals/{name}" if name else (portable_model_name(path) or path)


def _portable(results: EvalResults) -> EvalResults:
    """`results` with every model, the output folder and every dataset named portably (`portable_model_name`,
    `portable_data_path`): what report.md, results.json and plot.png show never names a path of this machine."""
    from dataclasses import replace

    config = replace(
        results.config,
        model=portable_model_name(results.config.model),
        baseline=portable_model_name(results.config.baseline),
        out=portable_model_name(str(results.config.out)) if results.config.out else results.config.out,
    )
    runs = [replace(r, model=portable_model_name(r.model)) for r in results.runs]
    datasets = [replace(d, path=portable_data_path(d.path)) for d in results.datasets]
    return replace(results, config=config, runs=runs, datasets=datasets)


def write_outputs(results: EvalResults, out: str | Path) -> dict[str, Path]:
    """Write report.md, results.json, predictions.jsonl, plot.png and (with a ceiling) ceiling.jsonl into `out`;
    returns their paths.

    Models are named portably (`portable_model_name`), never by a path of this machine.
    """
    results = _portable(results)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "results": folder / "results.json",
        "predictions": folder / "predictions.jsonl",
        "report": folder / "report.md",
        "plot": folder / "plot.png",
    }
    if results.ceilings:
        paths["ceiling"] = folder / "ceiling.jsonl"
        with paths["ceiling"].open("w", encoding="utf-8") as fh:
            for ceiling in results.ceilings.values():
                for example in ceiling.examples:
                    fh.write(json.dumps(example.to_dict(), ensure_ascii=False) + "\n")
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
        ("Tool ceiling (tools only)", ceiling_table(results)),
        ("Tool choice (% of examples calling each tool)", tool_table(results)),
        ("Perplexity, tools disabled (Δ: model / baseline − 1)", perplexity_table(results)),
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
