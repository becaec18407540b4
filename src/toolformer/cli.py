"""The `toolformer` command line: ask, chat, tools, index. Heavy imports happen inside the commands."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from toolformer.errors import ToolformerError

app = typer.Typer(
    help="Teach language models to use tools, and run them with those tools.", no_args_is_help=True
)
tools_app = typer.Typer(help="List and call tools.", no_args_is_help=True)
index_app = typer.Typer(help="Build search indexes for WikiSearch and QA.", no_args_is_help=True)
app.add_typer(tools_app, name="tools")
app.add_typer(index_app, name="index")

console = Console()
err_console = Console(stderr=True)

MODEL_HELP = "Model: an alias (smollm2-135m-instruct, gemma3-270m), a GGUF file, an HF directory or a hub id."
TOOLS_HELP = "Tools: comma-separated built-in names (Calculator,Calendar,WikiSearch,QA,MT), module:function or mcp:COMMAND."


def clean_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a ToolformerError into one red line and exit code 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ToolformerError as exc:
            err_console.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def _render_text(text: str) -> Text:
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


def _trace_table(calls: list[Any]) -> Table:
    table = Table(title="Tool calls", show_lines=False)
    for col in ("#", "tool", "input", "result", "ms"):
        table.add_column(col, overflow="fold")
    for i, c in enumerate(calls, 1):
        style = None if c.ok else "red"
        table.add_row(str(i), c.tool, c.input, c.output, f"{c.seconds * 1000:.1f}", style=style)
    return table


def _tool_options(corpus: Path | None, mt_model: str | None) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if corpus is not None:
        opts["corpus"] = corpus
    if mt_model is not None:
        opts["mt_model"] = mt_model
    return opts


@app.command()
@clean_errors
def ask(
    question: str = typer.Argument(..., help="The question or instruction."),
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    tools: str = typer.Option(None, "--tools", "-t", help=TOOLS_HELP),
    max_calls: int = typer.Option(1, help="Tool calls allowed in the answer."),
    max_new_tokens: int = typer.Option(64, help="Tokens the model may write."),
    trigger_top_k: int = typer.Option(
        0, help="Start a call whenever '[' is in the top-k tokens (paper: 10)."
    ),
    disabled: bool = typer.Option(False, "--disabled", help="Never call tools (p('[') = 0)."),
    sample: bool = typer.Option(False, "--sample", help="Sample instead of greedy decoding."),
    temperature: float = typer.Option(0.7, help="Sampling temperature."),
    seed: int = typer.Option(None, help="Random seed."),
    corpus: Path = typer.Option(None, help="JSONL corpus for WikiSearch and QA (default: the shipped one)."),
    mt_model: str = typer.Option(None, help="Translation model for MT (directory or hub id)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Answer with tool calls: `toolformer ask "What is 23 times 47?"`."""
    from toolformer.runtime.decode import DecodeConfig
    from toolformer.runtime.engine import Toolformer

    config = DecodeConfig(
        max_new_tokens=max_new_tokens,
        max_calls=max_calls,
        trigger_top_k=trigger_top_k,
        disabled=disabled,
        do_sample=sample,
        temperature=temperature,
        seed=seed,
    )
    with err_console.status("loading model"):
        tf = Toolformer.load(model, tools, **_tool_options(corpus, mt_model))
    gen = tf.ask(question, config)
    if as_json:
        print(
            json.dumps({"model": tf.name, **gen.to_dict(), "token_ids": None}, ensure_ascii=False, indent=2)
        )
        return
    console.print(_render_text(gen.text.strip()))
    if gen.calls:
        console.print(_trace_table(gen.calls))
    else:
        err_console.print("[dim](no tool call)[/dim]")


@app.command()
@clean_errors
def chat(
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    tools: str = typer.Option(None, "--tools", "-t", help=TOOLS_HELP),
    max_calls: int = typer.Option(2, help="Tool rounds per reply."),
    max_new_tokens: int = typer.Option(256, help="Tokens per reply."),
    system: str = typer.Option(None, help="System prompt."),
) -> None:
    """Chat in the terminal through the model's chat template; tools run as the model calls them."""
    from toolformer.runtime.decode import DecodeConfig
    from toolformer.runtime.engine import Toolformer

    with err_console.status("loading model"):
        tf = Toolformer.load(model, tools)
    config = DecodeConfig(max_new_tokens=max_new_tokens, max_calls=max_calls)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    err_console.print(f"[dim]{tf.name} with {', '.join(tf.tools.names())}. Ctrl-D to quit.[/dim]")
    while True:
        try:
            line = console.input("[bold]you>[/bold] ") if sys.stdin.isatty() else input()
        except EOFError:
            break
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line})
        result = tf.chat(messages, config)
        messages = result.messages
        console.print(Text("model> ", style="bold green") + _render_text(result.content.strip()))
        if result.calls:
            console.print(_trace_table(result.calls))


@tools_app.command("list")
@clean_errors
def tools_list(tools: str = typer.Option(None, "--tools", "-t", help=TOOLS_HELP)) -> None:
    """List the tools with their descriptions."""
    from toolformer.tools import load_tools

    reg = load_tools(tools)
    table = Table(title="Tools")
    table.add_column("name", style="bold")
    table.add_column("arguments")
    table.add_column("description", overflow="fold")
    for name in reg.names():
        t = reg.get(name)
        table.add_row(name, ", ".join(t.param_names) or "-", t.description)
    console.print(table)


@tools_app.command("call")
@clean_errors
def tools_call(
    name: str = typer.Argument(..., help="Tool name, e.g. Calculator."),
    input: str = typer.Argument("", help='The input, as written inside the call: "23*47", "Joe Biden".'),
    tools: str = typer.Option(None, "--tools", "-t", help=TOOLS_HELP),
    corpus: Path = typer.Option(None, help="JSONL corpus for WikiSearch and QA."),
    mt_model: str = typer.Option(None, help="Translation model for MT."),
    timeout: float = typer.Option(None, help="Seconds before the call gives up."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run one tool call and print its result: `toolformer tools call Calculator "23*47"`."""
    from toolformer.calls import Call
    from toolformer.tools import load_tools

    reg = load_tools(tools, **_tool_options(corpus, mt_model))
    reg.get(name)  # unknown names fail here with the list of known ones
    out = reg.run(Call(name, input), timeout)
    if as_json:
        print(
            json.dumps(
                {"tool": name, "input": input, "output": out.text, "ok": out.ok, "seconds": out.seconds}
            )
        )
    else:
        print(out.text)
    if not out.ok:
        raise typer.Exit(1)


@index_app.command("build")
@clean_errors
def index_build(
    corpus: Path = typer.Argument(..., help="JSONL file, one passage per line."),
    text_field: str = typer.Option("text", help="Field holding the passage text."),
    title_field: str = typer.Option("title", help="Field holding the title (optional in the data)."),
    id_field: str = typer.Option("id", help="Field holding the passage id (optional in the data)."),
    name: str = typer.Option(None, help="Index name (default: the file name)."),
) -> None:
    """Build (or reuse) the BM25 index of a JSONL corpus for WikiSearch and QA."""
    from toolformer.tools.wikisearch import build_index

    with err_console.status(f"indexing {corpus}"):
        path = build_index(
            corpus, name=name, text_field=text_field, title_field=title_field, id_field=id_field
        )
    console.print(f"index: {path}")
    console.print(f"use it with: --corpus {corpus}")


@app.command()
def version() -> None:
    """Print the version."""
    from toolformer import __version__

    print(__version__)


def main() -> None:  # pragma: no cover - console-script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
