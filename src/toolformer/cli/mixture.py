"""`toolformer mixture build` and `mixture assemble`: the all-tools training mixture, candidates then file."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from toolformer.cli.common import clean_errors, err_console

mixture_app = typer.Typer(
    help="The all-tools training mixture: candidate texts per tool (build), then the training file (assemble).",
    no_args_is_help=True,
)


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
    calculator_short: int = typer.Option(
        0,
        help="Further Calculator texts in calculator-short.jsonl: GSM8K problems of one or two steps not used "
        "above, never the GSM8K dev slice.",
    ),
    one_step: int = typer.Option(
        0,
        help="One-step word problems written from schemata (datagen.wordproblems) in calculator-onestep.jsonl.",
    ),
    wikisearch: int = typer.Option(700, help="WikiSearch question texts from English Vital Articles leads."),
    qa: int = typer.Option(400, help="QA statements to complete from English Vital Articles leads."),
    mt: int = typer.Option(
        260, help="MT question texts about Spanish sentences (answers written by the MT tool)."
    ),
    calendar: int = typer.Option(
        34, help="Calendar question texts per date (at most 34, the questions there are)."
    ),
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
    if not 0 <= calendar <= len(candidates.CALENDAR_QUESTIONS):
        raise ConfigError(
            f"calendar={calendar}: between 0 and {len(candidates.CALENDAR_QUESTIONS)} (the questions there are)"
        )
    from toolformer.inputs import input_file

    input_file(gsm8k, "gsm8k")
    if vital_es is not None:
        input_file(vital_es, "vital_es")
    counts = {
        "calculator": calculator,
        "calculator_more": calculator_more,
        "calculator_short": calculator_short,
        "one_step": one_step,
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
    for name, why in summary.get("notes", {}).items():
        err_console.print(f"warning: {name}: {why}")


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
    extra = [f for c in check for f in (sorted(Path(c).rglob("*.jsonl")) if Path(c).is_dir() else [Path(c)])]
    evals = mixture.shipped_eval_files() + extra
    rows, counts = mixture.assemble(
        annotated, plain, list(registry.values()), rejected_ratio, header_share, seed, max_per_tool, evals
    )
    counts["yield"] = mixture.yield_table(annotated)
    counts["overlap_8gram"] = mixture.overlap((r["text"] for r in rows), evals)
    candidates.write_jsonl(out, rows)
    Path(out).with_suffix(".report.json").write_text(json.dumps(counts, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(counts, indent=1))


@mixture_app.command("functions")
@clean_errors
def mixture_functions(
    out: Path = typer.Option(..., "--out", "-o", help="The JSONL file of function-calling rows to write."),
    n: int = typer.Option(2000, "--n", help="Rows to write."),
    seed: int = typer.Option(0, help="Seed of the functions, requests and kinds."),
    no_call_share: float = typer.Option(
        0.2, help="Share of rows where no offered function fits (answered in plain text)."
    ),
    parallel_share: float = typer.Option(0.2, help="Share of rows asking for two calls at once."),
    tokenizer: str = typer.Option(
        "smollm2-135m-instruct",
        help="Model whose chat template renders each row's `text` (prompt + answer); '' for no text.",
    ),
) -> None:
    """Write JSON function-calling rows: `toolformer mixture functions --out functions.jsonl --n 2000`."""
    from collections import Counter

    from toolformer.datagen import candidates
    from toolformer.datagen.functions import generate_rows

    tok = None
    if tokenizer:
        from toolformer.models.load import load_tokenizer

        tok = load_tokenizer(tokenizer)
    rows = list(generate_rows(n, seed, no_call_share, parallel_share, tok))
    candidates.write_jsonl(out, rows)
    print(json.dumps({"rows": len(rows), "kinds": dict(Counter(r["kind"] for r in rows))}, indent=1))
