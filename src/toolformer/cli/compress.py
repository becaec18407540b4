"""`toolformer compress`: make a model smaller or faster, and measure what it costs."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from toolformer.cli.common import clean_errors, console, err_console
from toolformer.cli.options import config_command, opt
from toolformer.compress.config import CompressConfig


@clean_errors
@config_command(
    CompressConfig,
    opt("model", argument=True),
    opt("method", "--method", required=True),
    opt("out", "--out", "-o", required=True),
)
def compress_command(
    config: CompressConfig, quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages.")
) -> None:
    """Make a model smaller or faster and measure the cost: `toolformer compress MODEL --method int8 --out DIR`.

    OUT loads like any model (`toolformer ask --model OUT`) and holds report.md / report.json / plot.png: weights
    on disk, peak memory, tokens/s, perplexity and math accuracy with tools, for the source and the result.
    """
    from toolformer.compress import compress
    from toolformer.compress.report import CONSOLE_COLUMNS, HEADER, table_rows

    config.check()  # bad options fail before the model loads

    def progress(message: str) -> None:
        if not quiet:
            err_console.print(Text(message, style="dim"), highlight=False)

    result = compress(config, progress=progress)
    table = Table(title=f"{result.recipe['name']}: {config.model} → {result.out}")
    shown = [HEADER.index(c) for c in CONSOLE_COLUMNS]  # the terminal's width: report.md has every column
    for i in shown:
        table.add_column(HEADER[i], justify="left" if i == 0 else "right")
    for row in table_rows(result.variants):
        table.add_row(*(row[i] for i in shown))
    console.print(table)
    console.print(f"report: {', '.join(str(p) for p in result.report.values())}", highlight=False)
    console.print(f'use it: toolformer ask --model {result.out} "What is 23 times 47?"', highlight=False)
