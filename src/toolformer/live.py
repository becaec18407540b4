"""`AnswerPrinter`: print a model's answer as it is written (the CLI's `ask` and `chat`), calls highlighted.

Decoding reports new text through `on_event` (`runtime.decode.Event`). Text already generated can still vanish: a
stop string is cut off when its last character arrives, and a chat model's JSON tool call is cut out of the reply
once complete. So the printer shows only settled text, the same `serve.stream.ReplyStream` the server streams with:
what it prints is always a prefix of the final answer. Inline calls (`[Calculator(23 * 47) → 1081]`) are part of
the text and appear, highlighted, as they run; a JSON call, which is not part of the reply, is shown on a line of
its own when its tool returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.text import Text

from toolformer.calls import find_calls
from toolformer.serve.stream import ReplyStream

CALL_STYLE = "bold cyan"


class AnswerPrinter:
    """Print one reply to `console` as it is written; pass `on_event` to generate/ask/chat, then `finish`.

    `stops`: the stop strings the decoder uses (their beginnings are held back). `json_calls`: a chat reply, whose
    JSON calls are cut out and whose rounds end at each `done` event (the decoder then uses no stop string).
    """

    def __init__(self, console: Console, stops: Sequence[str] = (), json_calls: bool = False) -> None:
        self.console = console
        self.json_calls = json_calls
        self.reply = ReplyStream(stops, json_calls)
        self.shown = ""  # the settled text so far, leading blanks dropped (what the user has seen)
        self.round_text = ""  # raw text of the current round
        self.at_line_start = True

    def begin(self, prefix: Text | str) -> None:
        """Print `prefix` (e.g. `model> `) where the answer will start."""
        self.console.print(prefix, end="", soft_wrap=True)
        self.at_line_start = False

    def on_event(self, event: Any) -> None:
        """A decoding event of row 0: new text, a finished call, or the end of a round."""
        if getattr(event, "row", 0) != 0:
            return
        if event.kind == "text":
            self.round_text += event.text
            self._show(self.reply.feed(event.text))
        elif event.kind == "done" and self.json_calls:
            self._show(self.reply.end_round(self.round_text))
            self.round_text = ""
        elif event.kind == "call" and event.trace is not None and event.trace.start < 0:
            self._show_json_call(event.trace)

    def finish(self, content: str) -> None:
        """Print what is left of the final `content` (the raw text for `ask`) and end the line."""
        self._show(self.reply.finish(content).rstrip())
        if not self.at_line_start:
            self.console.print()
        self.at_line_start = True

    def _show(self, delta: str) -> None:
        if not self.shown:
            delta = delta.lstrip()
        if not delta:
            return
        start = len(self.shown)
        self.shown += delta
        out = Text()
        pos = start
        for span in find_calls(self.shown):  # a call may have begun in an earlier delta: style its new part
            lo, hi = max(span.start, start), span.end if span.complete else len(self.shown)
            if hi <= lo:
                continue
            out.append(self.shown[pos:lo])
            out.append(self.shown[lo:hi], style=CALL_STYLE)
            pos = hi
        out.append(self.shown[pos:])
        self.console.print(out, end="", soft_wrap=True)
        self.at_line_start = delta.endswith("\n")

    def _show_json_call(self, trace: Any) -> None:
        line = Text("" if self.at_line_start else "\n")
        line.append(
            f"[{trace.tool}({trace.input}) → {trace.output}]", style=CALL_STYLE if trace.ok else "red"
        )
        self.console.print(line, soft_wrap=True)
        self.at_line_start = True
