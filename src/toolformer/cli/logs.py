"""`toolformer logs`: list the run log's answers (`ask`, `chat`, served requests), newest last, like `llm logs`."""

from __future__ import annotations

import json
from typing import Any

import typer

from toolformer.cli.common import clean_errors, err_console


@clean_errors
def logs_command(
    count: int = typer.Option(
        3, "--count", "-n", min=0, help="How many of the latest answers to show (0: all)."
    ),
    model: str = typer.Option(None, "--model", "-m", help="Only answers of this model (as logged)."),
    tool: str = typer.Option(
        None, "--tool", "-t", help="Only answers that called this tool (e.g. Calculator)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print them as a JSON array."),
    path: bool = typer.Option(False, "--path", help="Print the run log's file and exit."),
) -> None:
    """Show the latest logged answers, their tool calls, tokens and timing: `toolformer logs -n 10 --tool Calculator`.

    Every `ask`, `chat` turn and served request is logged to $TOOLFORMER_HOME/logs.db (SQLite); --no-log on
    those commands, or TOOLFORMER_NO_LOG=1, turns logging off.
    """
    from toolformer.runlog import log_path, read_responses

    if path:
        print(log_path())
        return
    rows = read_responses(log_path(), n=count, model=model, tool=tool)
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        err_console.print(
            f"no logged answers{_filters(model, tool)} in {log_path()}", highlight=False, markup=False
        )
        return
    print("\n\n".join(render(row) for row in rows))


def _filters(model: str | None, tool: str | None) -> str:
    parts = [f"of model {model!r}" if model else "", f"calling {tool!r}" if tool else ""]
    return "".join(f" {p}" for p in parts if p)


def render(row: dict[str, Any]) -> str:
    """One logged answer as Markdown: a heading with time, source and id, the model line, prompt, calls, answer."""
    head = f"# {row['time'][:19].replace('T', ' ')} UTC  {row['source']}  id: {row['id']}"
    if row.get("conversation_id"):
        head += f"  conversation: {row['conversation_id']}"
    facts = [f"Model: **{row['model']}**"]
    if row.get("prompt_tokens") is not None or row.get("completion_tokens") is not None:
        facts.append(
            f"{row.get('prompt_tokens') or 0} prompt + {row.get('completion_tokens') or 0} completion tokens"
        )
    if row.get("duration_ms") is not None:
        facts.append(f"{row['duration_ms']} ms")
    parts = [head, "  ·  ".join(facts), "## Prompt", row["prompt"].strip()]
    if row["calls"]:
        parts.append("## Calls")
        parts.append(
            "\n".join(
                f"{c['position'] + 1}. {c['tool']}({c['input']}) → {c['output']}"
                f"  ({'ok' if c['ok'] else 'failed'}, {c['ms'] or 0:.1f} ms)"
                for c in row["calls"]
            )
        )
    parts += ["## Answer", row["answer"].strip()]
    return "\n\n".join(parts)
