"""`toolformer train`: fine-tune a model on texts with inline calls (paper §2), and show its report."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from toolformer.cli.common import clean_errors, console, err_console, fmt_loss
from toolformer.cli.options import FINETUNE_OPTIONS, config_command, opt
from toolformer.train.config import TrainConfig, parse_mix_ratio


@clean_errors
@config_command(
    TrainConfig,
    *FINETUNE_OPTIONS,
    opt("data", argument=True, required=True),
    opt("out", "--out", "-o", required=True),
    opt("mix_ratio", type=str, default=str(TrainConfig.mix_ratio), convert=parse_mix_ratio),
    skip="weight_decay logging_steps",
)
def train_command(
    config: TrainConfig,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the training report as JSON."),
) -> None:
    """Fine-tune a model on texts with inline calls (paper §2): `toolformer train augmented/ --out tuned/`.

    DATA is an output folder of `toolformer annotate`, a JSONL file or a folder of JSONL files. OUT becomes a
    Hugging Face model folder (`toolformer ask --model OUT`) with train_config.json and train_report.json;
    checkpoints go to OUT/checkpoints (rerun with --resume after a kill), TensorBoard logs to OUT/tensorboard.
    """
    from toolformer.train import train

    report = train(config, progress=not quiet)
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return
    table = Table(title=f"Trained {report.base_model} → {report.out}")
    table.add_column("", style="bold")
    table.add_column("")
    share = "-" if report.call_share is None else f"{report.call_share:.0%}"
    best = report.best or {}
    rows = [
        ("mode", f"{report.mode}, {report.device}{', bf16' if report.bf16 else ''}"),
        (
            "steps",
            f"{report.steps}" + (f" (resumed at {report.start_step})" if report.resumed_from else ""),
        ),
        ("texts", f"{report.train_texts} train ({share} with a call), {report.dev_texts} dev"),
        ("documents", _documents_line(report.mix.get("documents") or {})),
        ("final loss", fmt_loss(report.losses[-1]["loss"] if report.losses else None)),
        (
            "dev ppl",
            " → ".join(f"{d['ppl']:.2f}" for d in (report.dev_curve[:1] + report.dev_curve[-1:])) or "-",
        ),
        ("best", f"step {best.get('step')}, dev ppl {best.get('ppl'):.2f}" if best.get("ppl") else "-"),
        ("tokens/s", f"{report.tokens_per_second:,.0f}" if report.tokens_per_second else "-"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    for note in report.mix.get("notes", []):
        err_console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    console.print(f'use it: toolformer ask --model {report.out} "What is 23 times 47?"', highlight=False)


def _documents_line(counts: dict[str, Any]) -> str:
    """Every document of the data: `200: 127 with a call, 73 plain, 0 dropped (reason: n, ...)`."""
    if not counts:
        return "-"
    dropped = counts.get("dropped") or {}
    line = f"{counts.get('total', 0)}: {counts.get('annotated', 0)} with a call, {counts.get('plain', 0)} plain, "
    line += f"{sum(dropped.values())} dropped"
    return line + (f" ({', '.join(f'{k}: {v}' for k, v in dropped.items())})" if dropped else "")
