"""QA: the extractive reader, a pluggable reader, and the tool over a small corpus and the shipped one."""

from __future__ import annotations

import pytest

from fakes import write_jsonl
from toolformer.calls import Call
from toolformer.errors import ToolError
from toolformer.tools.qa import as_statement, extractive_reader, qa_tool, span_reader
from toolformer.tools.wikisearch import Searcher, split_sentences

DOCS = [
    {
        "id": "1",
        "title": "Ada Lovelace",
        "text": "Ada Lovelace was an English mathematician. She was born in London in 1815. She worked on the Analytical Engine.",
    },
    {
        "id": "2",
        "title": "Alan Turing",
        "text": "Alan Turing was an English computer scientist. He was born in Maida Vale, London. He broke the Enigma code.",
    },
    {
        "id": "3",
        "title": "Enigma machine",
        "text": "The Enigma machine is a cipher device. It was used by Nazi Germany in World War II.",
    },
]


@pytest.fixture
def searcher(tmp_path) -> Searcher:  # its index goes to the test's own home (conftest's toolformer_home)
    return Searcher(write_jsonl(tmp_path / "people.jsonl", DOCS))


def test_reader_picks_the_sentence_that_answers() -> None:
    passages = [f"{d['title']}\n{d['text']}" for d in DOCS]
    assert (
        extractive_reader("Which device was used by Nazi Germany?", passages)
        == "It was used by Nazi Germany in World War II."
    )
    assert extractive_reader("Who broke the Enigma code?", passages) == "He broke the Enigma code."


def test_title_terms_credit_pronoun_sentences() -> None:
    passages = [f"{d['title']}\n{d['text']}" for d in DOCS]
    # "born" appears in two passages; the title decides which person.
    assert extractive_reader("Where was Alan Turing born?", passages) == "He was born in Maida Vale, London."
    assert extractive_reader("Where was Ada Lovelace born?", passages) == "She was born in London in 1815."


def test_reader_without_titles_and_with_no_overlap() -> None:
    assert (
        extractive_reader("colour of the sky?", ["The grass is green. The sky is blue."])
        == "The sky is blue."
    )
    assert extractive_reader("zzz?", ["First sentence. Second one."]) == "First sentence."
    with pytest.raises(ToolError):
        extractive_reader("anything?", [])


def test_reader_output_is_short() -> None:
    long_sentence = "The answer " + "and more words " * 40 + "ends here."
    assert len(extractive_reader("answer?", [long_sentence])) <= 200


def test_sentence_splitter_keeps_initials_and_abbreviations() -> None:
    text = "J. R. R. Tolkien wrote books. Dr. Smith agreed! Did he? Yes."
    assert split_sentences(text) == ["J. R. R. Tolkien wrote books.", "Dr. Smith agreed!", "Did he?", "Yes."]


def test_tool_answers_from_the_corpus_with_the_short_span(searcher) -> None:
    out = qa_tool(searcher).run(Call("QA", '"Where was Alan Turing born?"'))
    assert out.ok and out.text == "Maida Vale"
    out = qa_tool(searcher).run(Call("QA", '"Alan Turing was born in"'))
    assert out.ok and out.text == "Maida Vale"
    sentence = qa_tool(searcher, reader=extractive_reader).run(Call("QA", '"Where was Alan Turing born?"'))
    assert sentence.text == "He was born in Maida Vale, London."  # the sentence, for callers who want it


def test_as_statement_turns_where_and_when_questions_into_statements() -> None:
    assert as_statement("Where was Alan Turing born?") == "Alan Turing was born in"
    assert as_statement("When did the war end?") == "the war end"
    assert as_statement("Joe Biden was born in") == "Joe Biden was born in"
    assert as_statement("Who broke the Enigma code?") is None


def test_span_reader_reads_the_words_after_the_statement_tail() -> None:
    passages = ["Ada Lovelace\nShe was born in London in 1815. She wrote the first program, and died young."]
    assert span_reader("Ada Lovelace was born in", passages) == "London"
    assert span_reader("Ada Lovelace wrote", passages) == "the first program"
    # no tail of the statement in any sentence, or one bare function word: the best sentence instead
    assert span_reader("Ada Lovelace is known for", passages) == extractive_reader(
        "Ada Lovelace is known for", passages
    )
    assert span_reader("Who was Ada Lovelace?", passages) == extractive_reader(
        "Who was Ada Lovelace?", passages
    )


def test_custom_reader_gets_question_and_passages(searcher) -> None:
    seen: dict = {}

    def reader(question: str, passages: list[str]) -> str:
        seen["question"], seen["passages"] = question, passages
        return "  model   answer \n"

    out = qa_tool(searcher, reader=reader, k=2).run(Call("QA", '"Who broke the Enigma code?"'))
    assert out.text == "model answer"
    assert seen["question"] == "Who broke the Enigma code?"
    assert len(seen["passages"]) == 2 and seen["passages"][0].startswith(
        ("Enigma machine\n", "Alan Turing\n")
    )


def test_tool_errors(searcher) -> None:
    tool = qa_tool(searcher, reader=lambda q, p: "")
    assert tool.run(Call("QA", '""')).text == "error: question is empty"
    assert tool.run(Call("QA", "qwertyuiop?")).text.startswith("error: no passage found")
    assert tool.run(Call("QA", "Who broke the Enigma code?")).text.startswith("error: no answer found")


def test_docstring_says_it_is_not_atlas() -> None:
    import toolformer.tools.qa as qa

    assert "not Atlas" in (qa.__doc__ or "")


def test_shipped_corpus_answer() -> None:  # the index is built in the test's own home
    out = qa_tool().run(Call("QA", '"Who painted the Mona Lisa?"'))
    assert out.ok and "Leonardo da Vinci" in out.text
