"""Constrained JSON tool calls: the grammar of a reply's `<tool_call>` blocks, built from the request's functions and
held by llguidance token masks in both decoding backends.

`call_grammar` turns OpenAI `tools` entries into a `CallGrammar` (a Lark grammar with an embedded JSON schema: the
call object is `{"name": <one of the functions>, "arguments": <that function's parameters>}`, in the Hermes/Qwen
`<tool_call>` convention `jsoncalls` reads). It rides in `DecodeConfig.grammar`; a decoder given one builds a
`GrammarMask`, which `runtime.choose.TokenChooser` asks before every token of a row. Modes:

- "forced" (`tool_choice` required or a named function): the reply is call blocks from its first token (after the
  prompt's prefill `prime`), then the end of generation; with `parallel`, more blocks may follow.
- "auto": text is free until the model writes `<tool_call>`; from there to `</tool_call>` only a valid call may be
  written. The token that completes the opener may carry only the start of the JSON object after it. Without
  `parallel`, no second block can open.
- "none": no `<tool_call>` can be written at all.

So that a call always ends within the token budget, whatever the model, the schema is bounded while decoding
(strings without `maxLength` get `MAX_STRING` characters, arrays without `maxItems` get `MAX_ITEMS`, objects without
`additionalProperties` take only their declared properties), and in the last `CLOSING_RESERVE` tokens of a reply
the tokens that close a string, an object or the block are preferred; a forced reply opens another block only
while the first block's length plus that reserve is left.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from toolformer.errors import ConfigError, require
from toolformer.runtime.jsoncalls import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

logger = logging.getLogger(__name__)

MODES = ("none", "auto", "forced")
MAX_STRING = 128  # characters of a string argument whose schema sets no maxLength
MAX_ITEMS = 16  # items of an array argument whose schema sets no maxItems
CLOSING_RESERVE = 24  # tokens before the budget ends from which closing tokens are preferred
JSON_OPTIONS = {
    "item_separator": ", ",
    "key_separator": ": ",
    "whitespace_flexible": False,
}  # json.dumps' form
_AFTER_OPEN = '\n{"'  # what may follow `<tool_call>` in the token that completes it (auto)
_CLOSERS = set('"}]')
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")


@dataclass(frozen=True)
class CallGrammar:
    """What a reply's JSON tool calls are held to (see the module docstring); its repr keys the server's batches."""

    mode: str
    lark: str = ""  # the grammar of the reply (forced) or of one block (auto); "" for none
    parallel: bool = True
    prime: str = ""  # text of the reply already in the prompt (forced: the prefill)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"grammar mode={self.mode!r} is not one of {', '.join(MODES)}")
        if self.mode != "none" and not self.lark:
            raise ConfigError(f"grammar mode={self.mode!r} needs a grammar (functions to call)")


def bounded(schema: Any) -> Any:
    """`schema` with the decoding bounds of the module docstring added where it sets none (a copy)."""
    if isinstance(schema, list):
        return [bounded(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for k, v in schema.items():
        if k in ("enum", "const", "default", "examples"):
            out[k] = v
        elif k in _SCHEMA_MAPS and isinstance(v, dict):  # names -> schemas: a property may be named "type"
            out[k] = {name: bounded(s) for name, s in v.items()}
        else:
            out[k] = bounded(v)
    kinds = out.get("type")
    kinds = set(kinds) if isinstance(kinds, list) else {kinds} if isinstance(kinds, str) else set()
    free_text = not any(k in out for k in ("enum", "const", "pattern", "format"))
    if "string" in kinds and free_text and "maxLength" not in out:
        out["maxLength"] = max(MAX_STRING, int(out.get("minLength", 0)))
    if "array" in kinds and "maxItems" not in out:
        out["maxItems"] = max(MAX_ITEMS, int(out.get("minItems", 0)))
    if ("object" in kinds or "properties" in out) and "additionalProperties" not in out:
        # A required key the schema does not describe stays allowed (any value), or no object would satisfy it.
        declared = out.get("properties") if isinstance(out.get("properties"), dict) else {}
        required = out.get("required") if isinstance(out.get("required"), list) else []
        missing = {r: {} for r in required if isinstance(r, str) and r not in declared}
        if missing:
            out["properties"] = {**declared, **missing}
        out["additionalProperties"] = False
    return out


def _function(entry: Any, n: int) -> dict[str, Any]:
    fn = entry.get("function", entry) if isinstance(entry, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise ConfigError(f"tools[{n}] has no function name: {entry!r}")
    return fn


def call_schema(tools: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The JSON schema of one call object to any of `tools` (OpenAI entries or bare function schemas), bounded."""
    options = []
    for n, entry in enumerate(tools):
        fn = _function(entry, n)
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": fn["name"]}, "arguments": bounded(params)},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    if not options:
        raise ConfigError("tools is empty: a call grammar needs at least one function")
    return {"anyOf": options, "x-guidance": JSON_OPTIONS}


def call_grammar(
    tools: Sequence[dict[str, Any]], mode: str, parallel: bool = True, prime: str = ""
) -> CallGrammar:
    """The `CallGrammar` of calls to `tools` in `mode` ("forced", "auto" or "none"; see the module docstring)."""
    if mode == "none":
        return CallGrammar("none", parallel=parallel)
    schema = json.dumps(call_schema(tools), ensure_ascii=False)
    block = f"block: {json.dumps(TOOL_CALL_OPEN + chr(10))} call {json.dumps(chr(10) + TOOL_CALL_CLOSE)}"
    if (
        mode == "auto"
    ):  # the text after the block is free (a token may carry it: "><" closes one, opens another)
        start = "start: block TAIL\nTAIL: /(?s:.*)/"
    else:
        start = 'start: block ("\\n"? block)*' if parallel else "start: block"
    return CallGrammar(mode, f"{start}\n{block}\ncall: %json {schema}\n", parallel, prime)


# ---------------------------------------------------------------------------------------------------------------
# Tokenizers


def grammar_available() -> bool:
    """Whether llguidance can be imported (without importing it): calls are held to a grammar only then."""
    import importlib.util

    return importlib.util.find_spec("llguidance") is not None


_LL_TOKENIZERS: weakref.WeakKeyDictionary[Any, dict[tuple[int, tuple[int, ...]], Any]] = (
    weakref.WeakKeyDictionary()
)


def hf_ll_tokenizer(tokenizer: Any, size: int, eos: set[int]) -> Any:
    """llguidance's tokenizer for a transformers (fast) tokenizer's first `size` ids (cached per tokenizer)."""
    require("llguidance", "serve")
    import llguidance.hf

    key = (size, tuple(sorted(eos)))
    try:
        per = _LL_TOKENIZERS.setdefault(tokenizer, {})
    except TypeError:
        per = {}
    if key not in per:
        try:
            per[key] = llguidance.hf.from_tokenizer(tokenizer, n_vocab=size, eos_token=list(key[1]) or None)
        except ValueError as exc:
            raise ConfigError(
                f"constrained tool calls need a fast tokenizer, got {type(tokenizer).__name__}"
            ) from exc
    return per[key]


def llamacpp_ll_tokenizer(vocab: Any, eos: set[int]) -> Any:
    """llguidance's tokenizer for a llama.cpp vocabulary (the caller caches it: about a second)."""
    require("llguidance", "serve")
    import warnings

    from llguidance.llamacpp import lltokenizer_from_vocab

    with (
        warnings.catch_warnings()
    ):  # it reads each token's attributes with a call llama-cpp-python deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        return lltokenizer_from_vocab(vocab, eos_token=sorted(eos) or None)


# ---------------------------------------------------------------------------------------------------------------
# Token rules


class VocabRules:
    """Token sets of one vocabulary (token id -> its text) for the grammar: opener bans, closing tokens."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)
        self._banned: dict[str, np.ndarray] = {}
        self._loose: dict[str, np.ndarray] = {}
        # Tokens that only close strings, arrays and objects (inside a string: those that start by closing it),
        # and tokens that spell part of the closing tag.
        closing = [i for i, t in enumerate(self.texts) if t and set(t) <= _CLOSERS]
        self.closers = np.array([i for i in closing if self.texts[i][0] != '"'], dtype=np.int64)
        self.string_closers = np.array([i for i in closing if self.texts[i][0] == '"'], dtype=np.int64)
        tag = "\n" + TOOL_CALL_CLOSE
        self.tag_pieces = np.array([i for i, t in enumerate(self.texts) if t and t in tag], dtype=np.int64)

    @staticmethod
    def tail(text: str) -> str:
        """The longest end of `text` that begins `<tool_call>` without completing it ("" if none)."""
        for k in range(min(len(TOOL_CALL_OPEN) - 1, len(text)), 0, -1):
            if text.endswith(TOOL_CALL_OPEN[:k]):
                return text[-k:]
        return ""

    def banned(self, tail: str) -> np.ndarray:
        """Tokens that would complete `<tool_call>` after `tail` (none: no call may open)."""
        if tail not in self._banned:
            ids = [i for i, t in enumerate(self.texts) if TOOL_CALL_OPEN in tail + t]
            self._banned[tail] = np.array(ids, dtype=np.int64)
        return self._banned[tail]

    def loose(self, tail: str) -> np.ndarray:
        """Tokens that would complete `<tool_call>` after `tail` and then write something other than the start of
        a call object (auto: the grammar could not hold the rest)."""
        if tail not in self._loose:
            ids = []
            for i, t in enumerate(self.texts):
                joined = tail + t
                at = joined.find(TOOL_CALL_OPEN)
                if at != -1 and not _AFTER_OPEN.startswith(joined[at + len(TOOL_CALL_OPEN) :]):
                    ids.append(i)
            self._loose[tail] = np.array(ids, dtype=np.int64)
        return self._loose[tail]


_RULES: weakref.WeakKeyDictionary[Any, VocabRules] = weakref.WeakKeyDictionary()


def vocab_rules(vocab: Any) -> VocabRules:
    """The (cached) `VocabRules` of a `runtime.callnames.VocabTexts`."""
    if vocab not in _RULES:
        _RULES[vocab] = VocabRules(vocab.texts)
    return _RULES[vocab]


@dataclass
class _RowGrammar:
    """One row's place in the grammar."""

    matcher: Any = None  # the block (auto) or reply (forced) being matched; None outside one
    fed: int = 0  # the row's token ids the matcher has read
    searched: int = 0  # text before this offset holds no open block (auto)
    blocks: int = 0  # blocks written
    first_block: int = 0  # tokens the first block took (forced: the reserve a second one needs)
    failed: bool = False  # the matcher could not follow the row: unconstrained from then on


class GrammarMask:
    """The grammar's rule for each row's next token, for one `generate` call (per-row matchers from one
    compiled template)."""

    def __init__(
        self, grammar: CallGrammar, ll_tokenizer: Any, rules: VocabRules, eos: set[int], max_new_tokens: int
    ) -> None:
        self.grammar = grammar
        self.rules = rules
        self.eos = np.array(sorted(eos), dtype=np.int64)
        self.max_new_tokens = max_new_tokens
        self.ll = ll_tokenizer
        self.rows: dict[int, _RowGrammar] = {}
        self.template = None
        if grammar.mode != "none":
            import llguidance
            import llguidance.numpy as llnp

            self.template = llguidance.LLMatcher(ll_tokenizer, grammar.lark, log_level=0)
            if self.template.is_error():
                raise ConfigError(f"tool call grammar does not compile: {self.template.get_error()}")
            self.bitmask = llnp.allocate_token_bitmask(1, ll_tokenizer.vocab_size)
            self._fill = llnp.fill_next_token_bitmask

    def _start(self, text: str) -> Any:
        matcher = self.template.deep_copy()
        if text and not matcher.consume_tokens(self.ll.tokenize_str(text)):
            return None
        return matcher

    def _allowed(self, matcher: Any) -> np.ndarray:
        self._fill(matcher, self.bitmask)
        bits = np.unpackbits(self.bitmask[0].view(np.uint8), bitorder="little")[: self.ll.vocab_size]
        return np.flatnonzero(bits).astype(np.int64)

    def rule(self, row: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(only these ids, or None: free) and (never these ids, or None) for `row`'s next token.

        While a call is held, `row.held` is set, so no inline `[Tool(…)]` call runs inside its JSON; when it ends,
        `row.offset` moves past it, so nothing written inside can become one later."""
        only, banned = self._rule(row)
        if row.held and only is None:
            row.offset = max(row.offset, len(row.text))
        row.held = only is not None
        return only, banned

    def _rule(self, row: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
        grammar = self.grammar
        state = self.rows.setdefault(row.index, _RowGrammar())
        if state.failed:
            return None, None
        if grammar.mode == "none":
            return None, self.rules.banned(VocabRules.tail(row.text))
        if grammar.mode == "forced" and state.matcher is None and not state.blocks:
            state.matcher = self._start(grammar.prime)
            state.fed = len(row.ids)
            if state.matcher is None:
                return self._fail(state, "the prefill does not start a call")
        if grammar.mode == "auto" and state.matcher is None:
            at = row.text.find(TOOL_CALL_OPEN, state.searched)
            if at == -1:
                if state.blocks and not grammar.parallel:
                    return None, self.rules.banned(VocabRules.tail(row.text))
                return None, self.rules.loose(VocabRules.tail(row.text))
            state.matcher = self._start(row.text[at:])
            state.fed = len(row.ids)
            if state.matcher is None:
                return self._fail(state, "the opener's token wrote past the start of a call")
        matcher = state.matcher
        if len(row.ids) > state.fed:
            ok = matcher.consume_tokens(list(row.ids[state.fed :]))
            state.fed = len(row.ids)
            if not ok:
                return self._fail(state, matcher.get_error())
        left = self.max_new_tokens - row.new_tokens
        if grammar.mode == "auto":
            if matcher.is_accepting():  # the block closed: free text again, from its closing tag on
                end = row.text.rfind(TOOL_CALL_CLOSE) + len(TOOL_CALL_CLOSE)
                state.matcher, state.searched, state.blocks = None, end, state.blocks + 1
                return self._rule(row)
            block = row.text[row.text.rfind(TOOL_CALL_OPEN) :]
            return self._closing(self._allowed(matcher), left, block), None
        if matcher.is_accepting():
            state.blocks = max(state.blocks, 1)
            state.first_block = state.first_block or row.new_tokens
            if matcher.is_stopped() or left <= CLOSING_RESERVE + state.first_block:
                return self.eos, None  # no room for another block: the reply ends
        block = grammar.prime + row.text
        return self._closing(self._allowed(matcher), left, block[block.rfind(TOOL_CALL_OPEN) :]), None

    def _closing(self, allowed: np.ndarray, left: int, block: str) -> np.ndarray:
        """Near the end of the budget, the allowed tokens that close something (the string `block`, the call's text
        so far, is in, or else an array, an object or the block), when there are any."""
        if left > CLOSING_RESERVE:
            return allowed
        closers = self.rules.string_closers if _in_string(block) else self.rules.closers
        for pool in (closers, self.rules.tag_pieces):
            both = np.intersect1d(allowed, pool, assume_unique=True)
            if both.size:
                return both
        return allowed

    @staticmethod
    def _fail(state: _RowGrammar, why: str) -> tuple[None, None]:
        logger.warning("tool call grammar stopped holding a row: %s", why)
        state.failed, state.matcher = True, None
        return None, None


def _in_string(text: str) -> bool:
    """Whether JSON text `text` ends inside a string (its quotes counted, escaped ones skipped)."""
    inside = False
    i = 0
    while i < len(text):
        ch = text[i]
        if inside and ch == "\\":
            i += 1
        elif ch == '"':
            inside = not inside
        i += 1
    return inside
