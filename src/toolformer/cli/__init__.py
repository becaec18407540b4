"""The `toolformer` command line: one typer app, each command group in its own module; heavy imports wait.

`toolformer.cli:app` is the console script. Options of the config-driven commands (annotate, eval, train,
compress, adapt, serve) are made from their config dataclasses by `toolformer.cli.options`.
"""

from __future__ import annotations

import typer

from toolformer.cli import (
    adapt,
    augment,
    chat,
    compress,
    doctor,
    evaluate,
    export,
    logs,
    pretrain,
    serve,
    train,
)
from toolformer.cli.annotate import annotate_app
from toolformer.cli.common import LiteralHelp, clean_errors, print_error
from toolformer.cli.index import index_app
from toolformer.cli.mixture import mixture_app
from toolformer.cli.tools import tools_app

__all__ = ["app", "clean_errors", "main", "print_error"]

app = typer.Typer(
    cls=LiteralHelp,
    help="Teach language models to use tools, and run them with those tools.",
    no_args_is_help=True,
)
app.command()(chat.ask)
app.command()(chat.chat)
app.command("eval")(evaluate.eval_command)
app.command("train")(train.train_command)
app.command("pretrain")(pretrain.pretrain_command)
app.command("compress")(compress.compress_command)
app.command("export")(export.export_command)
app.command("adapt")(adapt.adapt_command)
app.command("augment")(augment.augment_command)
app.command()(serve.serve)
app.command()(doctor.doctor)
app.command("logs")(logs.logs_command)
app.add_typer(tools_app, name="tools")
app.add_typer(index_app, name="index")
app.add_typer(annotate_app, name="annotate")
app.add_typer(mixture_app, name="mixture")


@app.command()
def version() -> None:
    """Print the version."""
    from toolformer import __version__

    print(__version__)


def main() -> None:  # pragma: no cover - console-script entry
    app()
