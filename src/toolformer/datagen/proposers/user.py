"""Your own proposer: `--proposer mypkg.mod:propose` names a function or a Proposer, resolved like `--tools mod:fn`.

Small models cannot follow the paper's annotation prompt P(x), so a tool of your own needs someone to propose
where its calls go. `--proposer MODULE:ATTR` (alone or with others: `rule,mypkg.mod:propose`) names one of:

- a function `propose(text: str) -> Iterable[tuple[int, str, str]]`: the calls that belong in `text`, each
  `(position, tool, args)`. `position` is the character offset in `text` where the call goes (the call precedes
  `text[position:]`, which its result should help predict: put it before the answer, not after); `tool` is the
  tool's name as loaded (`Convert` for `@tool(name="Convert")`, else the function's name); `args` is what goes
  between the parentheses, as the model should write it (`"5 km to miles"`, quotes included for a string). It
  is called once per document; calls of tools that are not in `--tools`, or whose heuristic skips the text, are
  dropped. The loss filter then keeps a call only if its result helps (L⁻ − L⁺ ≥ τ_f), as for any proposer.
- an object with `propose(doc: Document, tool: str) -> list[Candidate]` (`proposers.base.Proposer`), used as
  it is, or a class of such objects, made with no arguments.

MODULE is imported as `--tools` imports it: from the installed packages, else from the working directory. A spec
that does not resolve is one ConfigError naming `--proposer`; the run's manifest records the spec (a rerun with
another one is refused). An exception raised by the function, or an item that is not `(position, tool, args)`,
makes that document a bad row (`DataError`, reason in its record) and the run goes on.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from toolformer.datagen.proposers.base import Proposer, dedupe
from toolformer.datagen.records import Candidate, Document
from toolformer.errors import ConfigError, DataError

WHAT = "--proposer"
SOURCE = "user"  # Candidate.source of the calls a user proposer made


def is_user_spec(name: str) -> bool:
    """Whether a `--proposer` item names the user's code (`module:attr`) rather than a built-in proposer."""
    return ":" in name


class FunctionProposer:
    """A `propose(text) -> [(position, tool, args), ...]` function as a Proposer (see the module docstring)."""

    def __init__(self, fn: Callable[[str], Iterable[Any]], spec: str = "") -> None:
        self.fn = fn
        self.spec = spec or getattr(fn, "__qualname__", repr(fn))
        self._last: tuple[str, str, list[Candidate]] | None = (
            None  # (doc id, text, candidates): one call per doc
        )

    def propose(self, doc: Document, tool: str) -> list[Candidate]:
        if self._last is None or self._last[:2] != (doc.id, doc.text):
            self._last = (doc.id, doc.text, self._all(doc))
        return [
            Candidate(doc.id, c.tool, c.args, c.position, c.source) for c in self._last[2] if c.tool == tool
        ]

    def _all(self, doc: Document) -> list[Candidate]:
        try:
            items = list(self.fn(doc.text))
        except Exception as exc:  # noqa: BLE001 - the user's code: its failure is this document's bad row
            raise DataError(
                f"{WHAT} {self.spec!r} failed on document {doc.id!r}: {type(exc).__name__}: {exc}"
            ) from exc
        out = []
        for item in items:
            if not _well_formed(item, len(doc.text)):
                raise DataError(
                    f"{WHAT} {self.spec!r} returned {item!r} for document {doc.id!r}: expected (position, tool, "
                    f"args) with 0 <= position <= {len(doc.text)}, tool and args strings"
                )
            position, tool, args = item
            out.append(Candidate(doc.id, tool, args, position, SOURCE))
        return dedupe(out)


def _well_formed(item: Any, length: int) -> bool:
    if not isinstance(item, (tuple, list)) or len(item) != 3:
        return False
    position, tool, args = item
    return (
        isinstance(position, int)
        and not isinstance(position, bool)
        and 0 <= position <= length
        and isinstance(tool, str)
        and bool(tool)
        and isinstance(args, str)
    )


def load_proposer(spec: str) -> Proposer:
    """The proposer `spec` (`module:attr`) names, as a Proposer; ConfigError naming `--proposer` if it cannot be."""
    from toolformer.tools.registry import resolve_attribute

    value, attr = resolve_attribute(spec, WHAT)
    if inspect.isclass(value):
        if not callable(getattr(value, "propose", None)):
            raise ConfigError(f"{WHAT} {spec!r}: class {attr} has no propose(doc, tool) method")
        try:
            value = value()
        except Exception as exc:  # noqa: BLE001 - the user's constructor: one config line
            raise ConfigError(f"{WHAT} {spec!r}: {attr}() failed ({type(exc).__name__}: {exc})") from exc
    if inspect.ismodule(value):
        raise ConfigError(f"{WHAT} {spec!r}: {attr} is a module; name its function, e.g. {spec}.propose")
    if not inspect.isroutine(value) and callable(getattr(value, "propose", None)):
        return value  # the Proposer protocol: propose(doc, tool) -> list[Candidate]
    if inspect.isroutine(value):
        required = _positional_count(value)
        if required != 1:
            raise ConfigError(
                f"{WHAT} {spec!r}: {attr} takes {required} positional parameters; a proposer function takes one, "
                "the text, and returns (position, tool, args) triples"
            )
        return FunctionProposer(value, spec)
    raise ConfigError(
        f"{WHAT} {spec!r}: {attr} is a {type(value).__name__}, not a function propose(text) or an object with "
        "propose(doc, tool)"
    )


def _positional_count(fn: Callable[..., Any]) -> int:
    """Parameters a call with positional arguments must fill (a function with *args counts as taking one)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1  # a builtin without a signature: let the call itself tell
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 1
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    return len(required) if required else len(positional[:1])
