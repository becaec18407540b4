"""One decoding row, shared by both backends: what it feeds after each chosen token, when its call runs, what it
streams and the `Generation` it returns.

A row writes plain text until a call opens ("[", chosen by `runtime.choose`); once the call's arrow, or with
`force_arrow` its ")", is written, `accept` hands back the call to run, and `add_result` gives the tokens of its
result and "]" to feed; the row then writes on. It ends at an end-of-generation token or a stop string ("stop"),
at `max_new_tokens` ("length"), or when its backend ends it (`end`: "cancelled", or "length" at a full context).
Which tokens go into the model when, and where tools run, is the backend's business.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from toolformer.calls import ARROWS, Call, CallSpan, find_calls, sanitize_result
from toolformer.runtime.results import CallTrace, DecodeConfig, Event, Generation
from toolformer.tools import ToolOutput


class RowSetup:
    """What every row of one `generate` call shares: the tokenizer (transformers', or llama.cpp's which has the
    same `encode`/`decode`), the config, the end-of-generation ids and the event callback."""

    def __init__(
        self,
        tokenizer: Any,
        config: DecodeConfig,
        eos: set[int],
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.eos = eos
        self.on_event = on_event
        self.arrow_ids = self.encode(" →")

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)


@dataclass
class Row:
    """One prompt's state as it decodes; `index` is its place in the batch (what its events carry)."""

    setup: RowSetup = field(repr=False)
    index: int
    prompt: str
    prompt_ids: list[int]
    ids: list[int] = field(default_factory=list)  # generated + forced token ids
    text: str = ""
    offset: int = 0  # text before this offset holds no open call
    calls: list[CallTrace] = field(default_factory=list)
    new_tokens: int = 0
    forced: int = 0
    finish: str | None = None
    emitted: int = 0  # characters of text already streamed
    triggers: int = 0  # calls started by the top-k trigger rule
    held: bool = False  # inside a JSON call a grammar holds (`runtime.grammar`): no inline call runs

    def accept(self, token: int) -> tuple[list[int], tuple[Call, int] | None]:
        """Take the chosen `token`: the ids to feed next ([] once the row has ended), and the call to run now
        with the offset of its "[" (None: no call)."""
        setup, config = self.setup, self.setup.config
        self.new_tokens += 1
        if token in setup.eos:
            self.end("stop")
            return [], None
        cand = setup.decode([*self.ids, token])
        calls_left = len(self.calls) < config.max_calls and not config.disabled and not self.held
        feed, call_start = plan_feed(
            cand, self.text, self.offset, token, calls_left, config.force_arrow, setup.encode, setup.arrow_ids
        )
        if len(feed) > 1:
            self.forced += len(feed) - 1
        self.ids.extend(feed)
        # The common case feeds just the chosen token: its text is `cand`, already decoded.
        self.text = cand if feed == [token] else setup.decode(self.ids)
        if call_start is not None:
            call = find_calls(self.text[call_start:])[0].call
            self.flush_text()
            return feed, (Call(call.name, call.args), call_start)
        for s in config.stop:
            at = self.text.find(s, max(0, self.emitted - len(s)))
            if s and at != -1:
                self.text = self.text[:at]
                self.end("stop")
                return [], None
        self.flush_text()
        if self.new_tokens >= config.max_new_tokens:
            self.end("length")
            return [], None
        return feed, None

    def add_result(self, call: Call, call_start: int, out: ToolOutput) -> list[int]:
        """Write the tool's output `out` for `call` (its "[" at `call_start`) and "]"; returns their ids, which
        the model is made to read."""
        setup = self.setup
        sep = "" if self.text.endswith(" ") else " "
        forced = setup.encode(f"{sep}{sanitize_result(out.text)}]")
        self.forced += len(forced)
        self.ids.extend(forced)
        self.text = setup.decode(self.ids)
        self.offset = len(self.text)
        trace = CallTrace(call.name, call.input, out.text, out.ok, out.seconds, call_start, len(self.text))
        self.calls.append(trace)
        self.flush_text()
        setup.emit(Event("call", self.index, trace=trace))
        return forced

    def flush_text(self, final: bool = False) -> None:
        """Stream the text written since the last flush (held back while it ends in part of a character)."""
        new = self.text[self.emitted :]
        if new and (final or not new.endswith("\ufffd")):
            self.emitted = len(self.text)
            self.setup.emit(Event("text", self.index, new))

    def end(self, reason: str) -> None:
        """Finish the row with finish_reason `reason`, streaming what is left and a `done` event."""
        self.finish = reason
        self.flush_text(final=True)
        self.setup.emit(Event("done", self.index, finish_reason=reason))

    def generation(self, seconds: float) -> Generation:
        """The row's result, with any result no tool ran taken out of its text (`settle_results`)."""
        text, calls = settle_results(self.text, self.calls)
        return Generation(
            prompt=self.prompt,
            text=text,
            calls=calls,
            finish_reason=self.finish or "length",
            new_tokens=self.new_tokens,
            forced_tokens=self.forced,
            prompt_tokens=len(self.prompt_ids),
            seconds=seconds,
            token_ids=list(self.ids),
        )


def _arrow_end(text: str, span: CallSpan) -> tuple[int, int | None]:
    """(index just after the call's closing ')', index just after its arrow or None)."""
    close = span.start + 1 + len(span.call.name) + 1 + len(span.call.args) + 1
    k = close
    while k < len(text) and text[k] == " ":
        k += 1
    for arrow in ARROWS:
        if text.startswith(arrow, k):
            return close, k + len(arrow)
    return close, None


def _new_from(cand: str, text: str) -> int:
    """Where the sampled token's text begins in `cand`: at the end of `text`, unless `text` ended in part of a
    character ("\ufffd") that the token completes, in which case from the first character the two differ at."""
    if cand.startswith(text):
        return len(text)
    n = min(len(cand), len(text))
    k = 0
    while k < n and cand[k] == text[k]:
        k += 1
    return k


def plan_feed(
    cand: str,
    text: str,
    offset: int,
    token: int,
    calls_left: bool,
    force_arrow: bool,
    encode: Callable[[str], list[int]],
    arrow_ids: list[int],
) -> tuple[list[int], int | None]:
    """What a row feeds after sampling `token`, and where a call to run now starts (None: no call yet).

    `cand` is the row's text with `token` decoded, `text` the text before it, `offset` where calls may start.
    A call runs once its arrow is written (text written past the arrow is cut off) or, with `force_arrow`, as
    soon as its ")" is: then " →" is fed after it. Used by `Row.accept`.

    The model never gets to write a result itself: an arrow that appears, even spelled over several byte tokens,
    runs the call at once. The one case left, a token that completes part of a character and writes past the
    arrow in one go (its text cannot be cut off), is caught by `settle_results`.
    """
    feed = [token]
    spans = find_calls(cand[offset:]) if calls_left else []
    span = spans[-1] if spans else None
    if span is None:
        return feed, None
    span = CallSpan(span.start + offset, span.end + offset, span.call, span.complete, span.stage)
    if span.stage in ("name", "args"):
        return feed, None
    aligned = cand.startswith(text)
    new_from = _new_from(cand, text)
    close, arrow_end = _arrow_end(cand, span)
    if arrow_end is not None:
        if arrow_end <= new_from:  # written before and not run (see above): not a call to run now
            return feed, None
        if not cand[arrow_end:].strip():
            return feed, span.start
        if aligned:  # the model wrote past the arrow: cut at the arrow
            return encode(cand[len(text) : arrow_end]), span.start
        return feed, None
    if force_arrow and close > new_from:
        if aligned:
            delta = cand[len(text) : close]
            feed = [token, *arrow_ids] if delta == cand[len(text) :] else [*encode(delta), *arrow_ids]
            return feed, span.start
        if not cand[close:].strip():  # nothing to cut after ")"
            return [token, *arrow_ids], span.start
    return feed, None


def settle_results(text: str, calls: Sequence[CallTrace]) -> tuple[str, list[CallTrace]]:
    """`text` with the result of every call that no tool ran removed (`[T(x) → r]` becomes `[T(x)]`), and the
    traces with their offsets moved to match: what reads as a call's result in a returned text always came from
    its tool."""
    ran = {c.start for c in calls}
    out, pos, shift = [], 0, 0
    moves: list[tuple[int, int]] = []  # (offset in text, characters removed before it so far)
    for span in find_calls(text):
        if span.call.result is None or span.start in ran:
            continue
        close, _ = _arrow_end(text, span)
        out.append(text[pos:close])
        tail = "]" if span.complete else ""
        out.append(tail)
        shift += (span.end - close) - len(tail)
        moves.append((span.end, shift))
        pos = span.end
    if not moves:
        return text, list(calls)
    out.append(text[pos:])

    def moved(at: int) -> int:
        removed = 0
        for end, total in moves:
            if at >= end:
                removed = total
        return at - removed

    traces = [replace(c, start=moved(c.start), end=moved(c.end)) for c in calls]
    return "".join(out), traces
