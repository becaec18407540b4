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

from toolformer.adapt.config import AdaptConfig
from toolformer.compress.config import CompressConfig
from toolformer.configs import field_default, field_help
from toolformer.datagen.annotate import AnnotateConfig  # the config dataclasses are torch-free
from toolformer.errors import ToolformerError
from toolformer.evals.config import EvalConfig
from toolformer.serve.config import API_KEY_ENV, ServeConfig
from toolformer.train.config import TrainConfig


def _escape_help(command: Any) -> None:
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
        _escape_help(sub)


class _LiteralHelp(TyperGroup):
    """The `toolformer` group: help texts are shown as written (see `_escape_help`)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        _escape_help(self)
        return super().main(*args, **kwargs)


app = typer.Typer(
    cls=_LiteralHelp,
    help="Teach language models to use tools, and run them with those tools.",
    no_args_is_help=True,
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
        "FILE`), then `toolformer annotate inspect DIR` (documents by gain) or `inspect DIR --id ID`. An input file "
        "literally named `inspect` needs `annotate run inspect`."
    ),
    no_args_is_help=True,
)
app.add_typer(annotate_app, name="annotate")

console = Console()
err_console = Console(stderr=True)

MODEL_HELP = "Model: an alias (smollm2-135m-instruct, gemma3-270m), a GGUF file, an HF directory or a hub id."
BACKEND_HELP = (
    "auto (llama.cpp for a .gguf file when llama-cpp-python is installed, else transformers), transformers or "
    "llamacpp (a .gguf file or a built-in alias)."
)
TOOLS_HELP = "Tools: comma-separated built-in names (Calculator,Calendar,WikiSearch,QA,MT), module:function or mcp:COMMAND."


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
        # Text cells: a call's input or result is data, never rich markup (`[1]`, `[edit]` would vanish).
        table.add_row(
            str(i), Text(c.tool), Text(c.input), Text(c.output), f"{c.seconds * 1000:.1f}", style=style
        )
    return table


CORPUS_HELP = (
    "Corpus for WikiSearch and QA: a JSONL(.gz) file (read with the fields its `index build` named), a folder of "
    "Markdown/text files or an index directory (default: the shipped Wikipedia corpus)."
)
STREAM_HELP = "Print the answer as it is written, calls as they run (default: when stdout is a terminal)."


def _answer_printer(stream: bool | None, as_json: bool, stops: Any = (), json_calls: bool = False) -> Any:
    """An AnswerPrinter on stdout when the answer should stream (never with --json), else None."""
    if as_json or not (console.is_terminal if stream is None else stream):
        return None
    from toolformer.live import AnswerPrinter

    return AnswerPrinter(console, stops, json_calls=json_calls)


def _tool_options(corpus: Path | None, mt_model: str | None) -> dict[str, Any]:
    """The built-in tools' options; a given corpus is indexed (or its cached index found) here, before any model
    loads, so a bad corpus is one line now rather than a failed call later."""
    opts: dict[str, Any] = {}
    if corpus is not None:
        from toolformer.tools.wikisearch import build_index

        build_index(corpus)
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
    corpus: Path = typer.Option(None, help=CORPUS_HELP),
    mt_model: str = typer.Option(None, help="Translation model for MT (directory or hub id)."),
    backend: str = typer.Option("auto", "--backend", help=BACKEND_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    stream: bool | None = typer.Option(None, "--stream/--no-stream", help=STREAM_HELP),
) -> None:
    """Answer with tool calls: `toolformer ask "What is 23 times 47?"`."""
    from toolformer.runtime.decode import DecodeConfig
    from toolformer.runtime.engine import Toolformer
    from toolformer.runtime.prompts import STOP

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
        tf = Toolformer.load(model, tools, backend=backend, **_tool_options(corpus, mt_model))
    printer = _answer_printer(stream, as_json, stops=config.stop or STOP)
    gen = tf.ask(question, config, on_event=printer.on_event if printer else None)
    if as_json:
        print(
            json.dumps(
                {"model": tf.name, "backend": tf.backend, **gen.to_dict(), "token_ids": None},
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    if printer is not None:
        printer.finish(gen.text)
    else:
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
    backend: str = typer.Option("auto", "--backend", help=BACKEND_HELP),
    stream: bool | None = typer.Option(None, "--stream/--no-stream", help=STREAM_HELP),
) -> None:
    """Chat in the terminal through the model's chat template; tools run as the model calls them."""
    from toolformer.runtime.decode import DecodeConfig
    from toolformer.runtime.engine import Toolformer
    from toolformer.serve.stream import join_rounds, tidy

    with err_console.status("loading model"):
        tf = Toolformer.load(model, tools, backend=backend)
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
        printer = _answer_printer(stream, False, stops=config.stop, json_calls=True)
        if printer is not None:
            printer.begin(Text("model> ", style="bold green"))
        result = tf.chat(messages, config, on_event=printer.on_event if printer else None)
        added = result.messages[len(messages) :]
        messages = result.messages
        if printer is not None:  # every round's content, as the stream showed them
            printer.finish(
                join_rounds([tidy(m.get("content") or "") for m in added if m["role"] == "assistant"])
            )
        else:
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

    reg = load_tools(tools, **_tool_options(corpus, mt_model))
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


@index_app.command("build")
@clean_errors
def index_build(
    corpus: Path = typer.Argument(
        ...,
        help="JSONL(.gz) file with one passage per line, or a folder of Markdown/text files (or one .md/.txt "
        "file): one passage per section or paragraph.",
    ),
    text_field: str = typer.Option(
        None,
        help="JSONL field holding the passage text (default: the one this file was indexed with last, else "
        "text). The index remembers it: every later --corpus FILE reads this field.",
    ),
    title_field: str = typer.Option(
        None, help="JSONL field holding the title (default: remembered, else title)."
    ),
    id_field: str = typer.Option(
        None, help="JSONL field holding the passage id (default: remembered, else id)."
    ),
    name: str = typer.Option(None, help="Index name (default: the file name)."),
) -> None:
    """Build (or reuse) the BM25 index of a corpus for WikiSearch and QA."""
    from toolformer.tools.wikisearch import build_index, index_info

    with err_console.status(f"indexing {corpus}"):
        path = build_index(
            corpus, name=name, text_field=text_field, title_field=title_field, id_field=id_field
        )
    info = index_info(path)
    fields = info.get("fields", {})
    read = "sections and paragraphs" if info.get("kind") == "documents" else f"field {fields.get('text')!r}"
    # Plain print: rich would wrap a long path at 80 columns when stdout is not a terminal.
    print(f"index: {path}")
    print(f"{info.get('passages')} passages ({read})")
    print(f"use it with: --corpus {corpus}")


_ahelp = functools.partial(field_help, AnnotateConfig)
_adefault = functools.partial(field_default, AnnotateConfig)


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
    exclude_self_from_search: bool = typer.Option(
        _adefault("exclude_self_from_search"),
        "--exclude-self-from-search/--no-exclude-self-from-search",
        help=_ahelp("exclude_self_from_search"),
    ),
    sample_backend: str = typer.Option(_adefault("sample_backend"), help=_ahelp("sample_backend")),
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
        exclude_self_from_search=exclude_self_from_search,
        sample_backend=sample_backend,
        ray_address=ray_address,
        ray_actors=ray_actors,
    )
    report = annotate(config, progress=not quiet)
    taus = config.filter_config()
    from rich import box

    table = Table(
        title=f"Annotated {report.documents} documents ({report.bad} bad rows)",
        caption="texts: heuristic passed; ok/errors: calls executed; kept: L⁻ − L⁺ ≥ τ_f, best at its position",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
    )
    for col in ("tool", "texts", "positions", "proposed", "ok", "errors", "τ_f", "kept", "texts kept"):
        table.add_column(col, justify="left" if col == "tool" else "right", no_wrap=True)
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
        err_console.print(Text.assemble(("bad row", "yellow"), f" {bad.id}: {bad.reason}"), highlight=False)
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
    from toolformer.datagen.annotate import nothing_kept_advice

    advice = nothing_kept_advice(report, taus.tau_for, config.proposer_names())
    if advice:
        err_console.print(Text(advice, style="yellow"), highlight=False)


@annotate_app.command("inspect")
@clean_errors
def annotate_inspect(
    out: Path = typer.Argument(..., help="The output folder of `toolformer annotate`."),
    doc_id: str = typer.Option(None, "--id", help="The document id (without it: documents listed by gain)."),
    top: int = typer.Option(
        10, "--top", min=1, help="Without --id: how many documents to list, largest gain first."
    ),
    window: int = typer.Option(
        60, "--window", min=0, help="Without --id: characters of text shown before and after each call."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the record(s) as JSON."),
) -> None:
    """Show one document's candidate calls with L⁺, L⁻, gain and verdict, and its text; without --id, list the
    documents with the largest gain L⁻ − L⁺, each call with the text around it."""
    from toolformer.datagen.outputs import AnnotateFolder

    folder = AnnotateFolder(out)
    if doc_id is None:
        _inspect_by_gain(folder, top, window, as_json)
        return
    doc = folder.find(doc_id)
    record = doc.record.to_dict() if doc.record is not None else {"id": doc.id, "split": doc.split}
    row = doc.row.to_dict() if doc.row is not None else None
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
        from rich import box

        table = Table(
            title=f"{len(cands)} candidate calls", box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False
        )
        for col in ("#", "call", "pos", "tok", "L⁺", "L⁻", "L(ε)", "L(e(c,ε))", "gain", "verdict"):
            if col == "call":
                table.add_column(col, overflow="fold", min_width=12, ratio=3)
            elif col == "verdict":
                table.add_column(col, overflow="fold", min_width=8, ratio=1)
            else:
                table.add_column(col, justify="right", no_wrap=True)
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
    elif doc.text:
        console.print(Text(doc.text))


def _inspect_by_gain(folder: Any, top: int, window: int, as_json: bool) -> None:
    """`annotate inspect DIR` without --id: the `top` documents by their largest gain, each call in its context."""
    docs = [d for d in folder.documents() if d.gain is not None]
    docs.sort(key=lambda d: -d.gain)
    shown = docs[:top]
    if as_json:
        listed = [
            {
                "id": d.id,
                "split": d.split,
                "verdict": d.record.verdict if d.record is not None else "kept",
                "gain": d.gain,
                "calls": [vars(c) for c in d.contexts(window)],
            }
            for d in shown
        ]
        print(json.dumps(listed, ensure_ascii=False, indent=2))
        return
    console.print(
        f"{len(shown)} of {len(docs)} scored documents, largest gain L⁻ − L⁺ first ({window} characters around "
        "each call; --id ID for one document's losses)",
        highlight=False,
    )
    for d in shown:
        verdict = d.record.verdict if d.record is not None else "kept"
        console.print(Text(f"{d.id}  gain {_fmt_loss(d.gain)}  split={d.split}  {verdict}", style="bold"))
        for c in d.contexts(window):
            before = c.before.replace("\n", "↵")
            after = c.after.replace("\n", "↵")
            line = Text(f"  {_fmt_loss(c.gain):>7}  {'kept' if c.kept else c.reason:<12}  ")
            line.append("…" + before + ("" if not before or before[-1].isspace() else " "))
            line.append(c.call, style="bold green" if c.kept else "bold")
            line.append(("" if not after or after[0].isspace() else " ") + after + "…")
            console.print(line)


_ehelp = functools.partial(field_help, EvalConfig)
_edefault = functools.partial(field_default, EvalConfig)


@app.command("eval")
@clean_errors
def eval_command(
    model: str = typer.Argument(_edefault("model"), help=_ehelp("model")),
    suite: str = typer.Option(_edefault("suite"), "--suite", "-s", help=_ehelp("suite")),
    datasets: str = typer.Option(None, help=_ehelp("datasets")),
    data: str = typer.Option(None, help=_ehelp("data")),
    baseline: str = typer.Option(None, help=_ehelp("baseline")),
    baseline_tools: bool = typer.Option(False, "--baseline-tools", help=_ehelp("baseline_tools")),
    modes: str = typer.Option(_edefault("modes"), help=_ehelp("modes")),
    shots: int = typer.Option(_edefault("shots"), help=_ehelp("shots")),
    limit: int = typer.Option(None, help=_ehelp("limit")),
    trigger_top_k: int = typer.Option(_edefault("trigger_top_k"), help=_ehelp("trigger_top_k")),
    sweep_k: str = typer.Option(None, help=_ehelp("sweep_k")),
    max_calls: int = typer.Option(_edefault("max_calls"), help=_ehelp("max_calls")),
    batch_size: int = typer.Option(_edefault("batch_size"), help=_ehelp("batch_size")),
    max_new_tokens: int = typer.Option(None, help=_ehelp("max_new_tokens")),
    tools: str = typer.Option(None, "--tools", "-t", help=_ehelp("tools")),
    corpus: str = typer.Option(None, help=_ehelp("corpus")),
    ceiling: bool = typer.Option(None, "--ceiling/--no-ceiling", help=_ehelp("ceiling")),
    ppl_max_tokens: int = typer.Option(_edefault("ppl_max_tokens"), help=_ehelp("ppl_max_tokens")),
    device: str = typer.Option(_edefault("device"), help=_ehelp("device")),
    out: str = typer.Option(_edefault("out"), "--out", "-o", help=_ehelp("out")),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Evaluate like the paper: `toolformer eval MODEL --suite math --shots 4 --out DIR`.

    Runs every dataset of the suite in modes tools / disabled (/ baseline), writes DIR/report.md,
    DIR/results.json, DIR/predictions.jsonl, DIR/ceiling.jsonl (the tool ceiling) and DIR/plot.png, and
    prints the tables. `--suite all` runs math, facts, qa, temporal, ppl and notool into one report.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from toolformer.evals.config import EvalConfig
    from toolformer.evals.evaluate import evaluate, load_datasets, total_steps
    from toolformer.evals.report import rich_tables, write_outputs
    from toolformer.progress import Progress  # a bar on a terminal, plain lines when stderr is a log

    config = EvalConfig(
        model=model,
        suite=suite,
        datasets=datasets,
        data=data,
        baseline=baseline,
        baseline_tools=baseline_tools,
        modes=modes,
        shots=shots,
        limit=limit,
        trigger_top_k=trigger_top_k,
        sweep_k=sweep_k,
        max_calls=max_calls,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        tools=tools,
        corpus=corpus,
        ceiling=ceiling,
        ppl_max_tokens=ppl_max_tokens,
        device=device,
        out=out,
    )
    loaded = load_datasets(config)  # bad data fails here, before a model is loaded
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err_console, disable=quiet, transient=True, name="eval") as bar:
        task = bar.add_task("loading model", total=total_steps(config, loaded))

        def progress(description: str, n: int) -> None:
            bar.update(task, advance=n, description=description)

        results = evaluate(config, progress=progress, datasets=loaded)
    paths = write_outputs(results, config.out)
    for table in rich_tables(results):
        console.print(table)
    for notice in results.notices():
        err_console.print(Text(f"note: {notice}", style="yellow"))
    console.print(f"outputs: {', '.join(str(p) for p in paths.values())}", highlight=False)


_thelp = functools.partial(field_help, TrainConfig)
_tdefault = functools.partial(field_default, TrainConfig)


@app.command("train")
@clean_errors
def train_command(
    data: str = typer.Argument(..., help=_thelp("data")),
    out: str = typer.Option(..., "--out", "-o", help=_thelp("out")),
    model: str = typer.Option(_tdefault("model"), "--model", "-m", help=_thelp("model")),
    text_field: str = typer.Option(_tdefault("text_field"), help=_thelp("text_field")),
    lora: bool = typer.Option(_tdefault("lora"), "--lora/--full", help=_thelp("lora")),
    lora_r: int = typer.Option(_tdefault("lora_r"), help=_thelp("lora_r")),
    lora_alpha: int = typer.Option(_tdefault("lora_alpha"), help=_thelp("lora_alpha")),
    lora_dropout: float = typer.Option(_tdefault("lora_dropout"), help=_thelp("lora_dropout")),
    lora_target_modules: str = typer.Option(
        _tdefault("lora_target_modules"), help=_thelp("lora_target_modules")
    ),
    merge: bool = typer.Option(_tdefault("merge"), "--merge/--no-merge", help=_thelp("merge")),
    lr: float = typer.Option(None, "--lr", help=_thelp("learning_rate")),
    epochs: float = typer.Option(_tdefault("epochs"), help=_thelp("epochs")),
    max_steps: int = typer.Option(None, help=_thelp("max_steps")),
    batch_size: int = typer.Option(_tdefault("batch_size"), help=_thelp("batch_size")),
    grad_accum: int = typer.Option(_tdefault("grad_accum"), help=_thelp("grad_accum")),
    max_length: int = typer.Option(_tdefault("max_length"), help=_thelp("max_length")),
    warmup_ratio: float = typer.Option(_tdefault("warmup_ratio"), help=_thelp("warmup_ratio")),
    loss: str = typer.Option(_tdefault("loss"), help=_thelp("loss")),
    mix_ratio: str = typer.Option(str(_tdefault("mix_ratio")), help=_thelp("mix_ratio")),
    mix_from: str = typer.Option(_tdefault("mix_from"), help=_thelp("mix_from")),
    dev_fraction: float = typer.Option(_tdefault("dev_fraction"), help=_thelp("dev_fraction")),
    allow_partial: bool = typer.Option(
        _tdefault("allow_partial"), "--allow-partial", help=_thelp("allow_partial")
    ),
    max_dev_texts: int = typer.Option(_tdefault("max_dev_texts"), help=_thelp("max_dev_texts")),
    eval_steps: int = typer.Option(_tdefault("eval_steps"), help=_thelp("eval_steps")),
    save_steps: int = typer.Option(_tdefault("save_steps"), help=_thelp("save_steps")),
    save_total_limit: int = typer.Option(_tdefault("save_total_limit"), help=_thelp("save_total_limit")),
    keep_checkpoints: bool = typer.Option(
        _tdefault("keep_checkpoints"), "--keep-checkpoints", help=_thelp("keep_checkpoints")
    ),
    resume: bool = typer.Option(_tdefault("resume"), "--resume", help=_thelp("resume")),
    seed: int = typer.Option(_tdefault("seed"), help=_thelp("seed")),
    bf16: bool = typer.Option(None, "--bf16/--no-bf16", help=_thelp("bf16")),
    gradient_checkpointing: bool = typer.Option(
        _tdefault("gradient_checkpointing"), "--gradient-checkpointing", help=_thelp("gradient_checkpointing")
    ),
    device: str = typer.Option(_tdefault("device"), help=_thelp("device")),
    tensorboard: bool = typer.Option(
        _tdefault("tensorboard"), "--tensorboard/--no-tensorboard", help=_thelp("tensorboard")
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the training report as JSON."),
) -> None:
    """Fine-tune a model on texts with inline calls (paper §2): `toolformer train augmented/ --out tuned/`.

    DATA is an output folder of `toolformer annotate`, a JSONL file or a folder of JSONL files. OUT becomes a
    Hugging Face model folder (`toolformer ask --model OUT`) with train_config.json and train_report.json;
    checkpoints go to OUT/checkpoints (rerun with --resume after a kill), TensorBoard logs to OUT/tensorboard.
    """
    from toolformer.train import TrainConfig, train
    from toolformer.train.config import parse_mix_ratio

    config = TrainConfig(
        data=data,
        out=out,
        model=model,
        text_field=text_field,
        lora=lora,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        lora_target_modules=lora_target_modules,
        merge=merge,
        learning_rate=lr,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_length=max_length,
        warmup_ratio=warmup_ratio,
        loss=loss,
        mix_ratio=parse_mix_ratio(mix_ratio),
        mix_from=mix_from,
        dev_fraction=dev_fraction,
        allow_partial=allow_partial,
        max_dev_texts=max_dev_texts,
        eval_steps=eval_steps,
        save_steps=save_steps,
        save_total_limit=save_total_limit,
        keep_checkpoints=keep_checkpoints,
        resume=resume,
        seed=seed,
        bf16=bf16,
        gradient_checkpointing=gradient_checkpointing,
        device=device,
        tensorboard=tensorboard,
    )
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
        ("final loss", _fmt_loss(report.losses[-1]["loss"] if report.losses else None)),
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


_chelp = functools.partial(field_help, CompressConfig)
_cdefault = functools.partial(field_default, CompressConfig)


@app.command("compress")
@clean_errors
def compress_command(
    model: str = typer.Argument(_cdefault("model"), help=_chelp("model")),
    method: str = typer.Option(..., "--method", help=_chelp("method")),
    out: str = typer.Option(..., "--out", "-o", help=_chelp("out")),
    keep_layers: int = typer.Option(None, help=_chelp("keep_layers")),
    layers: str = typer.Option(None, help=_chelp("layers")),
    layer_choice: str = typer.Option(_cdefault("layer_choice"), help=_chelp("layer_choice")),
    sparsity: float = typer.Option(_cdefault("sparsity"), help=_chelp("sparsity")),
    heal_data: str = typer.Option(None, help=_chelp("heal_data")),
    heal_steps: int = typer.Option(_cdefault("heal_steps"), help=_chelp("heal_steps")),
    heal_lr: float = typer.Option(_cdefault("heal_lr"), help=_chelp("heal_lr")),
    heal_batch_size: int = typer.Option(_cdefault("heal_batch_size"), help=_chelp("heal_batch_size")),
    heal_max_length: int = typer.Option(_cdefault("heal_max_length"), help=_chelp("heal_max_length")),
    group_size: int = typer.Option(_cdefault("group_size"), help=_chelp("group_size")),
    int8_skip: str = typer.Option(_cdefault("int8_skip"), help=_chelp("int8_skip")),
    measure: bool = typer.Option(_cdefault("measure"), "--measure/--no-measure", help=_chelp("measure")),
    ppl_limit: int = typer.Option(_cdefault("ppl_limit"), help=_chelp("ppl_limit")),
    ppl_max_tokens: int = typer.Option(_cdefault("ppl_max_tokens"), help=_chelp("ppl_max_tokens")),
    math_limit: int = typer.Option(_cdefault("math_limit"), help=_chelp("math_limit")),
    math_datasets: str = typer.Option(_cdefault("math_datasets"), help=_chelp("math_datasets")),
    shots: int = typer.Option(_cdefault("shots"), help=_chelp("shots")),
    gen_tokens: int = typer.Option(_cdefault("gen_tokens"), help=_chelp("gen_tokens")),
    overwrite: bool = typer.Option(False, "--overwrite", help=_chelp("overwrite")),
    seed: int = typer.Option(_cdefault("seed"), help=_chelp("seed")),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages."),
) -> None:
    """Make a model smaller or faster and measure the cost: `toolformer compress MODEL --method int8 --out DIR`.

    OUT loads like any model (`toolformer ask --model OUT`) and holds report.md / report.json / plot.png: weights
    on disk, peak memory, tokens/s, perplexity and math accuracy with tools, for the source and the result.
    """
    from toolformer.compress import CompressConfig, compress
    from toolformer.compress.report import CONSOLE_COLUMNS, HEADER, table_rows

    config = CompressConfig(
        model=model,
        method=method,
        out=out,
        keep_layers=keep_layers,
        layers=layers,
        layer_choice=layer_choice,
        sparsity=sparsity,
        heal_data=heal_data,
        heal_steps=heal_steps,
        heal_lr=heal_lr,
        heal_batch_size=heal_batch_size,
        heal_max_length=heal_max_length,
        group_size=group_size,
        int8_skip=int8_skip,
        measure=measure,
        ppl_limit=ppl_limit,
        ppl_max_tokens=ppl_max_tokens,
        math_limit=math_limit,
        math_datasets=math_datasets,
        shots=shots,
        gen_tokens=gen_tokens,
        overwrite=overwrite,
        seed=seed,
    )
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


@app.command("export")
@clean_errors
def export_command(
    model: str = typer.Argument(..., help=MODEL_HELP + " Or a LoRA adapter folder (merged into its base)."),
    format: str = typer.Option(..., "--format", "-f", help="hf (merged safetensors folder), gguf or onnx."),
    out: str = typer.Option(..., "--out", "-o", help="Folder to write (gguf: a .gguf file or a folder)."),
    quant: str = typer.Option(
        "f16",
        help="GGUF types, comma-separated: f32, f16, bf16, q8_0, or a llama.cpp type (q4_k_m, q4_0, q5_k_m, q6_k, …).",
    ),
    dtype: str = typer.Option(None, help="hf: save in float16 / bfloat16 instead of the stored dtype."),
    verify: bool = typer.Option(
        True,
        "--verify/--no-verify",
        help="Load the export in its runtime and compare logits with the source.",
    ),
    threads: int = typer.Option(None, help="CPU threads for llama.cpp / onnxruntime (default: theirs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Export for deployment: `toolformer export MODEL --format gguf --quant f16,q8_0 --out dist/`.

    Checks each export in its own runtime (transformers, llama.cpp, onnxruntime) on a fixed text with a tool call:
    the largest logit difference from the source model and how often both choose the same next token.
    """
    from toolformer.errors import ConfigError
    from toolformer.export import export
    from toolformer.export.hf import load_merged

    quants = (
        [q.strip() for q in quant.split(",") if q.strip()] if format.strip().lower() == "gguf" else ["f16"]
    )
    if len(quants) > 1 and out.lower().endswith(".gguf"):
        raise ConfigError(
            f"out={out!r} names one file but --quant asks for {len(quants)} types: give a folder"
        )
    with err_console.status(f"loading {model}"):
        source = load_merged(model, dtype=dtype if format.strip().lower() == "hf" else None)
    results = []
    for q in quants:
        with err_console.status(f"exporting {format} {q if format == 'gguf' else ''}".strip()):
            results.append(export(source, format, out, quant=q, dtype=dtype, verify=verify, threads=threads))
    if as_json:
        print(json.dumps([r.to_dict() for r in results], ensure_ascii=False, indent=2))
        return
    table = Table(title=f"Exported {model}")
    for col in ("format", "path", "MB", "runtime", "max |Δlogit|", "same top-1", "same tokens"):
        table.add_column(col, overflow="fold")
    for r in results:
        p = r.parity
        kind = r.format + (f" {r.detail['quant']}" if "quant" in r.detail else "")
        table.add_row(
            kind,
            str(r.path),
            f"{r.bytes / 1e6:.1f}",
            p.runtime if p else "-",
            f"{p.max_abs_diff:.4g}" if p else "-",
            f"{p.top1_agreement:.0%}" if p else "-",
            "-" if p is None or p.tokens_match is None else ("yes" if p.tokens_match else "NO"),
        )
    console.print(table)
    for r in results:
        if r.format == "gguf":
            console.print(f'use it: toolformer ask --model {r.path} "What is 23 times 47?"', highlight=False)
            break


_dhelp = functools.partial(field_help, AdaptConfig)
_ddefault = functools.partial(field_default, AdaptConfig)


@app.command("adapt")
@clean_errors
def adapt_command(
    train: str = typer.Argument(..., help=_dhelp("train")),
    task: str = typer.Option(..., "--task", help=_dhelp("task")),
    out: str = typer.Option(..., "--out", "-o", help=_dhelp("out")),
    model: str = typer.Option(_ddefault("model"), "--model", "-m", help=_dhelp("model")),
    dev: str = typer.Option(None, help=_dhelp("dev")),
    test: str = typer.Option(None, help=_dhelp("test")),
    format: str = typer.Option(_ddefault("format"), "--format", help=_dhelp("format")),
    text_field: str = typer.Option(_ddefault("text_field"), help=_dhelp("text_field")),
    label_field: str = typer.Option(_ddefault("label_field"), help=_dhelp("label_field")),
    tokens_field: str = typer.Option(_ddefault("tokens_field"), help=_dhelp("tokens_field")),
    tags_field: str = typer.Option(_ddefault("tags_field"), help=_dhelp("tags_field")),
    question_field: str = typer.Option(_ddefault("question_field"), help=_dhelp("question_field")),
    context_field: str = typer.Option(_ddefault("context_field"), help=_dhelp("context_field")),
    answers_field: str = typer.Option(_ddefault("answers_field"), help=_dhelp("answers_field")),
    source_field: str = typer.Option(_ddefault("source_field"), help=_dhelp("source_field")),
    target_field: str = typer.Option(_ddefault("target_field"), help=_dhelp("target_field")),
    id_field: str = typer.Option(_ddefault("id_field"), help=_dhelp("id_field")),
    prompt_template: str = typer.Option(_ddefault("prompt_template"), help=_dhelp("prompt_template")),
    dev_fraction: float = typer.Option(_ddefault("dev_fraction"), help=_dhelp("dev_fraction")),
    limit: int = typer.Option(None, help=_dhelp("limit")),
    max_dev_rows: int = typer.Option(_ddefault("max_dev_rows"), help=_dhelp("max_dev_rows")),
    lora: bool = typer.Option(_ddefault("lora"), "--lora/--full", help=_dhelp("lora")),
    lora_r: int = typer.Option(_ddefault("lora_r"), help=_dhelp("lora_r")),
    lora_alpha: int = typer.Option(_ddefault("lora_alpha"), help=_dhelp("lora_alpha")),
    lora_dropout: float = typer.Option(_ddefault("lora_dropout"), help=_dhelp("lora_dropout")),
    lora_target_modules: str = typer.Option(
        _ddefault("lora_target_modules"), help=_dhelp("lora_target_modules")
    ),
    merge: bool = typer.Option(_ddefault("merge"), "--merge/--no-merge", help=_dhelp("merge")),
    lr: float = typer.Option(None, "--lr", help=_dhelp("learning_rate")),
    epochs: float = typer.Option(_ddefault("epochs"), help=_dhelp("epochs")),
    max_steps: int = typer.Option(None, help=_dhelp("max_steps")),
    batch_size: int = typer.Option(_ddefault("batch_size"), help=_dhelp("batch_size")),
    grad_accum: int = typer.Option(_ddefault("grad_accum"), help=_dhelp("grad_accum")),
    max_length: int = typer.Option(_ddefault("max_length"), help=_dhelp("max_length")),
    warmup_ratio: float = typer.Option(_ddefault("warmup_ratio"), help=_dhelp("warmup_ratio")),
    weight_decay: float = typer.Option(_ddefault("weight_decay"), help=_dhelp("weight_decay")),
    dropout: float = typer.Option(_ddefault("dropout"), help=_dhelp("dropout")),
    eval_steps: int = typer.Option(_ddefault("eval_steps"), help=_dhelp("eval_steps")),
    patience: int = typer.Option(_ddefault("patience"), help=_dhelp("patience")),
    metric: str = typer.Option(None, help=_dhelp("metric")),
    max_new_tokens: int = typer.Option(_ddefault("max_new_tokens"), help=_dhelp("max_new_tokens")),
    max_answer_tokens: int = typer.Option(_ddefault("max_answer_tokens"), help=_dhelp("max_answer_tokens")),
    doc_stride: int = typer.Option(_ddefault("doc_stride"), help=_dhelp("doc_stride")),
    seed: int = typer.Option(_ddefault("seed"), help=_dhelp("seed")),
    bf16: bool = typer.Option(None, "--bf16/--no-bf16", help=_dhelp("bf16")),
    device: str = typer.Option(_ddefault("device"), help=_dhelp("device")),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Adapt a model to a labelled task: `toolformer adapt train.jsonl --task classification --out DIR`.

    Tasks: classification, ner, qa (extractive), seq2seq. LoRA adapters plus a trained task head by default
    (--full for every weight); early stopping on the dev metric. OUT becomes a Hugging Face model folder with
    adapt_report.md / adapt_report.json and predictions.jsonl.
    """
    from toolformer.adapt import AdaptConfig, adapt

    config = AdaptConfig(
        train=train, task=task, out=out, model=model, dev=dev, test=test, format=format,
        text_field=text_field, label_field=label_field, tokens_field=tokens_field, tags_field=tags_field,
        question_field=question_field, context_field=context_field, answers_field=answers_field,
        source_field=source_field, target_field=target_field, id_field=id_field, prompt_template=prompt_template,
        dev_fraction=dev_fraction, limit=limit, max_dev_rows=max_dev_rows, lora=lora, lora_r=lora_r,
        lora_alpha=lora_alpha, lora_dropout=lora_dropout, lora_target_modules=lora_target_modules, merge=merge,
        learning_rate=lr, epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
        max_length=max_length, warmup_ratio=warmup_ratio, weight_decay=weight_decay, dropout=dropout,
        eval_steps=eval_steps, patience=patience, metric=metric, max_new_tokens=max_new_tokens,
        max_answer_tokens=max_answer_tokens, doc_stride=doc_stride, seed=seed, bf16=bf16, device=device,
    )  # fmt: skip
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


@app.command("augment")
@clean_errors
def augment_command(
    file: str = typer.Argument(..., help="Data file: JSONL, JSON, CSV/TSV."),
    out: str = typer.Option(..., "--out", "-o", help="Output file: JSONL, or CSV/TSV by extension."),
    methods: str = typer.Option(
        "synonym,delete,swap", help="Comma-separated: synonym, delete, swap, backtranslate."
    ),
    n: int = typer.Option(1, "--n", help="New rows per method per input row."),
    text_field: str = typer.Option(
        "text", help="Field(s) to rewrite, comma-separated; all other fields are kept."
    ),
    alpha: float = typer.Option(0.1, help="Share of the words changed (EDA's α; at least one word)."),
    seed: int = typer.Option(0, help="Random seed."),
    format: str = typer.Option("auto", "--format", help="Input format: auto, jsonl, json, csv, tsv."),
    id_field: str = typer.Option("id", help="Id field: new rows get <id>-<method>-<k>."),
    keep_original: bool = typer.Option(
        True, "--keep-original/--only-new", help="Write the original rows too (default) or only the new ones."
    ),
    pivots: str = typer.Option(
        "fra_Latn,deu_Latn,spa_Latn",
        help="Back-translation pivot languages (NLLB codes); copy k uses the k-th.",
    ),
    wordnet: str = typer.Option(
        None, help="WordNet dict folder (default: $TOOLFORMER_WORDNET, nltk data, …)."
    ),
    mt_model: str = typer.Option(None, help="Translation model for back-translation (directory or hub id)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Make more training rows: `toolformer augment train.jsonl --methods synonym,delete,swap --n 2 --out aug.jsonl`.

    Labels and every other field are kept; only the text field(s) change. Writes OUT and OUT.report.json.
    """
    from toolformer.augment import augment_file

    with err_console.status("augmenting"):
        report = augment_file(
            file, out, methods, text_fields=text_field, n=n, alpha=alpha, seed=seed, fmt=format,
            id_field=id_field, keep_original=keep_original, pivots=pivots, wordnet=wordnet, mt_model=mt_model,
        )  # fmt: skip
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{report.rows_in} rows in → {report.rows_out} rows out ({report.out})")
    for col in ("method", "rows", "new", "unchanged", "failed", "first error"):
        table.add_column(
            col, justify="left" if col in ("method", "first error") else "right", overflow="fold"
        )
    for name, st in report.per_method.items():
        table.add_row(
            name, str(st.rows_in), str(st.made), str(st.unchanged), str(st.failed), Text(st.first_error or ""),
            style="red" if st.failed else None,
        )  # fmt: skip
    console.print(table)
    if report.skipped_rows:
        err_console.print(
            Text(f"{report.skipped_rows} rows have no text in {','.join(report.text_fields)}", style="yellow")
        )
    console.print(f"report: {report.out}.report.json", highlight=False)


_shelp = functools.partial(field_help, ServeConfig)
_sdefault = functools.partial(field_default, ServeConfig)


@app.command()
@clean_errors
def serve(
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    api_key: list[str] = typer.Option(None, "--api-key", envvar=API_KEY_ENV, help=_shelp("api_keys")),
    tools: str = typer.Option(None, "--tools", "-t", help=TOOLS_HELP),
    backend: str = typer.Option("auto", "--backend", help=BACKEND_HELP),
    max_batch: int = typer.Option(_sdefault("max_batch"), help=_shelp("max_batch")),
    max_calls: int = typer.Option(_sdefault("max_calls"), help=_shelp("max_calls")),
    max_tokens_cap: int = typer.Option(_sdefault("max_tokens_cap"), help=_shelp("max_tokens_cap")),
    max_concurrency: int = typer.Option(
        _sdefault("max_concurrency_per_key"), help=_shelp("max_concurrency_per_key")
    ),
    max_request_bytes: int = typer.Option(_sdefault("max_request_bytes"), help=_shelp("max_request_bytes")),
    request_timeout: float = typer.Option(_sdefault("request_timeout"), help=_shelp("request_timeout")),
    examples: str = typer.Option(_sdefault("examples"), help=_shelp("examples")),
    corpus: Path = typer.Option(None, help=CORPUS_HELP),
    mt_model: str = typer.Option(None, help="Translation model for MT (directory or hub id)."),
    log_level: str = typer.Option("info", help="Server log level: debug, info, warning, error."),
) -> None:
    """Serve the model over an OpenAI-compatible API, tools running inside the server: `toolformer serve`.

    Then point any OpenAI client at http://HOST:PORT/v1, or open http://HOST:PORT/ for the playground.
    """
    config = ServeConfig(
        api_keys=list(api_key or []),
        max_request_bytes=max_request_bytes,
        max_tokens_cap=max_tokens_cap,
        default_max_tokens=min(_sdefault("default_max_tokens"), max_tokens_cap),
        max_concurrency_per_key=max_concurrency,
        request_timeout=request_timeout,
        max_calls=max_calls,
        max_calls_cap=max(max_calls, _sdefault("max_calls_cap")),
        max_batch=max_batch,
        examples=examples,
    )
    import uvicorn

    from toolformer.serve.app import create_app
    from toolformer.serve.backend import load_backend

    with err_console.status("loading model"):
        be = load_backend(
            model, tools, backend=backend, max_batch=max_batch, **_tool_options(corpus, mt_model)
        )
    err_console.print(
        f"[dim]{be.name} ({be.kind}) with {', '.join(be.tools.names()) or 'no tools'}; "
        f"API at http://{host}:{port}/v1, playground at http://{host}:{port}/"
        f"{'; API key required' if config.api_keys else ''}[/dim]",
        highlight=False,
    )
    uvicorn.run(create_app(be, config), host=host, port=port, log_level=log_level.lower())


mixture_app = typer.Typer(
    help="The all-tools training mixture: candidate texts per tool (build), then the training file (assemble).",
    no_args_is_help=True,
)
app.add_typer(mixture_app, name="mixture")


@mixture_app.command("build")
@clean_errors
def mixture_build(
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder for the candidate files (main, mt, calendar-*, plain, chat)."
    ),
    gsm8k: Path = typer.Option(
        ..., help="GSM8K *train* JSONL (question, solution, answer) for the Calculator texts."
    ),
    vital_es: Path = typer.Option(
        None, help="Spanish Vital Articles JSONL for the MT texts (none: no MT texts)."
    ),
    calculator: int = typer.Option(600, help="Calculator texts (GSM8K problems that compose into one call)."),
    calculator_more: int = typer.Option(
        900,
        help="More Calculator texts (the next GSM8K problems) in calculator.jsonl, annotated on their own.",
    ),
    wikisearch: int = typer.Option(700, help="WikiSearch question texts from English Vital Articles leads."),
    qa: int = typer.Option(400, help="QA statements to complete from English Vital Articles leads."),
    mt: int = typer.Option(
        260, help="MT question texts about Spanish sentences (answers written by the MT tool)."
    ),
    calendar: int = typer.Option(14, help="Calendar question texts per date."),
    dates: str = typer.Option(
        "",
        help="Dates of the Calendar texts, comma-separated (default: 24 dates 113 days apart from 2019-01-07); "
        "annotate each file with TOOLFORMER_TODAY=DATE.",
    ),
    plain: int = typer.Option(200, help="Plain passages (English leads, no call belongs)."),
    chat_model: str = typer.Option(
        "smollm2-135m-instruct", help="Model answering the conversational no-call prompts ('' to skip them)."
    ),
    mt_model: str = typer.Option(
        None, help="Translation model for the MT answers (default: NLLB if on disk, else Apertium)."
    ),
    seed: int = typer.Option(0, help="Seed of the article order and of the question forms."),
) -> None:
    """Write candidate texts for every tool: `toolformer mixture build --gsm8k train.jsonl --out cands/`."""
    import datetime as dt

    from toolformer.datagen import candidates
    from toolformer.errors import ConfigError

    try:
        days = [dt.date.fromisoformat(d.strip()) for d in dates.split(",") if d.strip()]
    except ValueError as exc:
        raise ConfigError(f"dates={dates!r}: {exc}") from None
    days = days or candidates.calendar_dates(24)
    from toolformer.inputs import input_file

    input_file(gsm8k, "gsm8k")
    if vital_es is not None:
        input_file(vital_es, "vital_es")
    counts = {
        "calculator": calculator,
        "calculator_more": calculator_more,
        "wikisearch": wikisearch,
        "qa": qa,
        "mt": mt,
        "calendar": calendar,
        "plain": plain,
    }
    translate = candidates.tool_translator(mt_model) if vital_es is not None and mt else None
    summary = candidates.build_candidates(out, gsm8k, vital_es, counts, days, translate=translate, seed=seed)
    if chat_model:
        rows = candidates.chat_texts(candidates.chat_generator(chat_model))
        candidates.write_jsonl(Path(out) / "chat.jsonl", rows)
        summary["chat.jsonl"] = candidates.count_kinds(rows)
    print(json.dumps(summary, indent=1))


@mixture_app.command("assemble")
@clean_errors
def mixture_assemble(
    annotated: list[Path] = typer.Argument(..., help="`toolformer annotate` output folders."),
    plain: list[Path] = typer.Option([], help="JSONL files of plain texts (no calls), repeatable."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="The training JSONL to write (a report JSON beside it)."
    ),
    tools: str = typer.Option(
        "Calculator,Calendar,WikiSearch,QA,MT",
        help="Tools the header may name (built-in names, module:function).",
    ),
    rejected_ratio: float = typer.Option(
        0.15, help="Texts whose call the filter dropped, per kept text (no call)."
    ),
    header_share: float = typer.Option(0.25, help="Share of the texts written under the tools header."),
    seed: int = typer.Option(0, help="Seed of the sampling, header subsets and order."),
    max_per_tool: int = typer.Option(
        None, help="Keep at most this many texts with calls per tool (default: all)."
    ),
    check: list[Path] = typer.Option(
        [], help="More evaluation files or folders (*.jsonl) to measure n-gram overlap against, repeatable."
    ),
) -> None:
    """Write the training file from kept calls and plain texts: `toolformer mixture assemble ann/ --out train.jsonl`."""
    from toolformer.datagen import candidates, mixture
    from toolformer.tools import load_tools

    registry = load_tools(tools)
    rows, counts = mixture.assemble(
        annotated, plain, list(registry.values()), rejected_ratio, header_share, seed
    )
    counts["yield"] = mixture.yield_table(annotated)
    extra = [f for c in check for f in (sorted(Path(c).rglob("*.jsonl")) if Path(c).is_dir() else [Path(c)])]
    counts["overlap_8gram"] = mixture.overlap((r["text"] for r in rows), mixture.shipped_eval_files() + extra)
    candidates.write_jsonl(out, rows)
    Path(out).with_suffix(".report.json").write_text(json.dumps(counts, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(counts, indent=1))


@app.command()
def version() -> None:
    """Print the version."""
    from toolformer import __version__

    print(__version__)


def main() -> None:  # pragma: no cover - console-script entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
