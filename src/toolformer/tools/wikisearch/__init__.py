"""The WikiSearch tool: BM25 (bm25s) over a local JSONL corpus, with an on-disk index cache keyed by content hash.

The paper searched the KILT Wikipedia dump with BM25; the default here is the shipped corpus of 10,033 English
Wikipedia lead sections (`toolformer/data/vital_en.jsonl.gz`, CC BY-SA, see data/README.md). Any JSONL (or
JSONL.gz) file with a text field works, and so does a folder of Markdown/text files or one such file (one
passage per section or paragraph, see `documents.py`). Indexes live under `$TOOLFORMER_HOME/indexes/<name>-<hash>/`
(default `~/.cache/toolformer`) and are rebuilt when missing or damaged. An index remembers the fields it was
built with: a later `Searcher(corpus)` or `build_index(corpus)` that names no field uses those of the latest
index of that corpus, so `toolformer index build FILE --text-field content` makes every later `--corpus FILE`
read `content`. Nothing here prints: progress goes to an optional callback.

A search can leave passages out: `Searcher.search(..., exclude=pred)`, or for every search made inside
`with excluding(pred):` (a context variable, so the tools' signatures stay as the model sees them). Data
generation uses `document_exclusion(doc_id, text)` so a document is never annotated with its own passage.

Modules: `corpus` (reading a corpus), `index` (building and caching its BM25 index), `searcher` (`Searcher`),
`exclusion`, `snippets` (what a hit shows). This package holds the tool and re-exports their public names.
"""

from __future__ import annotations

from pathlib import Path

from toolformer.errors import ToolError
from toolformer.paths import toolformer_home
from toolformer.tools.base import Tool
from toolformer.tools.wikisearch.corpus import (
    DEFAULT_CORPUS_NAME,
    DEFAULT_FIELDS,
    default_corpus_path,
    read_corpus,
)
from toolformer.tools.wikisearch.exclusion import (
    EXCLUDE_SLACK,
    MIN_OVERLAP_CHARS,
    OVERLAP_CHARS,
    Exclusion,
    current_exclusion,
    document_exclusion,
    excluding,
)
from toolformer.tools.wikisearch.index import (
    INDEX_FORMAT,
    STOPWORDS,
    Progress,
    build_index,
    index_info,
    index_path,
    remembered_fields,
    resolve_fields,
)
from toolformer.tools.wikisearch.searcher import TOP_K, Searcher
from toolformer.tools.wikisearch.snippets import (
    SNIPPET_CHARS,
    content_terms,
    format_hits,
    normalize,
    shorten,
    snippet,
    split_sentences,
)

__all__ = [
    "DEFAULT_CORPUS_NAME",
    "DEFAULT_FIELDS",
    "EXCLUDE_SLACK",
    "INDEX_FORMAT",
    "MIN_OVERLAP_CHARS",
    "OVERLAP_CHARS",
    "SNIPPET_CHARS",
    "STOPWORDS",
    "TOP_K",
    "Exclusion",
    "Progress",
    "Searcher",
    "build_index",
    "content_terms",
    "current_exclusion",
    "default_corpus_path",
    "document_exclusion",
    "excluding",
    "format_hits",
    "index_info",
    "index_path",
    "normalize",
    "read_corpus",
    "remembered_fields",
    "resolve_fields",
    "shorten",
    "snippet",
    "split_sentences",
    "toolformer_home",
    "wikisearch_tool",
]


def wikisearch_tool(
    searcher: Searcher | str | Path | None = None, k: int = TOP_K, snippet_chars: int = SNIPPET_CHARS
) -> Tool:
    """A WikiSearch Tool over `searcher` (a Searcher, a corpus file, or None for the shipped corpus)."""
    engine = searcher if isinstance(searcher, Searcher) else Searcher(searcher)

    def wikisearch(query: str) -> str:
        query = query.strip()
        if not query:
            raise ToolError("query is empty")
        hits = engine.search(query, k)
        if not hits:
            raise ToolError(f"no results for {query[:80]!r}")
        return format_hits(hits, query, snippet_chars)

    return Tool(
        name="WikiSearch",
        description="Search Wikipedia (BM25) and return short snippets of the top passages as 'Title: text | …'.",
        fn=wikisearch,
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "search terms, e.g. 'Eiffel Tower height'"}
            },
            "required": ["query"],
        },
        examples=('WikiSearch("Joe Biden")',),
        timeout=30.0,  # the first call may build the index (about 1 s for the shipped corpus on 2 cores)
    )
