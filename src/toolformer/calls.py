"""Parse and format the paper's inline call syntax, `[Name(args) → result]`, and map calls to OpenAI `tool_calls`.

Standard library only. Parsing never raises on arbitrary text: `find_calls` returns spans, each complete or
incomplete (a call still being written at the end of a stream is incomplete, not an error).
"""

from __future__ import annotations

import ast
import json
import keyword
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Any

from toolformer.errors import ToolformerError

ARROW = "→"
ARROWS = ("→", "->")
_QUOTES = "\"'"
# A quote opens a string only after one of these (or at the start), so the apostrophe in "What's" is not one.
# A double quote also opens after whitespace (`QA(What does "a)" mean?)`); an apostrophe does not (`the '90s`).
_STRING_OPENERS = "(,=[{:"


class CallSyntaxError(ToolformerError, ValueError):
    """Text that should be exactly one call is not one."""


@dataclass(frozen=True)
class Call:
    """One tool call. `args` is the text inside the parentheses as written; `arguments` is set for JSON calls."""

    name: str
    args: str = ""
    result: str | None = None
    arguments: dict[str, Any] | None = field(default=None, compare=False)
    id: str | None = field(default=None, compare=False)

    @property
    def input(self) -> str:
        """The argument text a one-parameter tool receives: unquoted if it is one quoted string."""
        text = self.args.strip()
        if len(text) >= 2 and text[0] in _QUOTES and text[-1] == text[0]:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                value = _json_string(text) if text[0] == '"' else None
                return text[1:-1] if value is None else value
            if isinstance(value, str):
                return value
        if self.arguments is not None and not text:
            values = list(self.arguments.values())
            if not values:
                return ""
            return str(values[0]) if len(values) == 1 else json.dumps(self.arguments, ensure_ascii=False)
        return text

    def literal_args(self) -> tuple[list[Any], dict[str, Any]]:
        """Python-style literal arguments, `("a", 2, k=True)`; raises CallSyntaxError if they are not literals.

        `**{"key": value}` is accepted for keys that cannot be written as `key=value` (`from`, `my-key`).
        """
        if not self.args.strip():
            return [], {}
        error = CallSyntaxError(f"arguments of {self.name} are not literals: {self.args!r}")
        try:
            # The closing parenthesis sits on its own line so that args which close the call early
            # (`1) # `, `1)(2`) leave it unmatched instead of parsing as something else.
            node = ast.parse(f"f(\n{self.args}\n)", mode="eval").body
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "f"):
                raise error
            args = [ast.literal_eval(a) for a in node.args]
            kwargs: dict[str, Any] = {}
            for kw in node.keywords:
                value = ast.literal_eval(kw.value)
                if kw.arg is not None:
                    items = [(kw.arg, value)]
                elif isinstance(value, dict) and all(isinstance(k, str) for k in value):
                    items = list(value.items())
                else:
                    raise error
                for key, item in items:
                    if key in kwargs:
                        raise CallSyntaxError(
                            f"argument {key!r} of {self.name} is given twice: {self.args!r}"
                        )
                    kwargs[key] = item
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise error from exc
        return args, kwargs

    def with_result(self, result: str | None) -> Call:
        """The same call with another result."""
        return Call(self.name, self.args, result, self.arguments, self.id)

    def text(self, with_result: bool = True, arrow: str = ARROW) -> str:
        """The inline form, e.g. `[Calculator(23 * 47) → 1081]`."""
        return format_call(self.name, self.args, self.result if with_result else None, arrow=arrow)

    def to_openai(self) -> dict[str, Any]:
        """An OpenAI `tool_calls` entry (arguments as a JSON string).

        An inline call's arguments become `{"input": <Call.input>}`, or its keywords when it has only keyword
        literals (`[Weather(city="Paris")]` gives `{"city": "Paris"}`); no arguments give `{}`.
        """
        return {
            "id": self.id or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {
                "name": self.name,
                "arguments": json.dumps(self._openai_arguments(), ensure_ascii=False),
            },
        }

    def _openai_arguments(self) -> dict[str, Any]:
        if self.arguments is not None:
            return self.arguments
        if not self.args.strip():
            return {}
        try:
            args, kwargs = self.literal_args()
        except CallSyntaxError:
            args, kwargs = [], {}
        if kwargs and not args:
            return kwargs
        return {"input": self.input}

    @classmethod
    def from_openai(cls, entry: dict[str, Any]) -> Call:
        """Build a Call from an OpenAI `tool_calls` entry (arguments as a JSON string, a dict, or absent/null)."""
        if not isinstance(entry, dict):
            raise CallSyntaxError(f"tool call must be a JSON object, got {entry!r}")
        fn = entry.get("function", entry)
        if not isinstance(fn, dict):
            raise CallSyntaxError(f"tool call 'function' must be a JSON object, got {fn!r}")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise CallSyntaxError(f"tool call has no function name: {entry!r}")
        raw = fn.get("arguments")
        if raw is None:
            raw = {}
        if isinstance(raw, str):
            try:
                raw = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as exc:
                raise CallSyntaxError(f"arguments of {name} are not JSON: {raw!r}") from exc
        if not isinstance(raw, dict):
            raise CallSyntaxError(f"arguments of {name} must be a JSON object, got {raw!r}")
        call_id = entry.get("id")
        return cls(
            name=name, args=_args_text(raw), arguments=raw, id=None if call_id is None else str(call_id)
        )


@dataclass(frozen=True)
class CallSpan:
    """Where a call sits in a text. `complete` is False for a call cut off at the end of the text.

    `stage` says how far an incomplete call got: "name", "args", "arrow" (args closed, no arrow yet) or "result"
    (arrow written, result not closed). `awaiting_result` is True when the text ends right after the arrow,
    the moment a tool must run.
    """

    start: int
    end: int
    call: Call
    complete: bool
    stage: str = "done"

    @property
    def awaiting_result(self) -> bool:
        return not self.complete and self.stage == "result" and not (self.call.result or "").strip()


def sanitize_result(text: str) -> str:
    """Make a tool result safe to inline: one line, no brackets that would end the call early."""
    return " ".join(str(text).split()).replace("[", "(").replace("]", ")")


def format_call(name: str, args: str = "", result: str | None = None, arrow: str = ARROW) -> str:
    """`[name(args)]`, or `[name(args) → result]` when a result is given."""
    if result is None:
        return f"[{name}({args})]"
    return f"[{name}({args}) {arrow} {sanitize_result(result)}]"


def quote(text: str) -> str:
    """Quote a string argument the way the paper writes it: `WikiSearch("Joe Biden")`."""
    return json.dumps(text, ensure_ascii=False)


def _json_string(text: str) -> str | None:
    """`text` read as a JSON string (Python cannot parse one holding a lone surrogate), else None."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _literal(value: Any) -> str:
    """`value` written as a Python literal (True, None, not JSON's true, null) so `literal_args` reads it back."""
    if isinstance(value, str):
        return quote(value)  # a JSON string is also a valid Python string literal
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(str(k))}: {_literal(v)}" for k, v in value.items()) + "}"
    return quote(str(value))


def _args_text(arguments: dict[str, Any]) -> str:
    """The inline argument text of a JSON call: one value alone, else `key=value, ...` Python literals."""
    if len(arguments) == 1:
        (value,) = arguments.values()
        return _literal(value)
    plain = {k: v for k, v in arguments.items() if _is_keyword_name(k)}
    parts = [f"{k}={_literal(v)}" for k, v in plain.items()]
    rest = {k: v for k, v in arguments.items() if k not in plain}
    if rest:
        parts.append("**" + _literal(rest))
    return ", ".join(parts)


def _is_keyword_name(key: str) -> bool:
    """Whether `key=value` reads back as `key` (Python NFKC-normalizes identifiers: "ª" would become "a")."""
    return key.isidentifier() and not keyword.iskeyword(key) and unicodedata.normalize("NFKC", key) == key


def _is_name_start(ch: str) -> bool:
    return ch == "_" or ch.isidentifier()


def _is_name_char(ch: str) -> bool:
    return ch == "." or ("a" + ch).isidentifier()


def _scan_args(text: str, i: int) -> int:
    """From just after "(", return the index of the matching ")" or -1 if the text ends first."""
    depth = 0
    quote_ch = ""
    prev = "("
    n = len(text)
    while i < n:
        ch = text[i]
        if quote_ch:
            if ch == "\\":
                i += 2
                continue
            if ch == quote_ch:
                quote_ch = ""
                prev = ch
        elif ch in _QUOTES and (prev in _STRING_OPENERS or (ch == '"' and text[i - 1].isspace())):
            quote_ch = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                return i if ch == ")" else -2  # "]" before ")" means this was never a call
            depth -= 1
        if not ch.isspace() and not quote_ch:
            prev = ch
        i += 1
    return -1


def _match_at(text: str, start: int) -> CallSpan | None:
    """Try to read a call starting at text[start] == "["; None if it is not a call."""
    n = len(text)
    i = start + 1
    if i >= n:
        return CallSpan(start, n, Call(""), False, "name")
    if not _is_name_start(text[i]):
        return None
    j = i
    while j < n and _is_name_char(text[j]):
        j += 1
    name = text[i:j]
    if j >= n:
        return CallSpan(start, n, Call(name), False, "name")
    if text[j] != "(":
        return None
    close = _scan_args(text, j + 1)
    if close == -2:
        return None
    if close == -1:
        return CallSpan(start, n, Call(name, text[j + 1 :]), False, "args")
    args = text[j + 1 : close]
    k = close + 1
    while k < n and text[k] == " ":
        k += 1
    if k >= n:
        return CallSpan(start, n, Call(name, args), False, "arrow")
    if text[k] == "]":
        return CallSpan(start, k + 1, Call(name, args), True)
    for arrow in ARROWS:
        if text.startswith(arrow, k):
            r0 = k + len(arrow)
            end = text.find("]", r0)
            nxt = text.find("[", r0)
            if end == -1 or (nxt != -1 and nxt < end):
                if end == -1 and nxt == -1:
                    return CallSpan(start, n, Call(name, args, text[r0:].strip()), False, "result")
                return None
            return CallSpan(start, end + 1, Call(name, args, text[r0:end].strip()), True)
    # "-" alone at the very end may be the start of "->"
    if text[k:] in ("-",):
        return CallSpan(start, n, Call(name, args), False, "arrow")
    return None


def find_calls(text: str, include_incomplete: bool = True) -> list[CallSpan]:
    """Every call in `text`, in order. A call cut off by the end of the text is returned as incomplete."""
    spans: list[CallSpan] = []
    i = text.find("[")
    while i != -1:
        span = _match_at(text, i)
        if span is not None and (span.complete or include_incomplete):
            spans.append(span)
            if not span.complete:
                break
            i = text.find("[", span.end)
        else:
            i = text.find("[", i + 1)
    return spans


def parse_call(text: str) -> Call:
    """Parse a string that is exactly one complete call; raise CallSyntaxError otherwise."""
    stripped = text.strip()
    span = _match_at(stripped, 0) if stripped.startswith("[") else None
    if span is None or not span.complete or span.end != len(stripped):
        raise CallSyntaxError(f"not a call: {text[:80]!r}")
    return span.call


def pending_call(text: str) -> CallSpan | None:
    """The call being written at the end of `text`, if any (used while streaming)."""
    spans = find_calls(text)
    return spans[-1] if spans and not spans[-1].complete else None


def strip_calls(text: str) -> str:
    """`text` without its complete calls (what a reader sees when the calls are hidden).

    Only the spaces where a call was removed are tidied: "a [C(1)] b" gives "a b", "x [C(1)]." gives "x.";
    newlines and spacing elsewhere are kept as written.
    """
    out = ""
    pos = 0
    for span in find_calls(text, include_incomplete=False):
        out = _join_at_removed_call(out, text[pos : span.start]) if pos else text[: span.start]
        pos = span.end
    return _join_at_removed_call(out, text[pos:]) if pos else text


def _join_at_removed_call(left: str, right: str) -> str:
    """Join the text before and after a removed call without leaving a doubled or dangling space."""
    if (not left or left.endswith((" ", "\n", "("))) and right.startswith(" "):
        right = right.lstrip(" ")
    if not right or right.startswith(("\n", ",", ".", ";", ":", "!", "?", ")")):
        left = left.rstrip(" ")
    return left + right
