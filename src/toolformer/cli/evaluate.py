"""`toolformer eval`: evaluate a model like the paper, with and without its tools."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import typer
from rich.text import Text

from toolformer.cli.common import clean_errors, console, err_console
from toolformer.cli.options import config_command, opt
from toolformer.evals.config import EvalConfig


@clean_errors
@config_command(
    EvalConfig,
    opt("model", argument=True),
    opt("suite", "--suite", "-s"),
    opt("tools", "--tools", "-t"),
    opt("out", "--out", "-o"),
)
def eval_command(
    config: EvalConfig, quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.")
) -> None:
    """Evaluate like the paper: `toolformer eval MODEL --suite math --shots 4 --out DIR`.

    Runs every dataset of the suite in modes tools / disabled (/ baseline), writes DIR/report.md,
    DIR/results.json, DIR/predictions.jsonl, DIR/ceiling.jsonl (the tool ceiling) and DIR/plot.png, and
    prints the tables. `--suite all` runs math, facts, qa, temporal, ppl and notool into one report.
    `--suite bfcl` asks BFCL's function-calling cases through the server's chat path (in-process), functions as
    `tools`, and scores them with BFCL's AST checker, strict and tolerant.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from toolformer.evals.evaluate import evaluate, load_datasets, total_steps
    from toolformer.evals.report import rich_tables, write_outputs
    from toolformer.progress import Progress  # a bar on a terminal, plain lines when stderr is a log

    loaded = load_datasets(config)  # bad data fails here, before a model is loaded
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err_console, disable=quiet, transient=True, name="eval") as bar:
        task = bar.add_task("loading model", total=total_steps(config, loaded))

        def progress(description: str, n: int) -> None:
            bar.update(task, advance=n, description=description)

        if config.suite == "bfcl":
            results = _bfcl(config, progress, loaded)
        else:
            results = evaluate(config, progress=progress, datasets=loaded)
    paths = write_outputs(results, config.out)
    for table in rich_tables(results):
        console.print(table)
    for notice in results.notices():
        err_console.print(Text(f"note: {notice}", style="yellow"))
    console.print(f"outputs: {', '.join(str(p) for p in paths.values())}", highlight=False)


def _bfcl(config: EvalConfig, progress: Any, loaded: list[Any]) -> Any:
    """Suite bfcl: the model (and baseline) as in-process chat endpoints, the server's own request path."""
    from toolformer.evals.evaluate import evaluate
    from toolformer.evals.suites import MAX_NEW_TOKENS
    from toolformer.serve.inprocess import load_chat

    tokens = config.max_new_tokens or MAX_NEW_TOKENS["function"]
    with ExitStack() as stack:
        chats = {"model": stack.enter_context(load_chat(config.model, config.device, tokens))}
        if config.baseline:
            same = config.baseline == config.model
            chats["baseline"] = (
                chats["model"]
                if same
                else stack.enter_context(load_chat(config.baseline, config.device, tokens))
            )
        return evaluate(config, progress=progress, datasets=loaded, chats=chats)
