"""The QA tool: answer a question from the local corpus by retrieving passages (BM25) and reading them.

This is not Atlas. The paper's QA tool was Atlas (a retrieval-augmented seq2seq model fine-tuned on Natural
Questions); here the default reader is extractive: it returns the one sentence of the top passages that best
matches the question's words (IDF-weighted overlap), which is short, fast and offline. A model reader can be
plugged in as `reader(question, passages) -> answer`, where each passage is "Title\\ntext".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from toolformer.errors import ToolError
from toolformer.tools.base import Tool
from toolformer.tools.wikisearch import Searcher, content_terms, shorten, split_sentences

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


def qa_tool(
    searcher: Searcher | str | Path | None = None, reader: Reader | None = None, k: int = TOP_K
) -> Tool:
    """A QA Tool: retrieve `k` passages with `searcher`, then answer with `reader` (default: extractive)."""
    engine = searcher if isinstance(searcher, Searcher) else Searcher(searcher)
    read = reader or extractive_reader

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
        description="Answer a factual question from Wikipedia passages; returns a short answer sentence.",
        fn=qa,
        parameters={
            "type": "object",
            "properties": {
                "question": {"type": "string", "description": "a question, e.g. 'Where was Mozart born?'"}
            },
            "required": ["question"],
        },
        timeout=30.0,  # the first call may build the search index
    )
