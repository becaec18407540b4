"""The tool registry: a name → Tool mapping that runs calls, plus `builtin_tools` and `load_tools` (tool specs).

A spec is a comma-separated string (or a list) of items: a built-in name (`Calculator`), `module:attr` (a
function, wrapped with `@tool`; a Tool; or a list of Tools), or `mcp:COMMAND LINE` (a stdio MCP server; in a
string spec the command line cannot contain commas, in a list item it can). None means all built-ins.

Tools from a `module:attr` item run in worker processes (`tools.worker`), where a time limit can be enforced by
killing them; the built-ins run in-process, bounded by construction. An MCP server is a process already.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from toolformer.calls import Call
from toolformer.errors import ConfigError, ToolNotFoundError
from toolformer.tools.base import Tool, ToolOutput, tool

BUILTIN_NAMES: tuple[str, ...] = ("Calculator", "Calendar", "WikiSearch", "QA", "MT")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`: did you mean 'Calculator'?` for the known name closest to `name` (case first, then spelling), else ""."""
    names = list(known)
    by_case = {n.lower(): n for n in names}
    found = by_case.get(name.lower())
    if found is None:
        close = difflib.get_close_matches(name.lower(), list(by_case), n=1, cutoff=0.6)
        found = by_case[close[0]] if close else None
    return f": did you mean {found!r}?" if found is not None and found != name else ""


class ToolRegistry(Mapping[str, Tool]):
    """Tools by name (case-sensitive). Looking up an unknown name (`reg[name]`, `reg.get(name)`) raises
    ToolNotFoundError listing the known ones; `name in reg` tests membership without raising."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
            self.add(item)

    def __getitem__(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(self._tools) or "none"
            close = did_you_mean(name, self._tools)
            raise ToolNotFoundError(f"unknown tool {name!r}{close} (known: {known})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"ToolRegistry({list(self._tools)})"

    def add(self, item: Tool, replace: bool = False) -> Tool:
        """Register a Tool; a second tool with the same name is a ConfigError unless `replace`."""
        if not isinstance(item, Tool):
            raise ConfigError(f"only Tool objects can be registered, got {type(item).__name__}: {item!r}")
        if item.name in self._tools and not replace and self._tools[item.name] is not item:
            raise ConfigError(f"tool name {item.name!r} is registered twice")
        self._tools[item.name] = item
        return item

    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> Tool:  # type: ignore[override]
        """The tool called `name`; unlike `Mapping.get`, an unknown name raises ToolNotFoundError (known names listed)."""
        return self[name]

    def run(self, call: Call, timeout: float | None = None) -> ToolOutput:
        """Execute `call` with its tool. Never raises: an unknown tool gives `error: unknown tool X`."""
        found = self._tools.get(call.name)
        if found is None:
            return ToolOutput(text=f"error: unknown tool {call.name}", ok=False, seconds=0.0)
        return found.run(call, timeout=timeout)

    def subset(self, names: str | Iterable[str]) -> ToolRegistry:
        """A registry with only `names` (the same Tool objects); an unknown name raises ToolNotFoundError."""
        wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        return ToolRegistry(self[name] for name in wanted if name)

    def openai_schemas(self) -> list[dict[str, Any]]:
        """The OpenAI `tools=[…]` list."""
        return [t.openai_schema() for t in self._tools.values()]

    def describe(self) -> list[tuple[str, str]]:
        """(name, description) pairs, in registration order."""
        return [(t.name, t.description) for t in self._tools.values()]


def builtin_tools(
    clock: Callable[[], Any] | None = None,
    corpus: Any = None,
    mt_model: Any = None,
    qa_reader: Callable[[str, list[str]], str] | None = None,
) -> ToolRegistry:
    """The five tools of the paper. Cheap: the search index is built and the MT model loaded on first use.

    Args:
        clock: returns today's date for Calendar (default: $TOOLFORMER_TODAY or the real date).
        corpus: a Searcher, a JSONL(.gz) corpus path, or None for the shipped Wikipedia corpus; WikiSearch and
            QA share it.
        mt_model: an MT engine, "apertium", or a model id or directory for MT (default: $TOOLFORMER_MT_MODEL,
            else NLLB-600M when its weights are on disk, else Apertium).
        qa_reader: `reader(question, passages) -> answer` for QA (default: the extractive sentence reader).
    """
    from toolformer.tools.calculator import calculator_tool
    from toolformer.tools.calendar_tool import calendar_tool
    from toolformer.tools.mt import mt_tool
    from toolformer.tools.qa import qa_tool
    from toolformer.tools.wikisearch import wikisearch_tool
    from toolformer.tools.wikisearch.searcher import Searcher

    searcher = corpus if isinstance(corpus, Searcher) else Searcher(corpus)
    return ToolRegistry(
        [
            calculator_tool(),
            calendar_tool(clock),
            wikisearch_tool(searcher),
            qa_tool(searcher, reader=qa_reader),
            mt_tool(mt_model),
        ]
    )


def load_tools(spec: str | Iterable[str] | None = None, **builtin_kwargs: Any) -> ToolRegistry:
    """Build a registry from a tool spec (see the module docstring); `builtin_kwargs` go to `builtin_tools`.

    A bad item raises ConfigError naming it. The same built-in named twice is kept once.
    """
    if spec is None:
        return builtin_tools(**builtin_kwargs)
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    registry = ToolRegistry()
    builtins: ToolRegistry | None = None
    for item in items:
        if not item:
            continue
        canonical = {n.lower(): n for n in BUILTIN_NAMES}.get(item.lower())
        if canonical is not None:
            builtins = builtins or builtin_tools(**builtin_kwargs)
            registry.add(builtins[canonical], replace=True)
        elif item.lower().startswith("mcp:"):
            for found in _mcp_item(item):
                _add(registry, found, item)
        elif ":" in item:
            for found in _import_item(item):
                _add(registry, found, item)
        else:
            raise ConfigError(
                f"tool spec item {item!r} is not a built-in ({', '.join(BUILTIN_NAMES)}), module:function or "
                f"mcp:COMMAND{did_you_mean(item, BUILTIN_NAMES)}"
            )
    return registry


def _add(registry: ToolRegistry, found: Tool, item: str) -> None:
    try:
        registry.add(found)
    except ConfigError as exc:
        raise ConfigError(f"tool spec item {item!r}: {exc}") from exc


def _mcp_item(item: str) -> list[Tool]:
    from toolformer.tools.mcp import mcp_tools

    command = item[4:].strip()
    if not command:
        raise ConfigError(f"tool spec item {item!r} has no command after 'mcp:'")
    try:
        return mcp_tools(command)
    except ConfigError as exc:
        raise ConfigError(f"tool spec item {item!r}: {exc}") from exc


def _import_item(item: str) -> list[Tool]:
    """The item's tools, each calling into worker processes that import the same item (in-process where
    worker processes are not supported)."""
    from toolformer.tools import worker

    found = resolve_item(item)
    if not worker.SUPPORTED:
        return found
    return [dataclasses.replace(t, fn=worker.ProcessFunction(item, t.name)) for t in found]


def resolve_attribute(item: str, what: str = "tool spec item") -> tuple[Any, str]:
    """The object a `module:attr` item names (attr may be dotted) and its attr path; the module is imported from the
    working directory too. A bad item raises ConfigError starting `{what} {item!r}` (`--proposer` uses this)."""
    module_name, _, attr_path = item.partition(":")
    module_name, attr_path = module_name.strip(), attr_path.strip()
    if not module_name or not attr_path:
        raise ConfigError(f"{what} {item!r} must be module:attribute")
    module = _import(module_name, item, what)
    value: Any = module
    for part in attr_path.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigError(f"{what} {item!r}: {module_name} has no attribute {attr_path!r}") from None
    return value, attr_path


def resolve_item(item: str) -> list[Tool]:
    """The tools a `module:attr` item names, in this process (a worker process calls this too)."""
    value, attr_path = resolve_attribute(item)
    if isinstance(value, Tool):
        return [value]
    if isinstance(value, (list, tuple)):
        if not value or not all(isinstance(v, Tool) for v in value):
            raise ConfigError(f"tool spec item {item!r}: {attr_path} must be a non-empty list of Tools")
        return list(value)
    if inspect.isfunction(value) or inspect.isbuiltin(value) or inspect.ismethod(value):
        try:
            return [tool(value)]
        except Exception as exc:  # noqa: BLE001 - bad names or hints become one ConfigError line
            raise ConfigError(f"tool spec item {item!r}: cannot make a tool of {attr_path}: {exc}") from exc
    raise ConfigError(
        f"tool spec item {item!r}: {attr_path} is a {type(value).__name__}, not a function or Tool"
    )


def _import(module_name: str, item: str, what: str) -> Any:
    try:
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A console script does not put the working directory on sys.path: let `mytools:fn` next to you work.
            cwd = os.getcwd()
            if exc.name != module_name.split(".")[0] or cwd in sys.path:
                raise
            sys.path.append(cwd)
            try:
                return importlib.import_module(module_name)
            except ModuleNotFoundError:
                sys.path.remove(cwd)
                raise exc from None
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{what} {item!r}: cannot import {module_name!r} ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - a module that fails on import is the user's config problem
        raise ConfigError(
            f"{what} {item!r}: importing {module_name!r} failed ({type(exc).__name__}: {exc})"
        ) from exc
