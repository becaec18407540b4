"""Insert kept calls into their text (paper: x* = x_{1:i−1}, e(c, r), x_{i:n}) and split documents into train/dev.

Space policy: a call is written as a word of its own. It goes at character `position` (the call precedes the
character there); a space is added between the call and the text before it unless that text ends in whitespace
(or the call starts the text), and a space after it unless the text after it starts with whitespace (or is empty).
So `"costs 5 dollars"` with a call at the `5` (position 6), or at the space before it (position 5, where a
tokenizer with leading-space tokens puts the boundary), gives `"costs [Calculator(2+3) → 5] 5 dollars"` either way,
and `strip_calls` gives the original text back in both cases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from toolformer.datagen.records import Candidate
from toolformer.errors import ConfigError

NOT_BEST = "another call at this position has a larger gain"


def best_per_position(kept: Iterable[Candidate]) -> list[Candidate]:
    """The kept call with the largest gain (L⁻ − L⁺) at each position, in position order.

    The others at the same position get `kept=False` and the reason NOT_BEST (they stay in the records).
    Ties keep the first candidate given.
    """
    best: dict[int, Candidate] = {}
    for cand in kept:
        if not cand.kept:
            continue
        current = best.get(cand.position)
        if current is None or (cand.gain or 0.0) > (current.gain or 0.0):
            if current is not None:
                current.kept, current.reason = False, NOT_BEST
            best[cand.position] = cand
        else:
            cand.kept, cand.reason = False, NOT_BEST
    return [best[p] for p in sorted(best)]


def merge_spans(text: str, kept: Sequence[Candidate]) -> tuple[str, list[tuple[int, int]]]:
    """`text` with e(c, r) of every call in `kept` inserted, and each call's (start, end) in the new text.

    Spans come back in the order of `kept`. Calls are inserted right to left so earlier positions stay valid; two
    calls at one position keep their order in `kept`. A position outside the text raises ConfigError.
    """
    for cand in kept:
        if not 0 <= cand.position <= len(text):
            raise ConfigError(
                f"call position={cand.position} is outside the text (0..{len(text)}) of {cand.doc_id!r}"
            )
    order = sorted(range(len(kept)), key=lambda i: (kept[i].position, i))
    pieces: list[str] = []
    offsets: dict[int, tuple[int, int]] = {}
    pos = 0
    length = 0
    # Built left to right (same result as inserting right to left, and the spans are known as we go).
    for i in order:
        cand = kept[i]
        before = text[pos : cand.position]
        pieces.append(before)
        length += len(before)
        left_end = _last_char(pieces)
        call = cand.text(with_result=cand.result is not None)
        lead = " " if left_end and not left_end.isspace() else ""
        right = text[cand.position : cand.position + 1]
        trail = " " if right and not right.isspace() else ""
        chunk = lead + call + trail
        offsets[i] = (length + len(lead), length + len(lead) + len(call))
        pieces.append(chunk)
        length += len(chunk)
        pos = cand.position
    pieces.append(text[pos:])
    merged = "".join(pieces)
    return merged, [offsets[i] for i in range(len(kept))]


def _last_char(pieces: list[str]) -> str:
    """The last character written so far ("" at the start of the text)."""
    for piece in reversed(pieces):
        if piece:
            return piece[-1]
    return ""


def merge(text: str, kept: Sequence[Candidate]) -> str:
    """`text` with e(c, r) of each kept call inserted at its position (see the module's space policy)."""
    return merge_spans(text, kept)[0]


def dev_score(doc_id: str, seed: int = 0) -> float:
    """A number in [0, 1) fixed by (seed, id): the same on every machine and run (no PYTHONHASHSEED)."""
    digest = hashlib.sha256(f"{seed}\0{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(doc_id: str, dev_fraction: float, seed: int = 0) -> str:
    """ "dev" for about `dev_fraction` of ids (chosen by hash), else "train"."""
    return "dev" if dev_score(doc_id, seed) < dev_fraction else "train"


def split_by_document(ids: Iterable[str], dev_fraction: float = 0.05, seed: int = 0) -> dict[str, str]:
    """{id: "train" | "dev"}: a deterministic split by document id, independent of order and of the other ids."""
    if not 0.0 <= dev_fraction < 1.0:
        raise ConfigError(f"dev_fraction={dev_fraction!r} must be in [0, 1)")
    return {doc_id: split_of(doc_id, dev_fraction, seed) for doc_id in ids}


def shard_of(doc_id: str, num_shards: int) -> int:
    """Which of `num_shards` workers handles `doc_id` (hash of the id modulo num_shards)."""
    digest = hashlib.sha256(doc_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % num_shards
