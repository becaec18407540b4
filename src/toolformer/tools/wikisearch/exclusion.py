"""Leave passages out of WikiSearch results: per search, or for every search inside `with excluding(pred):`.

The exclusion is a context variable, so the tools' signatures stay as the model sees them. Data generation uses
`document_exclusion(doc_id, text)` so a document is never annotated with its own passage.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

from toolformer.tools.wikisearch.snippets import normalize

Exclusion = Callable[[dict[str, Any]], bool]  # a hit (id, title, text, ...) -> leave it out
EXCLUDE_SLACK = 10  # extra hits retrieved when excluding, so k remain after the excluded ones are dropped
OVERLAP_CHARS = (
    100  # a passage whose first this-many normalised characters occur in a document is that document
)
MIN_OVERLAP_CHARS = 40  # shorter normalised texts only match by equality (a short text occurs everywhere)
_EXCLUDE: contextvars.ContextVar[Exclusion | None] = contextvars.ContextVar(
    "toolformer_search_exclude", default=None
)


@contextlib.contextmanager
def excluding(exclude: Exclusion | None) -> Iterator[None]:
    """Inside the block, every `Searcher.search` in this context leaves out the hits `exclude` accepts."""
    token = _EXCLUDE.set(exclude)
    try:
        yield
    finally:
        _EXCLUDE.reset(token)


def current_exclusion() -> Exclusion | None:
    """The exclusion set by the innermost `excluding` block of this context, or None."""
    return _EXCLUDE.get()


def document_exclusion(doc_id: str | None, text: str) -> Exclusion:
    """Leave out the document's own passage: a hit whose id is `doc_id`, whose normalised text equals the
    document's, whose first 100 normalised characters occur in the document, or that contains the document's
    first 100 (the document is a part of the passage). Overlaps of texts under 40 characters do not count."""
    doc = normalize(text)
    doc_head = doc[:OVERLAP_CHARS]

    def exclude(hit: dict[str, Any]) -> bool:
        if doc_id is not None and str(hit.get("id")) == str(doc_id):
            return True
        passage = normalize(str(hit.get("text", "")))
        if not passage or not doc:
            return False
        if passage == doc:
            return True
        head = passage[:OVERLAP_CHARS]
        if len(head) >= MIN_OVERLAP_CHARS and head in doc:
            return True
        return len(doc_head) >= MIN_OVERLAP_CHARS and doc_head in passage

    return exclude
