"""`toolformer doctor`: one line per check of what the toolkit needs, with how to fix each problem."""

from __future__ import annotations

import json

import typer
from rich.text import Text

from toolformer.cli.common import console

_LABELS = {"ok": ("ok", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "bold red")}


def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Check what the toolkit needs (torch, llama.cpp, models, caches, indexes, MT, disk); exit 1 if an essential
    check fails."""
    from toolformer.doctor import exit_code, run_checks

    results = run_checks()
    code = exit_code(results)
    if as_json:
        print(json.dumps({"ok": code == 0, "checks": [r.to_dict() for r in results]}, indent=1))
        raise typer.Exit(code)
    for r in results:
        label, style = _LABELS[r.status]
        line = Text.assemble((f"{label:<6}", style), f"{r.name}: {r.detail}")
        if r.fix:
            line.append(f" — fix: {r.fix}")
        # Text, not markup: details hold `[train]`-like brackets; soft wrap keeps one line per check.
        console.print(line, soft_wrap=True, highlight=False)
    warned = sum(r.status == "warn" for r in results)
    failed = sum(r.status == "fail" for r in results)
    summary = (
        f"{failed} essential check{'s' if failed != 1 else ''} failed"
        if failed
        else "all essential checks pass"
    )
    console.print(
        f"{summary}, {warned} warning{'s' if warned != 1 else ''}",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    raise typer.Exit(code)
