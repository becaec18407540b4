"""`toolformer tools list` and `toolformer tools call`: the tools, and one call run by hand."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from toolformer.cli.common import CORPUS_HELP, TOOLS_HELP, clean_errors, console, print_error, tool_options

tools_app = typer.Typer(help="List and call tools.", no_args_is_help=True)


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
        table.add_row(Text(name), ", ".join(t.param_names) or "-", Text(t.description))
    console.print(table)


@tools_app.command("call")
@clean_errors
def tools_call(
    name: str = typer.Argument(..., help="Tool name, e.g. Calculator."),
    input: str = typer.Argument("", help='The input, as written inside the call: "23*47", "Joe Biden".'),
    tools: str = typer.Option(None, "--tools", "-t", help=TOOLS_HELP),
    corpus: Path = typer.Option(None, help=CORPUS_HELP),
    mt_model: str = typer.Option(None, help="Translation model for MT."),
    timeout: float = typer.Option(None, help="Seconds before the call gives up."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run one tool call and print its result: `toolformer tools call Calculator "23*47"`."""
    from toolformer.calls import Call
    from toolformer.tools import load_tools

    reg = load_tools(tools, **tool_options(corpus, mt_model))
    reg.get(name)  # unknown names fail here with the list of known ones
    out = reg.run(Call(name, input), timeout)
    if as_json:
        print(
            json.dumps(
                {"tool": name, "input": input, "output": out.text, "ok": out.ok, "seconds": out.seconds}
            )
        )
    elif out.ok:
        print(out.text)
    else:  # like every other error: one line on stderr, exit code 2
        print_error(f"{name}({input}): {out.text.removeprefix('error:').strip()}")
    if not out.ok:
        raise typer.Exit(2)
