"""`toolformer annotate run` (the default) and `annotate inspect`: annotate a corpus with calls, then look at it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from toolformer.cli.common import clean_errors, console, err_console, fmt_loss, render_text
from toolformer.cli.options import config_command, opt
from toolformer.datagen.config import AnnotateConfig, parse_tau_f_tool  # torch-free at import


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


@annotate_app.command("run")
@clean_errors
@config_command(
    AnnotateConfig,
    opt("input", param="file", argument=True, required=True),
    opt("format", "--format"),
    opt("tools", "--tools", "-t"),
    opt("model", "--model", "-m"),
    opt("tau_f_tool", "--tau-f-tool", type=list[str], default=[], convert=parse_tau_f_tool),
    opt("out", "--out", "-o"),
    opt("autocast_bf16", "--bf16/--no-bf16"),
    order="input text_field id_field format text_unit hf_split tools proposer model tau_f tau_f_tool horizon out "
    "limit shard_size num_shards shard_id backend device autocast_bf16 max_batch_tokens batch_docs max_chars "
    "dev_fraction seed workers tool_cache exclude_self_from_search sample_backend ray_address ray_actors",
)
def annotate_run(
    config: AnnotateConfig, quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.")
) -> None:
    """Annotate FILE with tool calls: heuristics → sample → execute → filter (τ_f) → merge; resumable.

    Writes DIR/shard-*.jsonl (training texts with calls, field `split` = train/dev), DIR/records-*.jsonl (every
    document and candidate with its losses) and DIR/manifest.json. Rerun the same command to resume.
    """
    from toolformer.datagen.annotate import annotate

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
    from toolformer.datagen.report import nothing_kept_advice

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
                fmt_loss(c.get("loss_plus")),
                fmt_loss(c.get("loss_minus")),
                fmt_loss(c.get("loss_empty")),
                fmt_loss(c.get("loss_noresult")),
                fmt_loss(c.get("gain")),
                c.get("reason", ""),
                style=style,
            )
        console.print(table)
    if row is not None:
        console.print(render_text(row["text"]))
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
        console.print(Text(f"{d.id}  gain {fmt_loss(d.gain)}  split={d.split}  {verdict}", style="bold"))
        for c in d.contexts(window):
            before = c.before.replace("\n", "↵")
            after = c.after.replace("\n", "↵")
            line = Text(f"  {fmt_loss(c.gain):>7}  {'kept' if c.kept else c.reason:<12}  ")
            line.append("…" + before + ("" if not before or before[-1].isspace() else " "))
            line.append(c.call, style="bold green" if c.kept else "bold")
            line.append(("" if not after or after[0].isspace() else " ") + after + "…")
            console.print(line)
