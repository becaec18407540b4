"""Test doubles shared by the tests: one fake causal LM (scripted or policy-driven) with its fake KV cache.

Also `CharTokenizer` (one token per character, for fakes that score text), and the two small builders many tests
need: `tiny_llama_config` (the tiny random Llama the `tiny_lm` fixture and a few hand-made models use) and
`write_jsonl` (a JSONL input file, bad lines included).

The fake LM speaks the decoder's model interface (`toolformer.runtime.decode.generate`): `forward(input_ids,
attention_mask, position_ids, cache, use_cache, logits_to_keep)` returning `.logits` for the last position and a
`.cache` whose `batch_select_indices` drops finished rows. It is not a `PreTrainedModel`, so the decoder keeps its
plain path (no shared-prefix pass).
"""

from __future__ import annotations

import gzip
import json
import string
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

Script = str | list[str]  # a list is encoded piece by piece, so a call's ')' stays its own token
Policy = Callable[[str, str], dict[str, float]]  # (prompt, generated text) -> {full continuation: score}

_LOW = -1e4  # the logit of every token a fake model does not want
_HIGH = 1e4


class FakeCache:
    """Stands in for a KV cache: which row (numbered across the model's whole life) sits in each batch slot.

    Drops rows like transformers' DynamicCache; `selected` keeps every index list it was given.
    """

    def __init__(self, rows: list[int]) -> None:
        self.rows = rows
        self.selected: list[list[int]] = []

    def batch_select_indices(self, index: torch.Tensor) -> None:
        keep = index.tolist()
        self.selected.append(keep)
        self.rows = [self.rows[i] for i in keep]

    def batch_concat(self, other: FakeCache) -> None:
        """Take `other`'s rows after these (rows joining a running batch: `runtime.continuous`)."""
        self.rows = self.rows + other.rows


class FakeLM(torch.nn.Module):
    """A fake causal LM that records everything it is fed; subclasses say which next tokens it likes.

    Rows are numbered in the order the model first sees them, across all its batches (the first batch's rows
    are 0..n-1). Per row it records `fed` (real tokens, the prompt first), `positions` (their position ids),
    `chunks` (real tokens per forward) and `prompts` (the prompt decoded); per batch, `batch_sizes`.
    """

    def __init__(self, tokenizer: Any) -> None:
        super().__init__()
        self.tok = tokenizer
        self.config = SimpleNamespace(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id)
        self.weight = torch.nn.Parameter(torch.zeros(1))  # the decoder reads the device and dtype from it
        self.fed: list[list[int]] = []
        self.positions: list[list[int]] = []
        self.chunks: list[list[int]] = []
        self.prompts: list[str] = []
        self.prompt_lens: list[int] = []
        self.batch_sizes: list[int] = []

    def next_scores(self, row: int, toks: list[int]) -> dict[int, float]:
        """{token: logit} for `row` after it was fed `toks` this step (every other token gets -1e4)."""
        raise NotImplementedError

    def start_row(self, row: int) -> None:
        """Called once per row, right after its prompt is recorded."""

    def generated(self, row: int) -> list[int]:
        """The tokens fed to `row` after its prompt (sampled and forced)."""
        return self.fed[row][self.prompt_lens[row] :]

    def forward(
        self, input_ids, attention_mask, position_ids=None, cache=None, use_cache=True, logits_to_keep=0
    ):
        rows, width = input_ids.shape
        step = attention_mask[:, -width:].bool()
        if cache is None:  # a new batch: every row's whole prompt is in this step
            first = len(self.fed)
            cache = FakeCache(list(range(first, first + rows)))
            self.batch_sizes.append(rows)
            for _ in range(rows):
                self.fed.append([])
                self.positions.append([])
                self.chunks.append([])
        logits = torch.full((rows, 1, self.config.vocab_size), _LOW)
        for b, row in enumerate(cache.rows):
            toks = input_ids[b][step[b]].tolist()
            new_row = row >= len(self.prompts)
            self.fed[row].extend(toks)
            if position_ids is not None:
                self.positions[row].extend(position_ids[b][step[b]].tolist())
            self.chunks[row].append(len(toks))
            if new_row:
                self.prompts.append(self.tok.decode(toks))
                self.prompt_lens.append(len(toks))
                self.start_row(row)
            if toks:  # a row waiting for its tool feeds nothing and is not sampled
                for token, score in self.next_scores(row, toks if not new_row else []).items():
                    logits[b, 0, token] = score
        return SimpleNamespace(logits=logits, cache=cache)


class ScriptedLM(FakeLM):
    """A fake LM whose rows each write a fixed script token by token, then EOS, whatever is fed in between.

    `scripts` is either one script per row (token ids, or text), or `choose(prompt) -> text` picking each row's
    script from its prompt. A row takes its next script token once per step in which it was fed something: the
    sampled token and the tool result forced after it come in one step, so a forced result never uses up a
    scripted token (the script goes on after ")" as a real model would after the forced " → 42]").
    """

    def __init__(
        self, tokenizer: Any, scripts: Sequence[list[int] | Script] | Callable[[str], Script]
    ) -> None:
        super().__init__(tokenizer)
        self.source = scripts
        self.scripts: list[list[int]] = []
        self.cursor: list[int] = []

    def encode(self, script: list[int] | Script) -> list[int]:
        if isinstance(script, str):
            script = [script]
        if all(isinstance(t, int) for t in script):
            return list(script)  # type: ignore[arg-type]
        return [t for piece in script for t in self.tok.encode(piece, add_special_tokens=False)]

    def start_row(self, row: int) -> None:
        source = self.source
        script = source(self.prompts[row]) if callable(source) else source[row]
        self.scripts.append(self.encode(script))
        self.cursor.append(0)

    def next_scores(self, row: int, toks: list[int]) -> dict[int, float]:
        script = self.scripts[row]
        if toks:  # not the prompt: the row was fed what it wrote last (and any forced result)
            self.cursor[row] += 1
        k = self.cursor[row]
        return {script[k] if k < len(script) else self.config.eos_token_id: _HIGH}


class PacedLM(ScriptedLM):
    """`ScriptedLM` that takes `delay` s per forward pass and records each pass's batch size in `sizes`."""

    def __init__(self, tokenizer: Any, choose: Any, delay: float) -> None:
        super().__init__(tokenizer, choose)
        self.delay = delay
        self.sizes: list[int] = []

    def forward(self, input_ids, attention_mask, position_ids, cache=None, use_cache=True, logits_to_keep=0):
        time.sleep(self.delay)
        self.sizes.append(input_ids.shape[0])
        return super().forward(input_ids, attention_mask, position_ids, cache, use_cache, logits_to_keep)


class PolicyLM(FakeLM):
    """A fake LM ruled by `policy(prompt, generated) -> {full continuation: score}`: the next token of every
    continuation that extends the text generated so far gets that score, end-of-text 0, everything else -1e4.
    """

    def __init__(self, tokenizer: Any, policy: Policy) -> None:
        super().__init__(tokenizer)
        self.policy = policy

    def next_scores(self, row: int, toks: list[int]) -> dict[int, float]:
        gen = self.tok.decode(self.generated(row), skip_special_tokens=True)
        scores: dict[int, float] = {self.config.eos_token_id: 0.0}
        for cont, value in self.policy(self.prompts[row], gen).items():
            if cont.startswith(gen) and len(cont) > len(gen):
                nxt = self.tok.encode(cont[len(gen) :], add_special_tokens=False)[0]
                scores[nxt] = max(scores.get(nxt, _LOW), value)
        return scores


class CharTokenizer:
    """One token per character (ASCII letters, digits, punctuation, space, newline, "→"); id 0 is BOS, 1 is
    EOS and pad. `is_fast=True` gives the offset mapping a fast tokenizer gives; `False` plays a slow one."""

    ALPHABET = string.ascii_letters + string.digits + string.punctuation + " \n→"
    bos_token_id = 0
    eos_token_id = 1
    pad_token_id = 1

    def __init__(self, is_fast: bool = True) -> None:
        self.is_fast = is_fast
        self.vocab = {c: k + 2 for k, c in enumerate(self.ALPHABET)}

    def __len__(self) -> int:
        return len(self.vocab) + 2

    def ids(self, text: str) -> list[int]:
        return [self.vocab[c] for c in text]

    def __call__(
        self, text: str | list[str], add_special_tokens: bool = False, return_offsets_mapping: bool = False
    ) -> dict[str, Any]:
        texts = [text] if isinstance(text, str) else text
        out: dict[str, Any] = {"input_ids": [self.ids(t) for t in texts]}
        if return_offsets_mapping:
            if not self.is_fast:
                raise NotImplementedError("return_offsets_mapping needs a fast tokenizer")
            out["offset_mapping"] = [[(k, k + 1) for k in range(len(t))] for t in texts]
        return {k: v[0] for k, v in out.items()} if isinstance(text, str) else out


def tiny_llama_config(tokenizer: Any, **overrides: Any) -> Any:
    """The config of a tiny random Llama over `tokenizer`'s vocabulary (2 layers, hidden 64, 4 heads unless
    `overrides` say otherwise), its special tokens taken from the tokenizer."""
    from transformers import LlamaConfig

    special = {f"{name}_token_id": getattr(tokenizer, f"{name}_token_id") for name in ("bos", "eos", "pad")}
    shape = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
    rest = {"num_key_value_heads": 4, "max_position_embeddings": 2048, "tie_word_embeddings": True}
    return LlamaConfig(**({"vocab_size": len(tokenizer)} | shape | rest | special | overrides))


def write_jsonl(path: Path, rows: Sequence[Any], gz: bool = False) -> Path:
    """Write `rows` one a line: a dict as JSON, a str as it is (an empty or broken line). Returns `path`.

    Makes the parent folder; `gz=True` gzips the file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def drain(decoder: Any, limit: int = 500) -> None:
    """Tick a `runtime.continuous.SlotDecoder` until every row it holds has ended."""
    for _ in range(limit):
        if not decoder.tick() and not decoder.joining:
            return
    raise AssertionError("the decoder did not finish")
