"""Markdown and plain-text documents as search passages: sections, paragraphs, titles, ids and bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolformer.errors import DataError
from toolformer.tools.documents import (
    document_files,
    is_document_corpus,
    markdown_sections,
    read_documents,
    text_paragraphs,
)


def test_markdown_sections_follow_headings_not_code() -> None:
    text = (
        "---\ntitle: front matter\n---\n"
        "Intro before any heading.\n\n"
        "# Setup\n\nInstall **it** with [pip](https://pypi.org) and `make`.\n\n"
        "## Linux\n\n```bash\n# a comment, not a heading\napt-get install foo\n```\n\n"
        "# Empty\n\n"
        "Usage\n=====\n\n| flag | meaning |\n|---|---|\n| -v | verbose |\n"
    )
    sections = markdown_sections(text)
    assert sections == [
        ("", "Intro before any heading."),
        ("Setup", "Install it with pip and make."),
        ("Setup > Linux", "# a comment, not a heading\napt-get install foo"),
        ("Usage", "flag | meaning\n\n-v | verbose"),
    ]


def test_a_long_section_is_split_at_blocks_under_one_heading() -> None:
    paragraphs = [f"Paragraph {i} " + "word " * 40 for i in range(10)]
    sections = markdown_sections("# Long\n\n" + "\n\n".join(paragraphs), max_chars=500)
    assert len(sections) > 1 and {h for h, _ in sections} == {"Long"}
    assert all(len(body) <= 500 for _, body in sections)
    joined = "\n\n".join(body for _, body in sections)
    assert joined == "\n\n".join(p.strip() for p in paragraphs)  # nothing lost, order kept


def test_text_paragraphs_join_short_ones_forward() -> None:
    text = "Title\n\n" + "A first paragraph that is long enough to stand alone as a passage.\n\n \n" + "End."
    assert text_paragraphs(text) == [
        "Title\n\nA first paragraph that is long enough to stand alone as a passage.\n\nEnd."
    ]
    assert text_paragraphs("only short") == ["only short"]
    assert text_paragraphs("\n\n  \n") == []
    long_a, long_b = "a" * 80, "b" * 80
    assert text_paragraphs(f"{long_a}\r\n\r\n{long_b}") == [long_a, long_b]


def test_read_documents_titles_ids_and_file_selection(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "node" / ".cache").mkdir(parents=True)
    (tmp_path / "a" / "x.MD").write_text("# One\n\nfirst\n\n# Two\n\nsecond\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("plain text " * 10, encoding="utf-8")
    (tmp_path / "node" / ".cache" / "c.md").write_text("hidden", encoding="utf-8")
    (tmp_path / "d.json").write_text("{}", encoding="utf-8")
    assert [p.name for p in document_files(tmp_path)] == ["x.MD", "b.txt"]
    passages = read_documents(tmp_path)
    assert [(p["id"], p["title"]) for p in passages] == [
        ("a/x.MD#1", "a/x.MD > One"),
        ("a/x.MD#2", "a/x.MD > Two"),
        ("b.txt#1", "b.txt"),
    ]
    assert is_document_corpus(tmp_path) and is_document_corpus(tmp_path / "new.markdown")
    assert not is_document_corpus(tmp_path / "d.json")


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p, "holds no .md"),
        (lambda p: (p / "bad.md").write_bytes(b"# T\n\n\xff\xfe\n") and p, "bad.md: not UTF-8"),
        (lambda p: (p / "blank.txt").write_text("\n \n", encoding="utf-8") and p, "no passages"),
    ],
)
def test_bad_document_corpora_are_one_clear_error(tmp_path, make, fragment) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    with pytest.raises(DataError, match=fragment):
        read_documents(make(folder))


def test_documents_are_readable_without_torch() -> None:
    import subprocess
    import sys

    code = "import sys, toolformer.tools.documents; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_path_is_a_path() -> None:
    assert isinstance(document_files(Path("x.md"))[0], Path)
