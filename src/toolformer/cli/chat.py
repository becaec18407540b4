"""`toolformer ask` and `toolformer chat`: answer with tool calls, one question or a conversation."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from toolformer.cli.common import (
    BACKEND_HELP,
    CORPUS_HELP,
    MODEL_HELP,
    NO_LOG_HELP,
    STREAM_HELP,
    TOOLS_HELP,
    clean_errors,
    console,
    err_console,
    render_text,
    run_log,
    tool_options,
    trace_table,
)


def _answer_printer(stream: bool | None, as_json: bool, stops: Any = (), json_calls: bool = False) -> Any:
    """An AnswerPrinter on stdout when the answer should stream (never with --json), else None."""
    if as_json or not (console.is_terminal if stream is None else stream):
        return None
    from toolformer.live import AnswerPrinter

    return AnswerPrinter(console, stops, json_calls=json_calls)


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
    no_log: bool = typer.Option(False, "--no-log", help=NO_LOG_HELP),
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
        tf = Toolformer.load(model, tools, backend=backend, **tool_options(corpus, mt_model))
    runlog = run_log(no_log)
    printer = _answer_printer(stream, as_json, stops=config.stop or STOP)
    start = time.perf_counter()
    gen = tf.ask(question, config, on_event=printer.on_event if printer else None)
    ms = (time.perf_counter() - start) * 1000
    if as_json:
        print(
            json.dumps(
                {"model": tf.name, "backend": tf.backend, **gen.to_dict(), "token_ids": None},
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        if printer is not None:
            printer.finish(gen.text)
        else:
            console.print(render_text(gen.text.strip()))
        if gen.calls:
            console.print(trace_table(gen.calls))
        else:
            err_console.print("[dim](no tool call)[/dim]")
    if runlog is not None:  # after the answer is out: a slow or failing log never holds it back
        runlog.record(
            source="ask",
            model=tf.name,
            prompt=question,
            answer=gen.text,
            calls=gen.calls,
            prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.new_tokens,
            duration_ms=ms,
            options=config,
            finish_reason=gen.finish_reason,
        )


@clean_errors
def chat(
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    tools: str = typer.Option(None, "--tools", "-t", help=TOOLS_HELP),
    max_calls: int = typer.Option(2, help="Tool rounds per reply."),
    max_new_tokens: int = typer.Option(256, help="Tokens per reply."),
    system: str = typer.Option(None, help="System prompt."),
    backend: str = typer.Option("auto", "--backend", help=BACKEND_HELP),
    stream: bool | None = typer.Option(None, "--stream/--no-stream", help=STREAM_HELP),
    no_log: bool = typer.Option(False, "--no-log", help=NO_LOG_HELP),
) -> None:
    """Chat in the terminal through the model's chat template; tools run as the model calls them."""
    from toolformer.runtime.decode import DecodeConfig
    from toolformer.runtime.engine import Toolformer
    from toolformer.serve.stream import join_rounds, tidy

    with err_console.status("loading model"):
        tf = Toolformer.load(model, tools, backend=backend)
    config = DecodeConfig(max_new_tokens=max_new_tokens, max_calls=max_calls)
    runlog = run_log(no_log)
    conversation = uuid.uuid4().hex  # every turn of this session is logged under it
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
        start = time.perf_counter()
        result = tf.chat(messages, config, on_event=printer.on_event if printer else None)
        ms = (time.perf_counter() - start) * 1000
        added = result.messages[len(messages) :]
        messages = result.messages
        if printer is not None:  # every round's content, as the stream showed them
            printer.finish(
                join_rounds([tidy(m.get("content") or "") for m in added if m["role"] == "assistant"])
            )
        else:
            console.print(Text("model> ", style="bold green") + render_text(result.content.strip()))
        if result.calls:
            console.print(trace_table(result.calls))
        if runlog is not None:
            runlog.record(
                source="chat",
                model=tf.name,
                prompt=line,
                answer=result.content,
                calls=result.calls,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                duration_ms=ms,
                conversation_id=conversation,
                options=config,
                finish_reason=result.finish_reason,
            )
