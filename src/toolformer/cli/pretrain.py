"""`toolformer pretrain`: train a small Llama from random weights on a text corpus, and show its report."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from toolformer.cli.common import clean_errors, console, fmt_loss
from toolformer.cli.options import config_command, opt
from toolformer.pretrain.config import PretrainConfig


@clean_errors
@config_command(
    PretrainConfig,
    opt("corpus", argument=True, required=True),
    opt("out", "--out", "-o", required=True),
    opt("learning_rate", "--lr", param="lr"),
    order="corpus out size",
)
def pretrain_command(
    config: PretrainConfig,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Pretrain a small Llama from scratch: `toolformer pretrain corpus.jsonl --out model/ --size 10m`.

    CORPUS is a JSONL file (--text-field), a text file (documents separated by blank lines) or a folder of them.
    Sizes: tiny (1.6M parameters, for tests), 10m (9.4M), 30m (29.4M); SmolLM2's tokenizer, tied embeddings.
    OUT becomes a Hugging Face model folder (`toolformer ask --model OUT`, `toolformer eval OUT`) with
    pretrain_report.json and loss.png; checkpoints go to OUT/checkpoints (rerun with --resume after a kill),
    TensorBoard logs to OUT/tensorboard.
    """
    from toolformer.pretrain.trainer import pretrain

    report = pretrain(config, progress=not quiet)
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return
    table = Table(title=f"Pretrained {report.size} ({report.parameters:,} parameters) → {report.out}")
    table.add_column("", style="bold")
    table.add_column("")
    docs = report.documents
    first_last = report.dev_curve[:1] + report.dev_curve[-1:]
    rows = [
        ("device", f"{report.device}{', bf16' if report.bf16 else ''}"),
        ("steps", f"{report.steps} of {report.planned_steps}" + (f" (resumed at {report.start_step})" if report.resumed_from else "")),
        ("tokens seen", f"{report.tokens_seen:,} ({report.epochs:.2f} epochs of {report.train.get('tokens', 0):,})"),
        ("documents", f"{docs.get('train', 0)} train, {docs.get('dev', 0)} dev, {docs.get('with_call', 0)} with a call"),
        ("final loss", fmt_loss(report.losses[-1]["loss"] if report.losses else None)),
        ("dev ppl", " → ".join(f"{d['ppl']:,.2f}" for d in first_last) or "-"),
        ("tokens/s", f"{report.tokens_per_second:,.0f}" if report.tokens_per_second else "-"),
        ("stopped by", report.stopped_by),
        ("plot", report.plot or "-"),
    ]  # fmt: skip
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    console.print(f'use it: toolformer ask --model {report.out} "What is 23 times 47?"', highlight=False)
