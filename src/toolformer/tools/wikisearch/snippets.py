"""Text handling for search results: word normalisation, content terms, sentence splitting, snippets."""

from __future__ import annotations

import functools
import re
from typing import Any

SNIPPET_CHARS = 200
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # bm25s' default token pattern, reused for snippets
# Split after . ! ? unless the period ends an initial ("J. R. R.") or a common abbreviation.
_SENTENCE_END = re.compile(
    r"(?<!\b[A-Z]\.)(?<!\bMr\.)(?<!\bDr\.)(?<!\bSt\.)(?<!\bJr\.)(?<!\bvs\.)(?<=[.!?])\s+(?=[\"'“(A-Z0-9])"
)


def normalize(text: str) -> str:
    """Lower-cased words (bm25s' token pattern) joined by single spaces: spacing and punctuation ignored."""
    return " ".join(_TOKEN.findall(text.lower()))


def content_terms(text: str) -> list[str]:
    """Content words of `text`: lower-cased, stopwords and question words removed, plural -s folded."""
    stop = _stopwords()
    return [_fold(w) for w in _TOKEN.findall(text.lower()) if w not in stop]


def split_sentences(text: str) -> list[str]:
    """Sentences of a passage (a regex splitter: good enough for encyclopedic text)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def snippet(text: str, query: str, limit: int = SNIPPET_CHARS) -> str:
    """The part of `text` (at most `limit` characters) that starts at the sentence best matching the query.

    Windows of whole sentences are scored by the query words they contain, then by those in their first
    sentence; ties keep the earliest, since a lead's first sentence defines its subject.
    """
    terms = set(content_terms(query))
    sentences = split_sentences(text)
    best, best_score = 0, (0, 0)
    if terms:
        for i in range(len(sentences)):
            window, j = "", i
            while j < len(sentences) and len(window) < limit:
                window += " " + sentences[j]
                j += 1
            score = (
                len(terms & set(content_terms(window[: limit + 1]))),
                len(terms & set(content_terms(sentences[i]))),
            )
            if score > best_score:
                best, best_score = i, score
    return shorten(" ".join(sentences[best:]) if sentences else text, limit)


def shorten(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters at a word boundary, marking the cut with "…"."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def format_hits(hits: list[dict[str, Any]], query: str, snippet_chars: int = SNIPPET_CHARS) -> str:
    """'Title: snippet | Title: snippet | …', short enough for a small model's context."""
    return " | ".join(
        f"{h['title']}: {snippet(h['text'], query, snippet_chars)}"
        if h.get("title")
        else snippet(h["text"], query, snippet_chars)
        for h in hits
    )


_QUESTION_WORDS = frozenset(
    {
        "what", "where", "when", "who", "whom", "whose", "which", "how", "why", "did", "does", "do", "many",
        "much", "has", "have", "had", "were", "been", "being", "he", "she", "his", "her", "its", "from", "about",
        "name", "called", "can", "could", "would", "should",
    }
)  # fmt: skip


@functools.cache
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN  # imported late: `import toolformer.tools` stays light

    return frozenset(STOPWORDS_EN) | _QUESTION_WORDS


def _fold(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word
