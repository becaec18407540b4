"""The `toolformer` command line: ask, chat, tools, index. Heavy imports happen inside the commands."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from toolformer.errors import ToolformerError

app = typer.Typer(
    help="Teach language models to use tools, and run them with those tools.", no_args_is_help=True
)
tools_app = typer.Typer(help="List and call tools.", no_args_is_help=True)
index_app = typer.Typer(help="Build search indexes for WikiSearch and QA.", no_args_is_help=True)
app.add_typer(tools_app, name="tools")
app.add_typer(index_app, name="index")


class _RunByDefault(TyperGroup):
    """`toolformer annotate FILE ...` means `toolformer annotate run FILE ...`; `inspect` is the other command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


annotate_app = typer.Typer(
    cls=_RunByDefault,
    help=(
        "Annotate a corpus with tool calls (paper §2): `toolformer annotate FILE [options]` (same as `annotate run "
        "FILE`), then `toolformer annotate inspect DIR --id ID`. An input file literally named `inspect` needs "
        "`annotate run inspect`."
    ),
    no_args_is_help=True,
)
app.add_typer(annotate_app, name="annotate")

console = Console()
err_console = Console(stderr=True)

MODEL_HELP = "Model: an alias (smollm2-135m-instruct, gemma3-270m), a GGUF file, an HF directory or a hub id."
TOOLS_HELP = "Tools: comma-separated built-in names (Calculator,Calendar,WikiSearch,QA,MT), module:function or mcp:COMMAND."


def clean_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a ToolformerError into one red line and exit code 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # The CLI draws its own progress; the libraries' per-load bars and advisories would bury the answer.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
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


def _ahelp(name: str) -> str:
    from toolformer.datagen.annotate import AnnotateConfig

    return AnnotateConfig.help(name)


def _adefault(name: str) -> Any:
    from toolformer.datagen.annotate import AnnotateConfig

    return AnnotateConfig.default(name)


def _fmt_loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@annotate_app.command("run")
@clean_errors
def annotate_run(
    file: str = typer.Argument(..., help=_ahelp("input")),
    text_field: str = typer.Option(_adefault("text_field"), help=_ahelp("text_field")),
    id_field: str = typer.Option(_adefault("id_field"), help=_ahelp("id_field")),
    format: str = typer.Option(_adefault("format"), "--format", help=_ahelp("format")),
    text_unit: str = typer.Option(_adefault("text_unit"), help=_ahelp("text_unit")),
    hf_split: str = typer.Option(_adefault("hf_split"), help=_ahelp("hf_split")),
    tools: str = typer.Option(_adefault("tools"), "--tools", "-t", help=_ahelp("tools")),
    proposer: str = typer.Option(_adefault("proposer"), help=_ahelp("proposer")),
    model: str = typer.Option(_adefault("model"), "--model", "-m", help=_ahelp("model")),
    tau_f: float = typer.Option(_adefault("tau_f"), help=_ahelp("tau_f")),
    tau_f_tool: list[str] = typer.Option([], "--tau-f-tool", help=_ahelp("tau_f_tool")),
    horizon: int = typer.Option(_adefault("horizon"), help=_ahelp("horizon")),
    out: str = typer.Option(_adefault("out"), "--out", "-o", help=_ahelp("out")),
    limit: int = typer.Option(None, help=_ahelp("limit")),
    shard_size: int = typer.Option(_adefault("shard_size"), help=_ahelp("shard_size")),
    num_shards: int = typer.Option(_adefault("num_shards"), help=_ahelp("num_shards")),
    shard_id: int = typer.Option(_adefault("shard_id"), help=_ahelp("shard_id")),
    backend: str = typer.Option(_adefault("backend"), help=_ahelp("backend")),
    device: str = typer.Option(_adefault("device"), help=_ahelp("device")),
    autocast_bf16: bool = typer.Option(None, "--bf16/--no-bf16", help=_ahelp("autocast_bf16")),
    max_batch_tokens: int = typer.Option(_adefault("max_batch_tokens"), help=_ahelp("max_batch_tokens")),
    batch_docs: int = typer.Option(_adefault("batch_docs"), help=_ahelp("batch_docs")),
    max_chars: int = typer.Option(_adefault("max_chars"), help=_ahelp("max_chars")),
    dev_fraction: float = typer.Option(_adefault("dev_fraction"), help=_ahelp("dev_fraction")),
    seed: int = typer.Option(_adefault("seed"), help=_ahelp("seed")),
    workers: int = typer.Option(_adefault("workers"), help=_ahelp("workers")),
    tool_cache: str = typer.Option(None, help=_ahelp("tool_cache")),
    ray_address: str = typer.Option(None, help=_ahelp("ray_address")),
    ray_actors: int = typer.Option(_adefault("ray_actors"), help=_ahelp("ray_actors")),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Annotate FILE with tool calls: heuristics → sample → execute → filter (τ_f) → merge; resumable.

    Writes DIR/shard-*.jsonl (training texts with calls, field `split` = train/dev), DIR/records-*.jsonl (every
    document and candidate with its losses) and DIR/manifest.json. Rerun the same command to resume.
    """
    from toolformer.datagen.annotate import AnnotateConfig, annotate, parse_tau_f_tool

    config = AnnotateConfig(
        input=file,
        out=out,
        format=format,
        text_field=text_field,
        id_field=id_field,
        text_unit=text_unit,
        hf_split=hf_split,
        tools=tools,
        proposer=proposer,
        model=model,
        tau_f=tau_f,
        tau_f_tool=parse_tau_f_tool(tau_f_tool),
        horizon=horizon,
        limit=limit,
        shard_size=shard_size,
        num_shards=num_shards,
        shard_id=shard_id,
        backend=backend,
        device=device,
        autocast_bf16=autocast_bf16,
        max_batch_tokens=max_batch_tokens,
        batch_docs=batch_docs,
        max_chars=max_chars,
        dev_fraction=dev_fraction,
        seed=seed,
        workers=workers,
        tool_cache=tool_cache,
        ray_address=ray_address,
        ray_actors=ray_actors,
    )
    report = annotate(config, progress=not quiet)
    taus = config.filter_config()
    table = Table(title=f"Annotated {report.documents} documents ({report.bad} bad rows)")
    for col in (
        "tool",
        "texts seen",
        "positions",
        "proposed",
        "executed ok",
        "errors",
        "τ_f",
        "kept",
        "texts kept",
    ):
        table.add_column(col, justify="left" if col == "tool" else "right")
    for name, st in report.per_tool.items():
        table.add_row(
            name,
            str(st.texts),
            str(st.positions),
            str(st.proposed),
            str(st.executed_ok),
            str(st.executed_error),
            f"{taus.tau_for(name):g}",
            str(st.kept),
            str(st.texts_kept),
        )
    console.print(table)
    for bad in report.bad_rows[:10]:
        err_console.print(f"[yellow]bad row[/yellow] {bad.id}: {bad.reason}", highlight=False)
    if report.bad > 10:
        err_console.print(f"[yellow]… {report.bad - 10} more bad rows: see the records files[/yellow]")
    rate = report.texts_per_hour
    console.print(
        f"{report.texts_kept} training texts ({report.dev_texts} dev) with {report.calls_kept} calls; "
        f"{report.chunks_written} shards written, {report.chunks_done_before} already done"
        + (f"; {rate:,.0f} texts/hour" if rate else ""),
        highlight=False,
    )
    console.print(f"output: {report.out}  (manifest: {report.manifest.name})", highlight=False)


@annotate_app.command("inspect")
@clean_errors
def annotate_inspect(
    out: Path = typer.Argument(..., help="The output folder of `toolformer annotate`."),
    doc_id: str = typer.Option(..., "--id", help="The document id."),
    as_json: bool = typer.Option(False, "--json", help="Print the document's record as JSON."),
) -> None:
    """Show one document's candidate calls with L⁺, L⁻, gain and verdict, and its augmented text."""
    from toolformer.datagen.annotate import find_document

    record, row = find_document(out, doc_id)
    if as_json:
        print(json.dumps({"record": record, "shard_row": row}, ensure_ascii=False, indent=2))
        return
    console.print(
        f"[bold]{record['id']}[/bold]  split={record.get('split')}  status={record.get('status')}  "
        f"verdict: {record.get('verdict')}",
        highlight=False,
    )
    cands = record.get("candidates", [])
    if cands:
        table = Table(title=f"{len(cands)} candidate calls", show_lines=False)
        for col in ("#", "call", "pos", "tok", "L⁺", "L⁻", "L(ε)", "L(e(c,ε))", "gain", "verdict"):
            table.add_column(col, overflow="fold", justify="left" if col in ("call", "verdict") else "right")
        for i, c in enumerate(cands, 1):
            style = "green" if c.get("kept") else ("red" if c.get("ok") is False else None)
            table.add_row(
                str(i),
                c.get("call", ""),
                str(c.get("position")),
                "-" if c.get("token_index") is None else str(c["token_index"]),
                _fmt_loss(c.get("loss_plus")),
                _fmt_loss(c.get("loss_minus")),
                _fmt_loss(c.get("loss_empty")),
                _fmt_loss(c.get("loss_noresult")),
                _fmt_loss(c.get("gain")),
                c.get("reason", ""),
                style=style,
            )
        console.print(table)
    if row is not None:
        console.print(_render_text(row["text"]))


@app.command()
def version() -> None:
    """Print the version."""
    from toolformer import __version__

    print(__version__)


def main() -> None:  # pragma: no cover - console-script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
