"""The Tool type: a name, a description, a JSON schema and a function, run with a time limit and never raising."""

from __future__ import annotations

import ast
import contextvars
import inspect
import json
import math
import re
import threading
import time
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from toolformer.calls import Call, CallSyntaxError
from toolformer.errors import ConfigError, ToolError, ToolTimeoutError

DEFAULT_TIMEOUT_S = 5.0
MAX_RESULT_CHARS = 2000  # a result longer than this is cut: it goes into the model's context

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


@dataclass
class ToolOutput:
    """What one execution produced: the text the model sees, whether it failed, and how long it took."""

    text: str
    ok: bool
    seconds: float


@dataclass
class Tool:
    """A callable tool. `fn` takes keyword arguments matching `parameters` (a JSON schema) and returns text."""

    name: str
    description: str
    fn: Callable[..., Any]
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    timeout: float = DEFAULT_TIMEOUT_S
    version: str = "1"
    # Example calls as the model should write them (`Weather("Paris")`), shown to the model in the tools header.
    examples: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "a").isalnum() or self.name[0].isdigit():
            raise ConfigError(f"tool name {self.name!r} must be an identifier (letters, digits, _)")
        if not self.timeout > 0:
            raise ConfigError(f"timeout of tool {self.name} must be positive seconds, got {self.timeout!r}")

    @property
    def param_names(self) -> list[str]:
        return list(self.parameters.get("properties", {}))

    def bind(self, call: Call) -> dict[str, Any]:
        """Map a call to keyword arguments for `fn`.

        A JSON call carries its arguments (a one-parameter tool takes a lone value under any key, e.g. the
        `{"input": ...}` that `Call.to_openai` writes). An inline call `[Name(text)]` to a tool with one
        parameter passes the text as written (unquoted if it is one quoted string): `Calculator(1,000 + 5)`
        must not split at the comma; a non-string parameter (`int`, `list`, ...) gets the text's literal value
        when it has one. `[Name()]` leaves an optional parameter to its default.
        Tools with several parameters get Python-style literal arguments, `Name("a", k=2)`; text that is not
        literals (`[Search(Joe Biden)]`) goes whole to the one required parameter, if there is exactly one.
        """
        names = self.param_names
        required = self.parameters.get("required", [])
        if call.arguments is not None:
            arguments = dict(call.arguments)
            if len(names) == 1 and len(arguments) == 1 and names[0] not in arguments:
                return {names[0]: next(iter(arguments.values()))}
            return arguments
        if not names:
            return {}
        if len(names) == 1:
            if not call.args.strip() and names[0] not in required:
                return {}
            schema = self.parameters.get("properties", {}).get(names[0], {})
            return {names[0]: _coerce(call.input, schema)}
        try:
            args, kwargs = call.literal_args()
        except CallSyntaxError:
            if len(required) != 1:
                raise
            return {required[0]: call.input}
        if len(args) > len(names):
            raise ToolError(f"{self.name} takes {len(names)} arguments ({', '.join(names)}), got {len(args)}")
        bound = dict(zip(names[: len(args)], args, strict=True))
        for key, value in kwargs.items():
            if key in bound:
                raise ToolError(f"{self.name} got two values for argument {key!r}")
            bound[key] = value
        return bound

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        """Call the function directly (no time limit, errors raise)."""
        return _to_text(self.fn(*args, **kwargs))

    def run(self, call: Call | str, timeout: float | None = None) -> ToolOutput:
        """Execute a call within the time limit. Never raises: failures come back as `error: …` text."""
        start = time.perf_counter()
        try:
            if isinstance(call, str):
                call = Call(self.name, call)
            kwargs = self.bind(call)
            limit = self.timeout if timeout is None else timeout
            bounded = getattr(self.fn, "call_within", None)
            if (
                bounded is not None
            ):  # it enforces the limit itself (a worker process it kills): no thread needed
                text = _to_text(bounded(kwargs, limit))
            else:
                text = run_with_timeout(lambda: self(**kwargs), limit, self.name)
            ok = True
        except Exception as exc:  # noqa: BLE001 - a tool failure is data for the model, never a crash
            text, ok = error_text(exc), False
        if len(text) > MAX_RESULT_CHARS:
            text = text[: MAX_RESULT_CHARS - 1] + "…"
        return ToolOutput(text=text, ok=ok, seconds=time.perf_counter() - start)

    def openai_schema(self) -> dict[str, Any]:
        """The OpenAI `tools=[…]` entry for this tool."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


def error_text(exc: BaseException) -> str:
    """The one-line text a failed call returns to the model."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"error: {msg}"


def run_with_timeout(fn: Callable[[], str], timeout: float, name: str = "tool") -> str:
    """Run `fn` in a daemon thread; give up after `timeout` seconds (the thread is abandoned, the process lives on).

    For code that is bounded by construction (the built-ins): a thread cannot be stopped, and one that holds the GIL
    overruns the limit. Code that may not be bounded runs in a worker process instead (`tools.worker`).
    """
    box: dict[str, Any] = {}
    # The caller's context variables (e.g. the search exclusion of `wikisearch.excluding`) go with the call.
    context = contextvars.copy_context()

    def target() -> None:
        try:
            box["value"] = context.run(fn)
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"tool-{name}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise ToolTimeoutError(f"{name} timed out after {timeout:g} s")
    if "error" in box:
        exc = box["error"]
        # SystemExit or KeyboardInterrupt raised inside the tool's thread is the tool's failure, not the user's.
        if not isinstance(exc, Exception):
            raise ToolError(f"{name} raised {type(exc).__name__}") from exc
        raise exc
    return box["value"]


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        # Whole numbers print without ".0"; others keep 6 significant digits unless that would switch to
        # exponent notation and lose digits (1234567.5 must not become 1.23457e+06).
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        text = f"{value:g}"
        return repr(value) if "e" in text and math.isfinite(value) else text
    return str(value)


_COERCE_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, tuple),
    "object": (dict,),
}


def _coerce(text: str, schema: dict[str, Any]) -> Any:
    """The literal value of `text` when the parameter is not a string and the text is a literal of its type."""
    kinds = _COERCE_TYPES.get(schema.get("type", ""))
    if kinds is None:
        return text
    word = text.strip()
    if kinds == (bool,) and word.lower() in ("true", "false"):
        return word.lower() == "true"
    try:
        value = ast.literal_eval(word)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    if isinstance(value, bool) and kinds != (bool,):
        return text
    if not isinstance(value, kinds):
        return text
    return list(value) if isinstance(value, tuple) else value


def _json_type(annotation: Any) -> dict[str, Any]:
    """The JSON schema of a type hint: str/int/float/bool/list/dict, Optional, unions, Literal, list[X]."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        inner = [_json_type(a) for a in typing.get_args(annotation) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
        return {"anyOf": inner} if inner and all(inner) else {}
    if origin in (list, tuple, set, frozenset):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        items = _json_type(args[0]) if args and (origin is not tuple or len(set(args)) == 1) else {}
        return {"type": "array", "items": items} if items else {"type": "array"}
    if origin is dict:
        return {"type": "object"}
    if origin is typing.Literal:
        values = list(typing.get_args(annotation))
        kinds = {_JSON_TYPES.get(type(v)) for v in values}
        if kinds == {"integer", "number"}:
            kinds = {"number"}
        return (
            {"type": kinds.pop(), "enum": values}
            if len(kinds) == 1 and None not in kinds
            else {"enum": values}
        )
    if annotation in (set, frozenset, tuple):
        return {"type": "array"}
    return {"type": _JSON_TYPES[annotation]} if annotation in _JSON_TYPES else {}


# Google docstring section headers; the description ends at the first one.
_SECTIONS = {
    "args", "arguments", "parameters", "params", "returns", "return", "yields", "yield", "raises",
    "examples", "example", "note", "notes", "see also", "attributes", "warning", "warnings", "todo",
}  # fmt: skip
_ARG_SECTIONS = {"args", "arguments", "parameters", "params"}
_ARG_LINE = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (description, {arg: help}); an arg's help may continue on more lines."""
    desc: list[str] = []
    helps: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    current_indent = 0
    for line in inspect.cleandoc(doc or "").splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if indent == 0 and stripped.endswith(":") and stripped[:-1].strip().lower() in _SECTIONS:
            section, current = stripped[:-1].strip().lower(), None
            continue
        if section is None:
            desc.append(stripped)
        elif section in _ARG_SECTIONS and stripped:
            match = _ARG_LINE.match(stripped)
            if match and (current is None or indent <= current_indent):
                current, current_indent = match.group(1), indent
                helps[current] = match.group(2).strip()
            elif current is not None:
                helps[current] = f"{helps[current]} {stripped}".strip()
    return " ".join(d for d in desc if d).strip(), helps


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    examples: Sequence[str] = (),
) -> Any:
    """Make a Tool from a function: the JSON schema comes from its type hints, the descriptions from its docstring.

    Use as `@tool` or `@tool(name="Search", timeout=10, examples=['Search("Eiffel Tower")'])`; `examples` are
    calls as the model should write them, shown to the model in the tools header (`runtime.prompts.tools_header`).
    """

    def build(f: Callable[..., Any]) -> Tool:
        desc, helps = _parse_docstring(f.__doc__ or "")
        try:
            hints = typing.get_type_hints(f)
        except Exception:  # noqa: BLE001 - an unresolvable forward reference: fall back to untyped (string)
            hints = {k: v for k, v in getattr(f, "__annotations__", {}).items() if not isinstance(v, str)}
        props: dict[str, Any] = {}
        required: list[str] = []
        for pname, param in inspect.signature(f).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            schema = _json_type(hints.get(pname, str))
            if pname in helps:
                schema["description"] = helps[pname]
            if param.default is inspect.Parameter.empty:
                required.append(pname)
            elif _is_json(param.default):
                schema["default"] = param.default
            props[pname] = schema
        params: dict[str, Any] = {"type": "object", "properties": props}
        if required:
            params["required"] = required
        return Tool(
            name=name or f.__name__,
            description=description or desc or f.__name__,
            fn=f,
            parameters=params,
            timeout=timeout,
            examples=tuple(examples),
        )

    return build(fn) if fn is not None else build
