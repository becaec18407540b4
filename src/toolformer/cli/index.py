"""`toolformer index build`: the BM25 index of a corpus for WikiSearch and QA."""

from __future__ import annotations

from pathlib import Path

import typer

from toolformer.cli.common import clean_errors, err_console

index_app = typer.Typer(help="Build search indexes for WikiSearch and QA.", no_args_is_help=True)


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
    from toolformer.tools.wikisearch.index import build_index, index_info

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
