"""`toolformer augment`: more training rows from a data file (EDA edits, back-translation)."""

from __future__ import annotations

import json

import typer
from rich.table import Table
from rich.text import Text

from toolformer.cli.common import clean_errors, console, err_console


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
