"""What every `toolformer` command shares: the consoles, the help texts, one-line errors and the call table."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from toolformer.errors import ToolformerError

console = Console()
err_console = Console(stderr=True)

MODEL_HELP = "Model: an alias (smollm2-135m-instruct, gemma3-270m), a GGUF file, an HF directory or a hub id."
BACKEND_HELP = (
    "auto (llama.cpp for a .gguf file when llama-cpp-python is installed, else transformers), transformers or "
    "llamacpp (a .gguf file or a built-in alias)."
)
TOOLS_HELP = "Tools: comma-separated built-in names (Calculator,Calendar,WikiSearch,QA,MT), module:function or mcp:COMMAND."
CORPUS_HELP = (
    "Corpus for WikiSearch and QA: a JSONL(.gz) file (read with the fields its `index build` named), a folder of "
    "Markdown/text files or an index directory (default: the shipped Wikipedia corpus)."
)
STREAM_HELP = "Print the answer as it is written, calls as they run (default: when stdout is a terminal)."
NO_LOG_HELP = "Do not write to the run log (`toolformer logs`); TOOLFORMER_NO_LOG=1 does the same."


def escape_help(command: Any) -> None:
    """Escape rich markup in every help text of `command` and its subcommands, once per built command tree.

    Typer renders help as rich markup, which would eat the extra of an install hint (`pip install
    'toolformer-kit[train]'` shown as `pip install 'toolformer-kit'`); no help text here means markup.
    """
    from rich.markup import escape

    if getattr(command, "_toolformer_help_escaped", False):
        return
    command._toolformer_help_escaped = True
    for attr in ("help", "short_help", "epilog"):
        value = getattr(command, attr, None)
        if isinstance(value, str):
            setattr(command, attr, escape(value))
    for param in getattr(command, "params", []):
        if isinstance(getattr(param, "help", None), str):
            param.help = escape(param.help)
    for sub in getattr(command, "commands", {}).values():
        escape_help(sub)


class LiteralHelp(TyperGroup):
    """The `toolformer` group: help texts are shown as written (see `escape_help`)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        escape_help(self)
        return super().main(*args, **kwargs)


def print_error(message: object) -> None:
    """`error: MESSAGE` as one line on stderr: red on a terminal, never wrapped, never read as rich markup."""
    text = " ".join(str(message).split("\n"))
    err_console.print(Text.assemble(("error:", "red"), " ", text), soft_wrap=True, highlight=False)


def clean_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a ToolformerError (or an OSError about a named file) into one line and exit code 2, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # The CLI draws its own progress; the libraries' per-load bars and advisories would bury the answer.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:
            return fn(*args, **kwargs)
        except ToolformerError as exc:
            print_error(exc)
            raise typer.Exit(2) from None
        except OSError as exc:
            if exc.filename is None:  # not about a path the user gave: a bug, keep the traceback
                raise
            print_error(f"{exc.filename}: {exc.strerror or exc}")
            raise typer.Exit(2) from None

    return wrapper


def run_log(no_log: bool) -> Any:
    """The run log `ask`, `chat` and `serve` write to (a `toolformer.runlog.RunLog`), or None when `--no-log` or
    $TOOLFORMER_NO_LOG turns it off; a failed write is one warning line on stderr, and the answer still goes out."""
    from toolformer.runlog import open_run_log

    def warn(message: str) -> None:
        err_console.print(
            Text.assemble(("warning:", "yellow"), " ", message), soft_wrap=True, highlight=False
        )

    return open_run_log(not no_log, warn=warn)


def render_text(text: str) -> Text:
    """The generated text with every call highlighted."""
    from toolformer.calls import find_calls

    out = Text()
    pos = 0
    for span in find_calls(text):
        out.append(text[pos : span.start])
        out.append(text[span.start : span.end], style="bold cyan")
        pos = span.end
    out.append(text[pos:])
    return out


def trace_table(calls: list[Any]) -> Table:
    """The calls an answer made: tool, input, result and milliseconds, failed ones in red."""
    table = Table(title="Tool calls", show_lines=False)
    for col in ("#", "tool", "input", "result", "ms"):
        table.add_column(col, overflow="fold")
    for i, c in enumerate(calls, 1):
        style = None if c.ok else "red"
        # Text cells: a call's input or result is data, never rich markup (`[1]`, `[edit]` would vanish).
        table.add_row(
            str(i), Text(c.tool), Text(c.input), Text(c.output), f"{c.seconds * 1000:.1f}", style=style
        )
    return table


def tool_options(corpus: Path | None, mt_model: str | None) -> dict[str, Any]:
    """The built-in tools' options; a given corpus is indexed (or its cached index found) here, before any model
    loads, so a bad corpus is one line now rather than a failed call later."""
    opts: dict[str, Any] = {}
    if corpus is not None:
        from toolformer.tools.wikisearch.index import build_index

        build_index(corpus)
        opts["corpus"] = corpus
    if mt_model is not None:
        opts["mt_model"] = mt_model
    return opts


def fmt_loss(value: float | None) -> str:
    """A loss or gain with three decimals, `-` for none."""
    return "-" if value is None else f"{value:.3f}"
