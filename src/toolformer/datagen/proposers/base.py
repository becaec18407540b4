"""The proposers' shared interface: `Proposer.propose(doc, tool) -> list[Candidate]`, and `dedupe`.

A candidate's `position` is the character offset in the document's text where e(c, r) goes: the call precedes
x[position:], which is what its result should help predict.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from toolformer.datagen.records import Candidate, Document


@runtime_checkable
class Proposer(Protocol):
    """Anything that proposes calls of one tool for one document."""

    def propose(self, doc: Document, tool: str) -> list[Candidate]: ...


def dedupe(cands: list[Candidate]) -> list[Candidate]:
    """Candidates in (position, first seen) order, one per (position, args)."""
    seen: set[tuple[int, str]] = set()
    out = []
    for c in sorted(cands, key=lambda c: c.position):
        key = (c.position, c.args.strip())
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out
