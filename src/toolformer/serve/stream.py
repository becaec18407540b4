"""`ReplyStream`: turn a reply's raw generated text, as it grows, into content deltas that will never be taken back.

A streamed reply must add up to exactly the non-streamed one. Two things can change text already generated: a
JSON tool call (`<tool_call>…`, a bare `{"name": …}` line) is cut out of the content once it is complete, and a
stop string is cut off when its last character arrives. So a delta is sent only for content that is settled:
nothing while the text ends inside what may become a JSON call (`pending_json_call`), never a tail that may be the
start of a stop string, and never trailing blanks or `,`/`;` (a bare call list may still swallow them). A reply
with server-side tool rounds streams each round's content, joined by a blank line, which is how the
non-streamed reply joins them too (`join_rounds`). A trained Toolformer's inline chat (`trim`) cuts no JSON calls
but is tidied the same way: leading blanks are dropped and trailing ones wait for what follows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from toolformer.runtime.jsoncalls import parse_json_calls, pending_json_call

logger = logging.getLogger(__name__)

ROUND_SEPARATOR = "\n\n"
_UNSETTLED_TAIL = " \t\r\n,;"


def join_rounds(contents: Sequence[str]) -> str:
    """The reply content of several rounds: the non-empty ones joined by a blank line."""
    return ROUND_SEPARATOR.join(c for c in contents if c)


def tidy(content: str) -> str:
    """Trim a round's content and squeeze blank-line runs, as `parse_json_calls` does when it removes a call, so
    content reads the same whether or not a call was cut out of it (and a stream cannot tell before the end)."""
    return re.sub(r"\n{3,}", "\n\n", content).strip()


def round_content(text: str, json_calls: bool, trim: bool = False) -> str:
    """The content of one round's generated text: without its JSON calls, tidied; tidied (`trim`); or as is."""
    if json_calls:
        return tidy(parse_json_calls(text)[0])
    return tidy(text) if trim else text


def _stop_prefix_len(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of a stop string."""
    best = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:k]):
                best = k
                break
    return best


class ReplyStream:
    """Content deltas of one reply, fed the raw text of its rounds (`start_round`, `feed`, `end_round`, `finish`)."""

    def __init__(self, stops: Sequence[str] = (), json_calls: bool = True, trim: bool = False) -> None:
        self.stops = [s for s in stops if s]
        self.json_calls = json_calls
        self.trim = trim
        self.rounds: list[str] = []  # settled content of finished rounds
        self.raw = ""  # raw text of the current round
        self.current = ""  # settled content of the current round
        self.sent = ""  # everything sent so far

    def start_round(self) -> None:
        self.raw = ""
        self.current = ""

    def feed(self, text: str) -> str:
        """Add generated text to the current round; return the new settled content to send (maybe '')."""
        self.raw += text
        visible = self.raw[: len(self.raw) - _stop_prefix_len(self.raw, self.stops)]
        if self.json_calls:
            if pending_json_call(visible):
                return ""
            settled = round_content(visible, True).rstrip(_UNSETTLED_TAIL)
        else:
            settled = tidy(visible) if self.trim else visible
        if settled.startswith(self.current):
            self.current = settled
        return self._advance(join_rounds([*self.rounds, self.current]))

    def end_round(self, text: str) -> str:
        """Close the current round with its final text; return what is left to send of it."""
        self.rounds.append(round_content(text, self.json_calls, self.trim))
        self.start_round()
        # Blank separators wait for the next round's content, which may never come.
        return self._advance(join_rounds(self.rounds).rstrip(ROUND_SEPARATOR))

    def finish(self, content: str) -> str:
        """The last delta, given the reply's final content."""
        return self._advance(content, final=True)

    def _advance(self, target: str, final: bool = False) -> str:
        if not target.startswith(self.sent):
            if final:  # cannot happen if the decoder's text only grows; say so rather than send garbage
                logger.warning(
                    "stream diverged from the reply: sent %r, reply %r", self.sent[-40:], target[-40:]
                )
            return ""
        delta = target[len(self.sent) :]
        self.sent = target
        return delta
