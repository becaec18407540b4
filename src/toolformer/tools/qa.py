"""The QA tool: answer a question from the local corpus by retrieving passages (BM25) and reading them.

This is not Atlas. The paper's QA tool was Atlas (a retrieval-augmented seq2seq model fine-tuned on Natural
Questions); here the default reader is extractive: it returns the one sentence of the top passages that best
matches the question's words (IDF-weighted overlap), which is short, fast and offline. A model reader can be
plugged in as `reader(question, passages) -> answer`, where each passage is "Title\\ntext".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

from toolformer.errors import ToolError
from toolformer.tools.base import Tool
from toolformer.tools.wikisearch.searcher import Searcher
from toolformer.tools.wikisearch.snippets import content_terms, shorten, split_sentences

Reader = Callable[[str, list[str]], str]

TOP_K = 3
ANSWER_CHARS = 200
RANK_DECAY = 0.75


def extractive_reader(question: str, passages: list[str]) -> str:
    """The sentence of `passages` ("Title\\ntext" each, best first) that best matches the question.

    Score: sum of IDF (over the candidate sentences) of the question terms found in the sentence or in its
    passage's title (the title is the subject of every sentence, so "He was born in …" counts for the right
    person), times 0.75 per passage rank; ties keep the earlier sentence.
    """
    q_terms = set(content_terms(question))
    candidates: list[tuple[int, set[str], set[str], str]] = []
    for rank, passage in enumerate(passages):
        title, _, body = passage.partition("\n") if "\n" in passage else ("", "", passage)
        title_terms = set(content_terms(title))
        for sentence in split_sentences(body):
            candidates.append((rank, set(content_terms(sentence)), title_terms, sentence))
    if not candidates:
        raise ToolError("no passages to read")
    n = len(candidates)
    df = {t: sum(t in c[1] for c in candidates) for t in q_terms}
    idf = {t: math.log(1 + n / (1 + df[t])) for t in q_terms}
    best, best_score = candidates[0][3], 0.0
    for rank, sent_terms, title_terms, sentence in candidates:
        # The retriever's order is a strong prior: a later passage must match clearly better to win.
        score = sum(idf[t] for t in q_terms & (sent_terms | title_terms)) * RANK_DECAY**rank
        if score > best_score:
            best, best_score = sentence, score
    return shorten(best, ANSWER_CHARS)


SPAN_WORDS = 5  # an answer span is at most this many words
_WORD = re.compile(r"[\w'’-]+", re.UNICODE)
# A span ends at punctuation or where a new clause starts.
_SPAN_STOP = frozenset({"and", "or", "but", "which", "who", "whom", "whose", "where", "when", "while", "that",
                        "after", "before", "because", "although", "since", "until", "as", "with", "from", "in", "on", "at"})  # fmt: skip
_WH = re.compile(r"^(where|when)\s+(is|was|are|were|did|does|do)\s+(.+?)\s+(\w+)\s*\?*$", re.IGNORECASE)


def _words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(text)]


def as_statement(question: str) -> str | None:
    """The statement to complete for `question`: the text itself when it is not a question ("X was born in"),
    "X was born in" for "Where/When was X born?", or None for other questions."""
    q = question.strip()
    if not q.endswith("?"):
        return q.rstrip(" .:")
    m = _WH.match(q)
    if m is None:
        return None
    aux, subject, verb = m.group(2).lower(), m.group(3), m.group(4)
    if aux in ("did", "does", "do"):
        return f"{subject} {verb}"
    return f"{subject} {aux} {verb} in"


def _span_after(sentence: str, statement: str) -> tuple[int, str] | None:
    """(length of the statement's tail found in `sentence`, the words after it), or None.

    The longest tail of the statement's words (at most 4) that occurs in the sentence wins; the span runs from
    there to the first punctuation, clause word or SPAN_WORDS words.
    """
    tail = [w for w, _, _ in _words(statement)][-4:]
    words = _words(sentence)
    lowered = [w for w, _, _ in words]
    for size in range(len(tail), 0, -1):
        needle = tail[-size:]
        if size == 1 and needle[0] in _SPAN_STOP | {"is", "was", "in", "of", "the", "a", "an", "by", "to"}:
            return None  # one function word matches anywhere
        for i in range(len(lowered) - size + 1):
            if lowered[i : i + size] != needle or i + size >= len(words):
                continue
            start = words[i + size][1]
            rest = sentence[start:]
            cut = re.split(r"[,.;:()\[\]\"“”]", rest, maxsplit=1)[0]
            out: list[str] = []
            for m in _WORD.finditer(cut):
                if m.group().lower() in _SPAN_STOP or len(out) >= SPAN_WORDS:
                    break
                out.append(m.group())
            if out:
                return size, " ".join(out)
    return None


def span_reader(question: str, passages: list[str]) -> str:
    """The short answer to `question` in `passages` when one can be read, else `extractive_reader`'s sentence.

    For a statement to complete (or a where/when question turned into one by `as_statement`), each sentence of
    the passages is scored as in `extractive_reader`, plus 2 per word of the statement's tail it contains; the
    best sentence that contains a tail gives the words after it (up to the first punctuation or clause word).
    """
    statement = as_statement(question)
    if statement is None:
        return extractive_reader(question, passages)
    q_terms = set(content_terms(statement))
    best: tuple[float, str] | None = None
    for rank, passage in enumerate(passages):
        title, _, body = passage.partition("\n") if "\n" in passage else ("", "", passage)
        title_terms = set(content_terms(title))
        for sentence in split_sentences(body):
            found = _span_after(sentence, statement)
            if found is None:
                continue
            overlap = len(q_terms & (set(content_terms(sentence)) | title_terms))
            score = (overlap + 2 * found[0]) * RANK_DECAY**rank
            if best is None or score > best[0]:
                best = (score, found[1])
    if best is None:
        return extractive_reader(question, passages)
    return best[1]


def qa_tool(
    searcher: Searcher | str | Path | None = None, reader: Reader | None = None, k: int = TOP_K
) -> Tool:
    """A QA Tool: retrieve `k` passages with `searcher`, then answer with `reader` (default: extractive)."""
    engine = searcher if isinstance(searcher, Searcher) else Searcher(searcher)
    read = reader or span_reader

    def qa(question: str) -> str:
        question = question.strip()
        if not question:
            raise ToolError("question is empty")
        hits = engine.search(question, k)
        if not hits:
            raise ToolError(f"no passage found for {question[:80]!r}")
        answer = read(question, [f"{h['title']}\n{h['text']}" if h["title"] else h["text"] for h in hits])
        answer = " ".join(str(answer).split())
        if not answer:
            raise ToolError(f"no answer found for {question[:80]!r}")
        return answer

    return Tool(
        name="QA",
        description="Answer a factual question, or complete a statement, from Wikipedia passages; returns a short answer.",
        fn=qa,
        parameters={
            "type": "object",
            "properties": {
                "question": {"type": "string", "description": "a question, e.g. 'Where was Mozart born?'"}
            },
            "required": ["question"],
        },
        examples=('QA("Joe Biden was born in")',),
        timeout=30.0,  # the first call may build the search index
    )
