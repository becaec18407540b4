"""WikiSearch: corpus reading, the cached BM25 index (hash, rebuild, errors), Searcher, snippets and the Tool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes import write_jsonl
from toolformer.calls import Call
from toolformer.errors import DataError
from toolformer.paths import HOME_ENV
from toolformer.tools.wikisearch import (
    Searcher,
    build_index,
    default_corpus_path,
    index_info,
    read_corpus,
    snippet,
    toolformer_home,
    wikisearch_tool,
)

DOCS = [
    {
        "id": "d1",
        "title": "Eiffel Tower",
        "text": "The Eiffel Tower is a lattice tower in Paris. It is 330 metres tall.",
    },
    {
        "id": "d2",
        "title": "Gustave Eiffel",
        "text": "Gustave Eiffel was a French civil engineer. His company built the tower.",
    },
    {
        "id": "d3",
        "title": "Mount Everest",
        "text": "Mount Everest is Earth's highest mountain above sea level, in the Himalayas.",
    },
    {
        "id": "d4",
        "title": "Python (programming language)",
        "text": "Python is a programming language created by Guido van Rossum.",
    },
    {
        "id": "d5",
        "title": "Banana",
        "text": "A banana is an elongated, edible fruit produced by plants of the genus Musa.",
    },
    {
        "id": "d6",
        "title": "Paris",
        "text": "Paris is the capital and largest city of France. The Seine flows through it.",
    },
]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_jsonl(tmp_path / "mini.jsonl", DOCS)


def test_home_defaults_to_user_cache(monkeypatch) -> None:
    monkeypatch.delenv(HOME_ENV, raising=False)
    assert toolformer_home() == Path.home() / ".cache" / "toolformer"


def test_read_corpus_plain_and_gzip(tmp_path) -> None:
    plain = read_corpus(write_jsonl(tmp_path / "a.jsonl", DOCS))
    zipped = read_corpus(write_jsonl(tmp_path / "a.jsonl.gz", DOCS, gz=True))
    assert plain == zipped
    assert [p["id"] for p in plain] == [d["id"] for d in DOCS]


def test_read_corpus_custom_fields_and_defaults(tmp_path) -> None:
    path = write_jsonl(
        tmp_path / "c.jsonl", [{"body": "first passage"}, {"body": "second", "name": "Two", "key": 7}]
    )
    rows = read_corpus(path, text_field="body", title_field="name", id_field="key")
    assert rows == [
        {"id": "1", "title": "", "text": "first passage"},
        {"id": "7", "title": "Two", "text": "second"},
    ]


@pytest.mark.parametrize(
    ("lines", "line_no", "fragment"),
    [
        (['{"text": "ok"}', "{not json"], 2, "not valid JSON"),
        (['{"text": "ok"}', "", '["a list"]'], 3, "expected a JSON object"),
        (['{"title": "no text"}'], 1, "'text'"),
        (['{"text": "ok"}', '{"text": ""}'], 2, "'text'"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, lines, line_no, fragment) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_corpus(path)
    assert f"bad.jsonl:{line_no}" in str(info.value) and fragment in str(info.value)


def test_missing_empty_and_binary_corpora(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_corpus(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no passages"):
        read_corpus(tmp_path / "empty.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b'{"text": "\xff\xfe"}\n')
    with pytest.raises(DataError, match="UTF-8"):
        read_corpus(tmp_path / "bin.jsonl")
    (tmp_path / "fake.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="fake.jsonl.gz"):
        read_corpus(tmp_path / "fake.jsonl.gz")


def test_build_index_caches_by_content_hash(home, corpus) -> None:
    messages: list[str] = []
    first = build_index(corpus, progress=messages.append)
    assert first.parent == home / "indexes" and first.name.startswith("mini-")
    assert messages and index_info(first)["passages"] == len(DOCS)
    messages.clear()
    assert build_index(corpus, progress=messages.append) == first
    assert messages == []  # cached: nothing rebuilt
    write_jsonl(corpus, DOCS[:3])
    changed = build_index(corpus)
    assert changed != first and index_info(changed)["passages"] == 3
    assert build_index(corpus, name="custom").name.startswith("custom-")


def test_build_index_prints_nothing(home, corpus, capsys) -> None:
    build_index(corpus)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("damage", ["meta.json", "passages.jsonl", "bm25/vocab.index.json"])
def test_damaged_index_is_rebuilt(home, corpus, damage) -> None:
    index = build_index(corpus)
    (index / damage).unlink()
    rebuilt = build_index(corpus)
    assert rebuilt == index and (index / damage).is_file()
    assert Searcher(corpus).search("Everest")[0]["id"] == "d3"


def test_corrupt_index_files_are_rebuilt_on_load(home, corpus) -> None:
    index = build_index(corpus)
    (index / "passages.jsonl").write_text("garbage\n", encoding="utf-8")
    assert Searcher(corpus).search("banana fruit")[0]["title"] == "Banana"


def test_build_index_rejects_bad_corpus(home, tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 5}\n', encoding="utf-8")
    with pytest.raises(DataError, match="bad.jsonl:2"):
        build_index(bad)
    assert not any((home / "indexes").glob("bad-*")) if (home / "indexes").exists() else True


def test_searcher_is_lazy_and_ranks(home, corpus) -> None:
    searcher = Searcher(corpus)
    assert not home.exists()  # constructing built nothing
    hits = searcher.search("How tall is the Eiffel Tower?", k=2)
    assert [h["id"] for h in hits] == ["d1", "d2"]
    assert hits[0]["score"] > hits[1]["score"] > 0 and [h["rank"] for h in hits] == [1, 2]
    assert set(hits[0]) == {"rank", "id", "title", "text", "score"}
    assert len(searcher.search("tower", k=50)) == 2  # only passages that match, k capped by the corpus
    assert searcher.search("the of and") == []  # stopwords only
    assert searcher.search("zzzqqq") == []
    assert len(searcher) == len(DOCS)


def test_searcher_from_index_dir(home, corpus, tmp_path) -> None:
    index = build_index(corpus)
    assert Searcher(index_dir=index).search("Guido Python")[0]["id"] == "d4"
    with pytest.raises(DataError, match="not a complete toolformer index"):
        Searcher(index_dir=tmp_path).search("x")


def test_snippet_starts_at_the_matching_sentence() -> None:
    text = "Alpha is a letter. " * 20 + "The answer is forty two. Beta follows."
    cut = snippet(text, "what is the answer", limit=60)
    assert cut.startswith("The answer is forty two.") and len(cut) <= 60
    assert snippet("Short text.", "anything") == "Short text."
    long_lead = "Word " * 100
    assert (
        snippet(long_lead, "word", limit=50).endswith("…") and len(snippet(long_lead, "word", limit=50)) <= 50
    )


def test_tool_output_format(home, corpus) -> None:
    tool = wikisearch_tool(Searcher(corpus), k=3, snippet_chars=80)
    out = tool.run(Call("WikiSearch", '"Eiffel tower"'))
    assert out.ok
    parts = out.text.split(" | ")
    assert parts[0].startswith("Eiffel Tower: The Eiffel Tower is a lattice tower")
    assert 1 < len(parts) <= 3 and all(len(p) <= 80 + len("Gustave Eiffel: ") for p in parts)


def test_tool_errors(home, corpus) -> None:
    tool = wikisearch_tool(Searcher(corpus))
    empty = tool.run(Call("WikiSearch", '""'))
    none = tool.run(Call("WikiSearch", "qwertyuiop"))
    assert not empty.ok and empty.text == "error: query is empty"
    assert not none.ok and none.text.startswith("error: no results for")


def test_tool_accepts_a_corpus_path(home, corpus) -> None:
    assert wikisearch_tool(corpus).run(Call("WikiSearch", "Himalayas")).text.startswith("Mount Everest:")


def test_shipped_corpus_is_complete() -> None:
    path = default_corpus_path()
    assert path.name == "vital_en.jsonl.gz" and path.stat().st_size < 3_000_000
    rows = read_corpus(path)
    assert len(rows) == 10_033 and len({r["id"] for r in rows}) == 10_033
    assert all(r["title"] and r["text"] for r in rows)
    assert (path.parent / "README.md").read_text(encoding="utf-8").count("CC BY-SA") >= 1


def test_default_corpus_search_end_to_end(home) -> None:
    tool = wikisearch_tool()
    out = tool.run(Call("WikiSearch", '"Eiffel Tower"'))
    assert out.ok and out.text.startswith("Eiffel Tower: ")
    assert len(out.text) < 700


# ------------------------------------------------------------------------------------------ exclusion


def test_search_leaves_out_excluded_hits_and_still_returns_k(home, corpus) -> None:
    searcher = Searcher(corpus)
    plain = searcher.search("Eiffel tower Paris", k=2)
    assert plain[0]["id"] == "d1"
    hits = searcher.search("Eiffel tower Paris", k=2, exclude=lambda hit: hit["id"] == "d1")
    assert "d1" not in [h["id"] for h in hits] and len(hits) == 2
    assert [h["rank"] for h in hits] == [1, 2] and hits[0]["id"] == plain[1]["id"]


def test_excluding_applies_to_every_search_in_its_block_and_reaches_tool_threads(home, corpus) -> None:
    from toolformer.tools.wikisearch import current_exclusion, excluding

    tool = wikisearch_tool(Searcher(corpus), k=1)
    assert tool.run(Call("WikiSearch", "Eiffel Tower")).text.startswith("Eiffel Tower:")
    with excluding(lambda hit: hit["id"] == "d1"):
        assert current_exclusion() is not None
        # Tool.run executes the function in its own thread: the exclusion must travel with it.
        assert tool.run(Call("WikiSearch", "Eiffel Tower")).text.startswith("Gustave Eiffel:")
    assert current_exclusion() is None
    assert tool.run(Call("WikiSearch", "Eiffel Tower")).text.startswith("Eiffel Tower:")


def test_document_exclusion_matches_the_documents_own_passage_only() -> None:
    from toolformer.tools.wikisearch import document_exclusion

    lead = DOCS[0]["text"] + " It was completed in 1889 for the World's Fair held in the city."
    passage = {"id": "p", "title": "Eiffel Tower", "text": lead}
    other = {"id": "q", "title": "Paris", "text": DOCS[5]["text"]}
    assert document_exclusion("p", "anything at all")(passage)  # the same id
    assert document_exclusion("x", lead.upper().replace(".", " ."))(passage)  # the same words
    longer_doc = "Intro line here. " + lead + " More about the tower and its visitors."
    assert document_exclusion("x", longer_doc)(passage)  # the passage's start occurs in the document
    assert document_exclusion("x", lead[:120])({**passage, "text": "Some header. " + lead})  # a part of it
    assert not document_exclusion("x", longer_doc)(other)
    assert not document_exclusion("x", "Paris")(other)  # a short text is not an overlap
    assert not document_exclusion(None, "")(passage)


# ------------------------------------------------------------------------------------------ remembered fields


def _custom_fields_corpus(path: Path) -> Path:
    rows = [
        {"key": f"k{d['id']}", "name": d["title"], "content": d["text"], "body": d["title"] + " body"}
        for d in DOCS
    ]
    return write_jsonl(path, rows)


def test_an_index_remembers_its_fields_for_every_later_load(home, tmp_path) -> None:
    path = _custom_fields_corpus(tmp_path / "custom.jsonl")
    with pytest.raises(DataError, match="'text' is missing.*'content'.*--text-field"):
        Searcher(path).search("Everest")  # not indexed yet: the error says which fields exist and what to run
    built = build_index(path, text_field="content", title_field="name", id_field="key")
    assert index_info(built)["fields"] == {"text": "content", "title": "name", "id": "key"}
    hit = Searcher(path).search("highest mountain Himalayas")[0]
    assert (hit["id"], hit["title"]) == ("kd3", "Mount Everest")
    assert build_index(path) == built  # field-less rebuild: the remembered fields, the same index
    assert wikisearch_tool(str(path)).run(Call("WikiSearch", "Himalayas")).text.startswith("Mount Everest:")
    with pytest.raises(DataError, match="'text' is missing"):
        build_index(path, text_field="text")  # named fields still win


def test_the_fields_used_last_win_and_survive_an_edit(home, tmp_path) -> None:
    path = _custom_fields_corpus(tmp_path / "custom.jsonl")
    build_index(path, text_field="content", title_field="name", id_field="key")
    build_index(path, text_field="body", title_field="name", id_field="key")
    assert Searcher(path).search("body Banana")[0]["text"] == "Banana body"
    build_index(path, text_field="content", title_field="name", id_field="key")  # cached, and now the latest
    assert Searcher(path).search("Banana")[0]["text"].startswith("A banana is")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows.append({"key": "new", "name": "Zanzibar", "content": "Zanzibar is an archipelago.", "body": "x"})
    write_jsonl(path, rows)  # edited corpus: a new index, still with the remembered fields
    assert Searcher(path).search("Zanzibar archipelago")[0]["id"] == "new"


def test_a_corpus_path_may_be_an_index_directory(home, corpus) -> None:
    index = build_index(corpus)
    assert Searcher(index).search("Guido Python")[0]["id"] == "d4"
    assert wikisearch_tool(index).run(Call("WikiSearch", "Himalayas")).text.startswith("Mount Everest:")


# ------------------------------------------------------------------------------------------ Markdown/text corpora


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    (folder / "guide").mkdir(parents=True)
    (folder / ".git").mkdir()
    (folder / "guide" / "install.md").write_text(
        "# Install\n\nRun the installer with a kettle nearby.\n\n## Linux\n\nUse apt to fetch the zebra package.\n",
        encoding="utf-8",
    )
    (folder / "faq.txt").write_text(
        "Why is the sky blue? Rayleigh scattering of sunlight by the air molecules.\n\n"
        "How tall is the Eiffel Tower? It is 330 metres tall, antennas included.\n",
        encoding="utf-8",
    )
    (folder / ".git" / "notes.md").write_text("# Hidden\n\nzebra zebra zebra\n", encoding="utf-8")
    (folder / "image.png").write_bytes(b"\x89PNG\x00\xff")
    return folder


def test_a_markdown_and_text_folder_is_a_corpus(home, docs) -> None:
    index = build_index(docs)
    assert index.name.startswith("docs-") and index_info(index)["kind"] == "documents"
    assert (
        index_info(index)["passages"] == 4
    )  # two sections, two paragraphs; hidden folders and images skipped
    searcher = Searcher(docs)
    hit = searcher.search("zebra package apt")[0]
    assert (hit["id"], hit["title"]) == ("guide/install.md#2", "guide/install.md > Install > Linux")
    assert hit["text"] == "Use apt to fetch the zebra package."
    assert searcher.search("Rayleigh scattering")[0]["title"] == "faq.txt"
    out = wikisearch_tool(docs).run(Call("WikiSearch", "Eiffel Tower"))
    assert out.text.startswith("faq.txt: How tall is the Eiffel Tower?")


def test_single_markdown_and_text_files_are_corpora(home, docs) -> None:
    install = docs / "guide" / "install.md"
    assert Searcher(install).search("kettle")[0]["title"] == "install.md > Install"
    assert Searcher(docs / "faq.txt").search("sky blue")[0]["id"] == "faq.txt#1"


def test_an_edited_document_folder_gets_a_new_index(home, docs) -> None:
    first = build_index(docs)
    assert build_index(docs) == first
    (docs / "new.md").write_text("# Okapi\n\nThe okapi is a giraffid.\n", encoding="utf-8")
    second = build_index(docs)
    assert second != first and Searcher(docs).search("okapi")[0]["title"] == "new.md > Okapi"
    (docs / "new.md").rename(
        docs / "renamed.md"
    )  # same bytes, another name: the ids change, so does the index
    assert build_index(docs) not in (first, second)


def test_document_corpora_refuse_fields_and_report_bad_files(home, docs, tmp_path) -> None:
    from toolformer.errors import ConfigError

    with pytest.raises(ConfigError, match="text_field='content' applies to JSONL corpora only"):
        build_index(docs, text_field="content")
    assert build_index(docs, text_field="text")  # the default named explicitly is harmless
    (docs / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin1.txt: not UTF-8"):
        build_index(docs)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no .md, .markdown or .txt file"):
        build_index(tmp_path / "empty")
    (tmp_path / "blank.md").write_text("\n\n# Only a heading\n", encoding="utf-8")
    with pytest.raises(DataError, match="no passages"):
        build_index(tmp_path / "blank.md")
    with pytest.raises(DataError, match="does not exist"):
        build_index(tmp_path / "missing.md")
