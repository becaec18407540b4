"""`toolformer index build`: the fields it is told are the fields every later `--corpus FILE` reads."""

from __future__ import annotations

from typer.testing import CliRunner

from fakes import write_jsonl
from toolformer.cli import app

runner = CliRunner()

ROWS = [
    {"uid": "a", "heading": "Zanzibar", "content": "Zanzibar is an archipelago off the coast of Tanzania."},
    {"uid": "b", "heading": "Oslo", "content": "Oslo is the capital of Norway."},
]


def test_index_build_text_field_is_remembered_by_every_later_corpus_use(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", ROWS)
    before = runner.invoke(app, ["tools", "call", "WikiSearch", "capital of Norway", "--corpus", str(corpus)])
    # Not indexed yet: a failed call (its exit code is the tools command's business) that says what to run.
    assert before.exit_code != 0 and "'text' is missing" in before.output and "--text-field" in before.output
    built = runner.invoke(
        app, ["index", "build", str(corpus), "--text-field", "content", "--title-field", "heading"]
    )
    assert built.exit_code == 0, built.output
    assert "2 passages (field 'content')" in built.stdout and f"--corpus {corpus}" in built.stdout
    found = runner.invoke(app, ["tools", "call", "WikiSearch", "capital of Norway", "--corpus", str(corpus)])
    assert found.exit_code == 0, found.output
    assert found.stdout.startswith("Oslo: Oslo is the capital of Norway.")
    again = runner.invoke(app, ["index", "build", str(corpus)])  # no field named: the remembered ones
    assert again.exit_code == 0 and "field 'content'" in again.stdout


def test_index_build_accepts_a_markdown_folder(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "howto.md").write_text("# Brewing\n\nSteep the tea for three minutes.\n", encoding="utf-8")
    (docs / "notes.txt").write_text("The kettle lives on the second shelf of the pantry cupboard.\n")
    built = runner.invoke(app, ["index", "build", str(docs)])
    assert built.exit_code == 0, built.output
    assert "2 passages (sections and paragraphs)" in built.stdout
    found = runner.invoke(app, ["tools", "call", "WikiSearch", "steep tea", "--corpus", str(docs)])
    assert found.exit_code == 0, found.output
    assert found.stdout.startswith("howto.md > Brewing: Steep the tea for three minutes.")
    refused = runner.invoke(app, ["index", "build", str(docs), "--text-field", "body"])
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert "JSONL corpora only" in refused.stderr
