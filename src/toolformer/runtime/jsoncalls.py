"""Find OpenAI-style JSON tool calls (Hermes/Qwen, Llama-3, FunctionGemma, bare JSON) in a chat model's text.

`parse_json_calls` splits finished text into content and `Call`s (each with `arguments` set); it never raises, and
anything malformed stays in the content. `pending_json_call` tells a streaming server that the text ends inside a
call still being written, so it should hold the output back. `render_tools_prompt` writes the system-prompt block
that asks for `<tool_call>` calls, for chat templates that do not take `tools=` themselves.

Formats read:
- Hermes/Qwen: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one or several; the body may hold a list
  or several objects; a missing `</tool_call>` at the very end is forgiven when the JSON inside is complete.
- Bare JSON at the start of the text or of a line (optionally after `<|python_tag|>`, `[TOOL_CALLS]` or inside a
  ```json fence): an object or a list of objects with "name" and "arguments" (or Llama-3's "parameters"), or
  OpenAI's `{"type": "function", "function": {...}}`. Only those keys are allowed, so ordinary JSON is not a call.
- FunctionGemma: `<start_function_call>call:name{key:<escape>text<escape>,n:3}<end_function_call>`.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from toolformer.calls import Call, CallSyntaxError
from toolformer.errors import ConfigError

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
GEMMA_OPEN = "<start_function_call>"
GEMMA_CLOSE = "<end_function_call>"
GEMMA_ESCAPE = "<escape>"
PREFIX_TOKENS = ("<|python_tag|>", "[TOOL_CALLS]")  # Llama 3.1 and Mistral write these before bare JSON calls
_TAGS = ((TOOL_CALL_OPEN, TOOL_CALL_CLOSE), (GEMMA_OPEN, GEMMA_CLOSE))
_BARE_KEYS = {"name", "arguments", "parameters", "id", "type", "function"}
_FENCE = re.compile(r"```(?:json)?[ \t]*\n")
_DECODER = json.JSONDecoder()
_PARSE_ERRORS = (ValueError, SyntaxError, TypeError, IndexError, MemoryError, RecursionError)


class _Malformed(Exception):
    """Raised inside the FunctionGemma reader; the text stays content."""


# ---------------------------------------------------------------------------------------------------------------
# Public API


def parse_json_calls(text: str) -> tuple[str, list[Call]]:
    """Split `text` into (content without the calls, calls in order). Never raises; malformed calls stay content."""
    try:
        regions, blocks = _tagged_regions(text)
        regions += _bare_regions(text, blocks)
    except _PARSE_ERRORS:  # a safety net: the readers below catch their own errors
        return text, []
    if not regions:
        return text, []
    regions.sort(key=lambda r: r[0])
    pieces: list[str] = []
    calls: list[Call] = []
    pos = 0
    for start, end, found in regions:
        pieces.append(text[pos:start])
        calls += found
        pos = end
    pieces.append(text[pos:])
    content = re.sub(r"\n{3,}", "\n\n", "".join(pieces)).strip()
    return content, calls


def pending_json_call(text: str) -> bool:
    """Whether `text` ends inside a JSON call still being written (an open `<tool_call>`, a bare `{"name": ...`,
    or the first characters of a tag), so that a streaming server should hold the output back for now."""
    for opener, closer in _TAGS:
        at = text.rfind(opener)
        if at != -1 and text.find(closer, at + len(opener)) == -1:
            return True
    for tag in (TOOL_CALL_OPEN, GEMMA_OPEN, *PREFIX_TOKENS):
        if any(text.endswith(tag[:k]) for k in range(1, len(tag))):
            return True
    try:
        _, blocks = _tagged_regions(text)
    except _PARSE_ERRORS:  # a safety net, as in parse_json_calls
        blocks = []
    pos = 0
    while pos <= len(text):
        q, prefixed, fenced = _line_head(text, pos)
        rest = text[_skip_inline(text, pos) :]
        if "\n" not in rest and rest and "```json".startswith(rest):
            return True  # a fence that may open a JSON call
        if q == len(text) and prefixed:
            return True  # a prefix token or ```json fence with nothing after it yet
        if q < len(text) and text[q] in "{[" and not any(s <= q < e for s, e in blocks):
            end = _bracket_end(text, q)
            if end is None:
                if _may_be_call(text[q : q + 80]):
                    return True
                # An unclosed bracket that cannot be a call is text: a later line may still open one.
            else:
                if fenced and re.fullmatch(r"\s*`{0,2}", text[end:]):
                    return True  # a fenced JSON value whose closing fence is still to come
                closing = re.match(r"\s*```", text[end:]) if fenced else None
                pos = end + (closing.end() if closing else 0)
        nl = text.find("\n", pos)
        if nl == -1:
            return False
        pos = nl + 1
    return False


def format_json_call(call: Call) -> str:
    """The Hermes/Qwen form of a call: `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`."""
    arguments = json.loads(call.to_openai()["function"]["arguments"])
    body = json.dumps({"name": call.name, "arguments": arguments}, ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}\n{body}\n{TOOL_CALL_CLOSE}"


def render_tools_prompt(schemas: list[dict[str, Any]]) -> str:
    """A plain-text system-prompt block listing the tools (OpenAI `tools` entries or bare function schemas) and
    asking for `<tool_call>` JSON calls. Empty when there are no tools."""
    if not schemas:
        return ""
    lines = [
        "# Tools",
        "",
        "You may call one or more functions to help with the user's request.",
        "Each function is described by a JSON schema inside <tools></tools>:",
        "<tools>",
        *(json.dumps(_tool_entry(schema, n), ensure_ascii=False) for n, schema in enumerate(schemas)),
        "</tools>",
        "",
        "To call a function, write one JSON object with its name and arguments between <tool_call></tool_call>"
        " tags, one pair of tags per call:",
        "<tool_call>",
        '{"name": "<function-name>", "arguments": {"<argument-name>": <value>}}',
        "</tool_call>",
        "After your calls, stop: the results come back in the next message. If no function helps, answer directly.",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Tagged calls: <tool_call>...</tool_call> and <start_function_call>...<end_function_call>


def _tagged_regions(text: str) -> tuple[list[tuple[int, int, list[Call]]], list[tuple[int, int]]]:
    """The tagged calls that parse, as (start, end, calls), and every tagged block, parsed or not."""
    regions: list[tuple[int, int, list[Call]]] = []
    blocks: list[tuple[int, int]] = []
    pos = 0
    while True:
        found = [(text.find(opener, pos), opener, closer) for opener, closer in _TAGS]
        found = [f for f in found if f[0] != -1]
        if not found:
            return regions, blocks
        start, opener, closer = min(found)
        body_start = start + len(opener)
        close = text.find(closer, body_start)
        body = text[body_start:] if close == -1 else text[body_start:close]
        end = len(text) if close == -1 else close + len(closer)
        calls = _gemma_calls(body) if opener == GEMMA_OPEN else _hermes_calls(body)
        blocks.append((start, end))
        if calls is not None:
            regions.append((start, end, calls))
        if close == -1:  # an unclosed tag runs to the end of the text: nothing comes after it
            return regions, blocks
        pos = end


def _hermes_calls(body: str) -> list[Call] | None:
    body = body.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
    if fenced:
        body = fenced.group(1)
    values = _read_values(body)
    if values is None:
        try:  # single-quoted, Python-style dicts: literal_eval reads literals only, never runs code
            values = [ast.literal_eval(body)]
        except _PARSE_ERRORS:
            return None
    return _calls_from(values, strict=False)


def _gemma_calls(body: str) -> list[Call] | None:
    body = body.strip()
    if not body.startswith("call:"):
        return None
    brace = body.find("{")
    name = (body[5:] if brace == -1 else body[5:brace]).strip()
    try:
        arguments: Any = {}
        if brace != -1:
            arguments, end = _gemma_value(body, brace)
            if body[end:].strip() or not isinstance(arguments, dict):
                return None
        return [Call.from_openai({"name": name, "arguments": arguments})]
    except (_Malformed, CallSyntaxError, *_PARSE_ERRORS):
        return None


def _gemma_value(s: str, i: int) -> tuple[Any, int]:
    """Read one FunctionGemma value at s[i:]: <escape>text<escape>, {k:v,...}, [v,...] or a bare scalar."""
    i = _skip_space(s, i)
    if s.startswith(GEMMA_ESCAPE, i):
        close = s.find(GEMMA_ESCAPE, i + len(GEMMA_ESCAPE))
        if close == -1:
            raise _Malformed("unterminated <escape>")
        return s[i + len(GEMMA_ESCAPE) : close], close + len(GEMMA_ESCAPE)
    if i < len(s) and s[i] in "{[":
        is_obj = s[i] == "{"
        closer = "}" if is_obj else "]"
        obj: dict[str, Any] = {}
        items: list[Any] = []
        i = _skip_space(s, i + 1)
        if s.startswith(closer, i):
            return (obj if is_obj else items), i + 1
        while True:
            if is_obj:
                key, i = _gemma_key(s, i)
                obj[key], i = _gemma_value(s, i)
            else:
                value, i = _gemma_value(s, i)
                items.append(value)
            i = _skip_space(s, i)
            if s.startswith(",", i):
                i += 1
            elif s.startswith(closer, i):
                return (obj if is_obj else items), i + 1
            else:
                raise _Malformed(f"expected ',' or {closer!r} at {i}")
    end = i
    while end < len(s) and s[end] not in ",}]":
        end += 1
    token = s[i:end].strip()
    if not token or "<" in token or "{" in token or "[" in token:
        raise _Malformed(f"bad value at {i}")
    try:
        return json.loads(token), end  # numbers, true/false/null, "quoted"
    except ValueError:
        return token, end


def _gemma_key(s: str, i: int) -> tuple[str, int]:
    i = _skip_space(s, i)
    if s.startswith(GEMMA_ESCAPE, i) or s.startswith('"', i):
        key, i = _gemma_value(s, i)
        if not isinstance(key, str):
            raise _Malformed("bad key")
    else:
        colon = s.find(":", i)
        key = s[i:colon].strip() if colon != -1 else ""
        if not key or any(c in key for c in ",{}[]<>"):
            raise _Malformed(f"bad key at {i}")
        i = colon
    i = _skip_space(s, i)
    if not s.startswith(":", i):
        raise _Malformed(f"expected ':' at {i}")
    return key, i + 1


def _skip_space(s: str, i: int) -> int:
    while i < len(s) and s[i].isspace():
        i += 1
    return i


# ---------------------------------------------------------------------------------------------------------------
# Bare JSON calls


def _bare_regions(text: str, blocks: list[tuple[int, int]]) -> list[tuple[int, int, list[Call]]]:
    """Bare JSON calls outside the tagged blocks."""
    regions: list[tuple[int, int, list[Call]]] = []
    pos = 0
    while pos <= len(text):
        q = _json_start(text, pos)
        inside = q is not None and any(s <= q < e for s, e in blocks)
        if q is not None and not inside:
            region = _bare_calls_at(text, pos, q)
            if region is not None:
                regions.append(region)
                pos = region[1]
        nl = text.find("\n", pos)
        if nl == -1:
            return regions
        pos = nl + 1
    return regions


def _bare_calls_at(text: str, line_start: int, q: int) -> tuple[int, int, list[Call]] | None:
    """The calls in the JSON values starting at text[q] (separated by blanks, ',' or ';'), as a region."""
    calls: list[Call] = []
    end = i = q
    while True:
        try:
            value, j = _DECODER.raw_decode(text, i)
        except _PARSE_ERRORS:
            break
        found = _calls_from([value], strict=True)
        if found is None:
            break
        calls += found
        end = j
        i = j
        while i < len(text) and text[i] in " \t\r\n,;":
            i += 1
    if not calls:
        return None
    if _FENCE.search(text, line_start, q):  # the ```json fence around the calls goes with them
        closing = re.match(r"\s*```", text[end:])
        if closing:
            end += closing.end()
    return line_start, end, calls


def _json_start(text: str, line_start: int) -> int | None:
    """Where a bare JSON call could start on the line at `line_start` (after blanks, a prefix token, a fence)."""
    i = _line_head(text, line_start)[0]
    return i if i < len(text) and text[i] in "{[" else None


def _line_head(text: str, line_start: int) -> tuple[int, bool, bool]:
    """Skip the blanks, prefix token and ```json fence that may open a line: (index, skipped any, fenced)."""
    i = _skip_inline(text, line_start)
    prefixed = False
    for token in PREFIX_TOKENS:
        if text.startswith(token, i):
            i = _skip_space(text, i + len(token))
            prefixed = True
            break
    fence = _FENCE.match(text, i)
    if fence:
        i = _skip_space(text, fence.end())
    return i, prefixed or fence is not None, fence is not None


def _skip_inline(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _bracket_end(text: str, q: int) -> int | None:
    """Index after the bracket that closes text[q] (JSON strings respected); None if the text ends first."""
    depth = 0
    in_string = False
    i = q
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


_FIRST_KEY = re.compile(r'\[?\s*\{?\s*("?)([^"]*)("?)')


def _may_be_call(head: str) -> bool:
    """Whether unfinished JSON `head` can still become a call: its first key is, or may grow into, a call key."""
    match = _FIRST_KEY.match(head)
    if match is None:
        return False
    rest = head[match.end() :]
    opened, key, closed = match.groups()
    if head.startswith("[") and not head[1:].lstrip().startswith("{") and head[1:].strip():
        return False
    if not opened:
        return not (key.strip() or rest.strip())
    if closed:
        return key in _BARE_KEYS
    return any(k.startswith(key) for k in _BARE_KEYS)


# ---------------------------------------------------------------------------------------------------------------
# JSON values to calls


def _read_values(body: str) -> list[Any] | None:
    """Every JSON value in `body`, separated by blanks, ',' or ';'; None if anything else is there."""
    values: list[Any] = []
    i = 0
    while True:
        while i < len(body) and body[i] in " \t\r\n,;":
            i += 1
        if i >= len(body):
            return values or None
        try:
            value, i = _DECODER.raw_decode(body, i)
        except _PARSE_ERRORS:
            return None
        values.append(value)


def _calls_from(values: list[Any], strict: bool) -> list[Call] | None:
    """Calls from JSON values (objects, or lists of them); None unless every one is a call."""
    calls: list[Call] = []
    for value in values:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not items:
            return None
        for item in items:
            call = _call_from(item, strict)
            if call is None:
                return None
            calls.append(call)
    return calls


def _call_from(obj: Any, strict: bool) -> Call | None:
    if not isinstance(obj, dict):
        return None
    if strict and not set(obj) <= _BARE_KEYS:
        return None
    entry: dict[str, Any]
    if isinstance(obj.get("function"), dict):
        entry = {"id": obj.get("id"), "function": obj["function"]}
    else:
        if strict and "arguments" not in obj and "parameters" not in obj:
            return None
        arguments = obj["arguments"] if "arguments" in obj else obj.get("parameters")
        entry = {"id": obj.get("id"), "name": obj.get("name"), "arguments": arguments}
    try:
        return Call.from_openai(entry)
    except (CallSyntaxError, *_PARSE_ERRORS):  # RecursionError for absurdly nested arguments
        return None


def _tool_entry(schema: Any, n: int) -> dict[str, Any]:
    """An OpenAI `tools` entry from an entry or a bare function schema."""
    if not isinstance(schema, dict):
        raise ConfigError(f"tool schema {n} must be a dict, got {schema!r}")
    fn = schema.get("function", schema)
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise ConfigError(f"tool schema {n} has no function name: {schema!r}")
    return {"type": "function", "function": fn}
