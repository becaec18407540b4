"""Batched llama.cpp: many sequences in one `llama_decode`, each row in its own slot (sequence id) of the KV cache.

`LlamaSlotDecoder` is `runtime.continuous`'s continuous batching on a GGUF model: rows `add`ed between `tick`s
take a free slot, and every step puts, for each row with something to feed, its tokens (a prompt, the sampled
token, or a tool's result and "]") into one `llama_batch` with the row's sequence id and positions, asking logits
only for each row's last token. A finished row's cells are removed (`llama_memory_seq_rm`) and its slot is free.
Tokens are chosen and calls run by the same `runtime.choose`/`runtime.rows` logic as the one-at-a-time backend
(`runtime.llamacpp`), tools on threads, so a row waiting on its tool stalls no other row.

Prompts that open alike reuse one prefix, decoded once into a spare sequence (what the prompts joining together
share; all but the last token of a lone one): a prompt sharing 16 or more leading tokens with it starts from a
copy of those cells (`llama_memory_seq_cp`, which shares the cells in a unified cache rather than copying them).

One context of `slots` x `slot_ctx` cells (unified: a slot may use more while others use less) on the loaded
model's weights. A row whose next tokens would pass `slot_ctx` ends with finish_reason "length".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from toolformer.errors import ConfigError
from toolformer.runtime.continuous import SlotDecoder, _LiveRow, common_prefix
from toolformer.runtime.decode import MIN_SHARED_PREFIX, _shared_prefix_len
from toolformer.runtime.llamacpp import LlamaCppModel, llama_chooser
from toolformer.runtime.results import DecodeConfig
from toolformer.tools import ToolRegistry

DEFAULT_SLOT_CTX = 2048


class LlamaSlotDecoder(SlotDecoder):
    """Up to `slots` rows decoding together on llama.cpp (see the module docstring)."""

    def __init__(
        self,
        model: LlamaCppModel,
        tools: ToolRegistry | None = None,
        slots: int = 32,
        slot_ctx: int = DEFAULT_SLOT_CTX,
        n_batch: int = 512,
    ) -> None:
        import llama_cpp

        tok = model.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        self._init_slots(tok, tools, set(tok.eog_ids), pad)
        self.model = model
        self.llama = llama_cpp
        self.slots = max(1, slots)
        self.slot_ctx = slot_ctx
        self.n_batch = n_batch
        base = model.llm.context_params
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.slots * slot_ctx
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = self.slots + 1  # and one spare sequence holding the shared prefix
        params.kv_unified = True
        params.n_threads, params.n_threads_batch = base.n_threads, base.n_threads_batch
        params.type_k, params.type_v = base.type_k, base.type_v
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(model.llm.model, params)
        if not self.ctx:
            raise ConfigError(f"llama.cpp could not make a context of {self.slots} slots x {slot_ctx} tokens")
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.free = list(range(self.slots))
        self.prefix_seq = self.slots
        self.prefix: list[int] = []  # the tokens the spare sequence holds
        self.n_vocab = model.n_vocab
        self._closed = False

    def _chooser(self, config: DecodeConfig) -> Any:
        return llama_chooser(self.model, self.tools, config, np.random.default_rng(config.seed))

    def _join(self, joining: list[_LiveRow]) -> None:
        """Give each row a free slot and the shared prefix's cells (made now from these prompts when none that
        serves them is kept); the rest of its prompt goes into the next step with everyone else's tokens."""
        rm, cp = self.llama.llama_memory_seq_rm, self.llama.llama_memory_seq_cp
        placed = []
        for row in joining:
            if not self.free:  # the batcher keeps to `slots`; a caller that does not waits for a free slot
                self.joining.append(row)
                continue
            row.seq = self.free.pop(0)
            rm(self.mem, row.seq, -1, -1)
            if len(row.queue) >= self.slot_ctx:
                row.end("length")
            placed.append(row)
        self._share_prefix([r.queue for r in placed if r.finish is None])
        for row in placed:
            k = common_prefix(self.prefix, row.queue) if self.prefix else 0
            if k >= MIN_SHARED_PREFIX and row.finish is None:
                cp(self.mem, self.prefix_seq, row.seq, 0, k)
                row.queue = row.queue[k:]
                row.pos = k
            self.rows[row.index] = row
            self.active.append(row.index)
        self.drop_finished()

    def _share_prefix(self, queues: list[list[int]]) -> None:
        """Keep a new shared prefix in the spare sequence when the kept one covers under MIN_SHARED_PREFIX tokens
        of some joining prompt: what they all share (all of a lone prompt but its last token)."""
        if not queues or (
            self.prefix and min(common_prefix(self.prefix, q) for q in queues) >= MIN_SHARED_PREFIX
        ):
            return
        shared = _shared_prefix_len(queues) if len(queues) > 1 else len(queues[0]) - 1
        if shared < MIN_SHARED_PREFIX:
            return
        ids = queues[0][:shared]
        self.llama.llama_memory_seq_rm(self.mem, self.prefix_seq, -1, -1)
        self._decode([(-1, t, j, self.prefix_seq, False) for j, t in enumerate(ids)])
        self.prefix = list(ids)

    def step(self) -> tuple[list[Any], list[int]]:
        """Every active row's queued tokens in one batch (split at `n_batch` tokens): the last logits of each
        row whose queue it emptied, in slot order, and their keys."""
        live = [self.rows[i] for i in self.active]
        fed: list[int] = []
        entries: list[tuple[int, int, int, int, bool]] = []  # (slot in live, token, pos, seq, wants logits)
        for b, row in enumerate(live):
            if row.pending is not None or not row.queue:
                continue
            if row.pos + len(row.queue) > self.slot_ctx:  # no room left in its slot
                row.queue = []
                row.end("length")
                continue
            n = len(row.queue)
            entries += [(b, t, row.pos + j, row.seq, j == n - 1) for j, t in enumerate(row.queue)]
            row.pos += n
            row.queue = []
            fed.append(row.index)
        return self._decode(entries, len(live)), fed

    def _decode(self, entries: list[tuple[int, int, int, int, bool]], slots: int = 0) -> list[Any]:
        """`llama_decode` the (slot, token, position, sequence, wants logits) entries, `n_batch` at a time; the
        logits asked for, by slot."""
        llama, batch = self.llama, self.batch
        last: list[Any] = [None] * slots
        for start in range(0, len(entries), self.n_batch):
            chunk = entries[start : start + self.n_batch]
            for k, (_, token, pos, seq, logits) in enumerate(chunk):
                batch.token[k] = token
                batch.pos[k] = pos
                batch.n_seq_id[k] = 1
                batch.seq_id[k][0] = seq
                batch.logits[k] = logits
            batch.n_tokens = len(chunk)
            status = llama.llama_decode(self.ctx, batch)
            if status != 0:
                raise ConfigError(f"llama_decode failed with status {status} ({len(chunk)} tokens)")
            for k, (b, *_, logits) in enumerate(chunk):
                if logits:
                    ptr = llama.llama_get_logits_ith(self.ctx, k)
                    last[b] = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()
        return last

    def drop_finished(self) -> None:
        """Finished rows leave: their cells are removed and their slots are free."""
        keep = []
        for i in self.active:
            row = self.rows[i]
            if row.finish is None:
                keep.append(i)
            else:
                self.llama.llama_memory_seq_rm(self.mem, row.seq, -1, -1)
                self.free.append(row.seq)
        self.active = keep

    def _reset(self) -> None:
        if not getattr(self, "_closed", True):
            self.llama.llama_memory_clear(self.mem, True)
            self.free = list(range(self.slots))
            self.prefix = []

    def close(self, exc: BaseException | None = None) -> None:
        super().close(exc)
        if not self._closed:
            self._closed = True
            self.llama.llama_batch_free(self.batch)
            self.llama.llama_free(self.ctx)
