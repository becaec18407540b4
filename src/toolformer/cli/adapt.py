"""`toolformer adapt`: adapt a model to a labelled task (classification, ner, qa, seq2seq)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from toolformer.adapt.config import AdaptConfig
from toolformer.cli.common import clean_errors, console
from toolformer.cli.options import FINETUNE_OPTIONS, config_command, opt


@clean_errors
@config_command(
    AdaptConfig,
    *FINETUNE_OPTIONS,
    opt("train", argument=True, required=True),
    opt("task", "--task", required=True),
    opt("out", "--out", "-o", required=True),
    opt("format", "--format"),
)
def adapt_command(
    config: AdaptConfig,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Adapt a model to a labelled task: `toolformer adapt train.jsonl --task classification --out DIR`.

    Tasks: classification, ner, qa (extractive), seq2seq. LoRA adapters plus a trained task head by default
    (--full for every weight); early stopping on the dev metric. OUT becomes a Hugging Face model folder with
    adapt_report.md / adapt_report.json and predictions.jsonl.
    """
    from toolformer.adapt import adapt

    report = adapt(config, progress=not quiet)
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{report.task}: {report.base_model} → {report.out} ({report.mode})")
    for col in ("metric", "dev before", "dev best", "test"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for name, before, best, test_value in report.metric_rows():
        table.add_row(name + (" *" if name == report.metric else ""), before, best, test_value)
    console.print(table)
    console.print(
        f"{report.steps} steps{' (stopped early)' if report.stopped_early else ''}, best at step {report.best_step}; "
        f"{report.data['train']['examples']} train / {report.data['dev']['examples']} dev rows; "
        f"report: {Path(report.out) / 'adapt_report.md'}",
        highlight=False,
    )
