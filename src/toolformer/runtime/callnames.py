"""Constrain decoding so that a call can only name a loaded tool: after "[", only tokens spelling a tool's `Name(`.

Shared by both decoding backends. The rules work on token texts (what each token adds to the decoded text), so
they hold for tokens that carry the bracket with other characters (" [", '["', a "[Calc" token):

- outside a call, a token holding "[" is allowed only when the text after its first "[" could still become, or
  already is, some `Name(` of the loaded tools (with no tools loaded, no token may open a call);
- while a call's name is being written (the text after "[" is `p`), a token is allowed only when `p` plus its text
  is a prefix of some `Name(`, or completes one and goes on into the arguments with the text still a call;
- inside a call's arguments nothing is constrained; after its ")" a "[" is held to the first rule, since it would
  end that call and open another.

Token texts are computed once per tokenizer, and each allowed set once per (tokenizer, tool names, name prefix).
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from toolformer.calls import find_calls

_MAX_CHAR = "\U0010ffff"  # sorts after every character: [s, s + _MAX_CHAR) holds the strings starting with s


@dataclass(frozen=True)
class TokenRule:
    """What the next token may be: only `ids` (`only` True) or anything but `ids` (`only` False)."""

    only: bool
    ids: np.ndarray  # int64 token ids, sorted


class VocabTexts:
    """Every token's text, indexed for the prefix look-ups of `CallNames` (one per tokenizer)."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)
        self.by_text: dict[str, list[int]] = {}
        for i, t in enumerate(self.texts):
            if t:  # a token that adds no text (a special token) never spells a name
                self.by_text.setdefault(t, []).append(i)
        order = sorted(self.by_text)
        self._sorted = order
        self._sorted_ids = [self.by_text[t] for t in order]
        self.bracket_ids = [i for i, t in enumerate(self.texts) if "[" in t]
        self._names: dict[tuple[str, ...], CallNames] = {}

    def __len__(self) -> int:
        return len(self.texts)

    def starting_with(self, prefix: str) -> list[int]:
        """Ids of the tokens whose text starts with `prefix`."""
        lo = bisect.bisect_left(self._sorted, prefix)
        hi = bisect.bisect_left(self._sorted, prefix + _MAX_CHAR)
        return [i for ids in self._sorted_ids[lo:hi] for i in ids]

    def call_names(self, names: Iterable[str]) -> CallNames:
        """The (cached) constraint for these tool names."""
        key = tuple(sorted(set(names)))
        found = self._names.get(key)
        if found is None:
            found = self._names[key] = CallNames(self, key)
        return found


class CallNames:
    """The token rules for one vocabulary and one set of tool names (see the module docstring)."""

    def __init__(self, vocab: VocabTexts, names: Sequence[str]) -> None:
        self.vocab = vocab
        self.names = tuple(names)
        self.targets = tuple(f"{n}(" for n in self.names)
        bad = [i for i in vocab.bracket_ids if not self.fits(vocab.texts[i].split("[", 1)[1])]
        self.opening = TokenRule(False, np.array(bad, dtype=np.int64))
        self._in_name: dict[str, TokenRule | None] = {}

    def fits(self, after: str) -> bool:
        """Whether `after`, the text following a call's "[", is on the way to some `Name(`, or past one and still a
        call (a token like "()))" would end it as plain text: a wasted call, so it is not allowed either)."""
        if not after:
            return bool(self.targets)
        if any(t.startswith(after) for t in self.targets):
            return True
        return any(after.startswith(t) for t in self.targets) and _still_a_call("[" + after)

    def in_name(self, prefix: str) -> TokenRule | None:
        """The rule while a call's name reads `prefix` so far; None if no loaded name starts with it (the text got
        there some other way, e.g. a prompt ending in "[": nothing is constrained rather than everything)."""
        if prefix not in self._in_name:
            ids: set[int] = set()
            for target in self.targets:
                if not target.startswith(prefix):
                    continue
                rest = target[len(prefix) :]
                for j in range(1, len(rest) + 1):  # tokens that spell the next part of the name
                    ids.update(self.vocab.by_text.get(rest[:j], ()))
                # Tokens that finish `Name(` and go on into the arguments, leaving a call.
                head = "[" + prefix
                ids.update(
                    i for i in self.vocab.starting_with(rest) if _still_a_call(head + self.vocab.texts[i])
                )
            self._in_name[prefix] = TokenRule(True, np.array(sorted(ids), dtype=np.int64)) if ids else None
        return self._in_name[prefix]

    def rule(self, text: str) -> TokenRule | None:
        """The rule for the token after `text` (the generated text where calls may start); None: no constraint."""
        return self.state(text)[0]

    def state(self, text: str) -> tuple[TokenRule | None, bool]:
        """`rule(text)`, and whether `text` ends inside a call (its name, arguments, or after its ")")."""
        spans = find_calls(text) if text else []
        last = spans[-1] if spans else None
        if last is None or last.complete:
            return self.opening, False
        if last.stage == "name":
            return self.in_name(last.call.name), True
        if last.stage == "args":
            return None, True  # arguments are free text (a list in them opens no call)
        # After a call's ")" or arrow, a "[" would end that call and open another: held to the same rule.
        return self.opening, True


def _still_a_call(text: str) -> bool:
    """Whether `text`, which starts with "[", reads as a call from its start (complete or still being written)."""
    spans = find_calls(text)
    return bool(spans) and spans[0].start == 0


# Token texts of transformers tokenizers, one per tokenizer object (weakly held where the tokenizer allows it).
_HF_TEXTS: weakref.WeakKeyDictionary[Any, dict[int, VocabTexts]] = weakref.WeakKeyDictionary()
_HF_TEXTS_BY_ID: dict[int, dict[int, VocabTexts]] = {}


def hf_vocab_texts(tokenizer: Any, size: int) -> VocabTexts:
    """The texts of a transformers tokenizer's first `size` tokens (cached per tokenizer).

    Each token is decoded after an anchor token and the anchor's text removed, so a token's leading space is
    kept as it reads in running text (tokenizers that drop a sequence's first space do not drop it here).
    """
    try:
        per_size = _HF_TEXTS.setdefault(tokenizer, {})
    except TypeError:  # not weak-referenceable or not hashable
        per_size = _HF_TEXTS_BY_ID.setdefault(id(tokenizer), {})
    if size not in per_size:
        anchor = tokenizer.encode("a", add_special_tokens=False)
        if len(anchor) == 1:
            head = tokenizer.decode(anchor, skip_special_tokens=True)
            pairs = tokenizer.batch_decode([[anchor[0], i] for i in range(size)], skip_special_tokens=True)
            texts = [t[len(head) :] if t.startswith(head) else t for t in pairs]
        else:
            texts = tokenizer.batch_decode([[i] for i in range(size)], skip_special_tokens=True)
        per_size[size] = VocabTexts(texts)
    return per_size[size]
