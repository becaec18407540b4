"""Choose a row's next token from its logits, the same rules for both backends: calls masked, held or triggered.

The rules, in order: inside a JSON tool call that a grammar holds (`runtime.grammar`, when the config has one) only
the grammar's tokens; with calls off (`disabled`) or used up (`max_calls`) every token holding "[" is masked; else
the call-name constraint of `runtime.callnames` applies, and outside a call a "[" among the top `trigger_top_k`
tokens is taken at once (at most `max_calls` times a row); otherwise greedy or top-p sampling. The arithmetic is
the backend's own (`TorchLogits` for transformers, `NumpyLogits` for llama.cpp), so each backend keeps its exact
tie-breaking and its random stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from toolformer.runtime.callnames import CallNames
from toolformer.runtime.results import DecodeConfig


@dataclass(frozen=True)
class CallTokens:
    """A vocabulary's call tokens: those whose text holds "[" (masked when calls are off) and those that are "["
    alone, give or take white space (what the top-k trigger opens a call with)."""

    bracket: np.ndarray  # int64 ids
    call_start: np.ndarray  # int64 ids

    @classmethod
    def from_texts(cls, texts: dict[int, str]) -> CallTokens:
        """From the texts of the tokens that hold "[" (token id -> its text), in id order."""
        has = list(texts)
        starts = [i for i in has if texts[i].strip() == "["]
        return cls(np.array(has, dtype=np.int64), np.array(starts or has[:1], dtype=np.int64))


_HF_CALL_TOKENS: dict[int, CallTokens] = {}


def hf_call_tokens(tokenizer: Any, vocab_size: int) -> CallTokens:
    """The call tokens of a transformers tokenizer's first `vocab_size` ids (cached per tokenizer object)."""
    key = id(tokenizer)
    if key not in _HF_CALL_TOKENS:
        pieces = tokenizer.convert_ids_to_tokens(list(range(min(len(tokenizer), vocab_size))))
        texts = {
            i: tokenizer.convert_tokens_to_string([p])
            for i, p in enumerate(pieces)
            if p is not None and "[" in p
        }
        _HF_CALL_TOKENS[key] = CallTokens.from_texts(texts)
    return _HF_CALL_TOKENS[key]


class RowState(Protocol):
    """What the chooser reads of a row (`runtime.rows.Row`), and its `triggers` count, which it updates."""

    @property
    def text(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def calls(self) -> Sequence[Any]: ...
    @property
    def ids(self) -> Sequence[int]: ...
    @property
    def index(self) -> int: ...
    @property
    def new_tokens(self) -> int: ...

    triggers: int


class Grammar(Protocol):
    """A grammar's rule for a row's next token (`runtime.grammar.GrammarMask`): (only these ids, or None) and
    (never these ids, or None). It also sets the row's `held` (inside a JSON call) and moves its `offset`."""

    def rule(self, row: Any) -> tuple[np.ndarray | None, np.ndarray | None]: ...


class Logits(Protocol):
    """One backend's operations on a vocabulary-sized logits vector."""

    def prepare(self, logits: Any) -> Any: ...
    def block(self, logits: Any, ids: np.ndarray) -> Any: ...
    def keep_only(self, logits: Any, ids: np.ndarray) -> Any: ...
    def first_in_top(self, logits: Any, k: int, ids: np.ndarray) -> int | None: ...
    def pick(self, logits: Any) -> int: ...


class TokenChooser:
    """The next token for a row, by the rules in the module docstring."""

    def __init__(
        self,
        config: DecodeConfig,
        tokens: CallTokens,
        names: CallNames,
        ops: Logits,
        grammar: Grammar | None = None,
    ) -> None:
        self.config = config
        self.tokens = tokens
        self.names = names
        self.ops = ops
        self.grammar = grammar

    def __call__(self, logits: Any, row: RowState) -> int:
        config, ops = self.config, self.ops
        logits = ops.prepare(logits)
        if self.grammar is not None:
            only, banned = self.grammar.rule(row)
            if only is not None:  # inside a JSON call: the grammar alone decides
                return ops.pick(ops.keep_only(logits, only))
            if banned is not None and banned.size:
                logits = ops.block(logits, banned)
        if config.disabled or len(row.calls) >= config.max_calls:
            logits = ops.block(logits, self.tokens.bracket)
        else:
            # A call can only name a loaded tool: after "[" only tokens spelling one of their `Name(`.
            rule, in_call = self.names.state(row.text[row.offset :])
            if rule is not None and rule.ids.size:
                logits = ops.keep_only(logits, rule.ids) if rule.only else ops.block(logits, rule.ids)
            if config.trigger_top_k and not in_call and row.triggers < config.max_calls:
                # A forced "[" that the model does not turn into a call still uses up one of the row's calls;
                # otherwise an untrained model is forced into "[" after "[" and writes junk.
                hit = ops.first_in_top(logits, config.trigger_top_k, self.tokens.call_start)
                if hit is not None:
                    row.triggers += 1
                    return hit
        return ops.pick(logits)


class TorchLogits:
    """`Logits` on a torch vector (transformers backend); sampling draws from `generator`."""

    def __init__(self, config: DecodeConfig, generator: Any) -> None:
        import torch

        self.torch = torch
        self.config = config
        self.generator = generator

    def prepare(self, logits: Any) -> Any:
        return logits.float()

    def block(self, logits: Any, ids: np.ndarray) -> Any:
        logits[self.torch.from_numpy(ids)] = float("-inf")
        return logits

    def keep_only(self, logits: Any, ids: np.ndarray) -> Any:
        index = self.torch.from_numpy(ids)
        kept = logits[index]
        logits = self.torch.full_like(logits, float("-inf"))
        logits[index] = kept
        return logits

    def first_in_top(self, logits: Any, k: int, ids: np.ndarray) -> int | None:
        torch = self.torch
        top = torch.topk(logits, min(k, logits.shape[0])).indices
        hits = top[torch.isin(top, torch.from_numpy(ids))]
        hits = hits[torch.isfinite(logits[hits])]  # never a "[" that no loaded name may follow
        return int(hits[0]) if hits.numel() else None

    def pick(self, logits: Any) -> int:
        torch, config = self.torch, self.config
        if not config.do_sample:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / config.temperature, dim=-1)
        if config.top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < config.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
        return int(torch.multinomial(probs, 1, generator=self.generator))


class NumpyLogits:
    """`Logits` on a float32 numpy vector (llama.cpp backend, which owns the array); sampling draws from `rng`."""

    def __init__(self, config: DecodeConfig, rng: np.random.Generator) -> None:
        self.config = config
        self.rng = rng

    def prepare(self, logits: np.ndarray) -> np.ndarray:
        return logits

    def block(self, logits: np.ndarray, ids: np.ndarray) -> np.ndarray:
        logits[ids] = -np.inf
        return logits

    def keep_only(self, logits: np.ndarray, ids: np.ndarray) -> np.ndarray:
        kept = logits[ids]
        logits[:] = -np.inf
        logits[ids] = kept
        return logits

    def first_in_top(self, logits: np.ndarray, k: int, ids: np.ndarray) -> int | None:
        k = min(k, logits.shape[0])
        top = np.argpartition(-logits, k - 1)[:k]
        top = top[np.argsort(-logits[top], kind="stable")]
        hits = top[np.isin(top, ids)]
        hits = hits[np.isfinite(logits[hits])]  # never a "[" that no loaded name may follow
        return int(hits[0]) if hits.size else None

    def pick(self, logits: np.ndarray) -> int:
        config = self.config
        if not config.do_sample:
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / config.temperature
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        if config.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            sorted_p = probs[order]
            keep = np.cumsum(sorted_p) - sorted_p < config.top_p
            probs = np.zeros_like(probs)
            probs[order[keep]] = sorted_p[keep]
            probs /= probs.sum()
        return int(self.rng.choice(probs.shape[0], p=probs))
