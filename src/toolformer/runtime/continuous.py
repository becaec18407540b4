"""Continuous batching on transformers: rows join the running decode between steps and leave when done.

`ContinuousDecoder.add(prompt, config)` queues a row (its own config, chooser, random stream and event callback)
and returns a future of its `Generation`; each `tick()` first prefills the rows added since the last step in one
forward pass of their own (a long prompt never widens the running rows' step), joins their KV cache to the
running one (`runtime.kvrows`: left-padded, masked), then runs one round of `runtime.decode`'s batch: one forward
pass over every row that has something to feed, tool calls on threads, so a row waiting on its tool stalls no
other row. Finished and cancelled rows leave (their cache rows and the positions nobody attends to any more are
dropped) and their futures resolve.

Prompts that open alike (a server's chat template and few-shot turns) reuse one encoded prefix: the first prompt's
KV is kept, and a later prompt that shares 16 or more of its leading tokens starts from a copy of that much.

Greedy rows write the same tokens they would write alone (`generate` on that one prompt), up to float rounding of
a differently shaped forward pass. Not thread-safe: one thread (the server's batcher) calls `add` and `tick`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from toolformer.calls import Call
from toolformer.runtime import kvrows
from toolformer.runtime.decode import (
    MIN_SHARED_PREFIX,
    Rounds,
    _Batch,
    _BatchRow,
    _can_share_prefix,
    _eos_ids,
    _shared_prefix_len,
    make_chooser,
    pad_id_of,
)
from toolformer.runtime.results import DecodeConfig, Event, Generation
from toolformer.runtime.rows import RowSetup
from toolformer.tools import ToolOutput, ToolRegistry

TOOL_THREADS = 32  # tool calls running at once across all rows


@dataclass
class _LiveRow(_BatchRow):
    chooser: Any = None
    is_cancelled: Callable[[], bool] = field(default=lambda: False)
    future: cf.Future[Generation] = field(default_factory=cf.Future)
    started: float = 0.0
    seq: int = -1  # llama.cpp: the sequence id (slot) holding its KV cells


class SlotDecoder(Rounds):
    """Rows of many requests decoding together, `add`ed between `tick`s; the engine's part is a subclass's:
    `_chooser(config)`, `_join(rows)`, `step()`, `drop_finished()`, `_tidy()` (after rows left) and `_reset()`.
    No torch here: `runtime.llamaslots` is the llama.cpp engine."""

    def _init_slots(self, tokenizer: Any, tools: ToolRegistry | None, eos: set[int], pad_id: int) -> None:
        self.tokenizer = tokenizer
        self.tools = tools if tools is not None else ToolRegistry()
        self.eos = eos
        self.pad_id = pad_id
        self.rows: dict[int, _LiveRow] = {}  # keyed by row index, as `active` is
        self.active: list[int] = []
        self.joining: list[_LiveRow] = []
        self.executor = cf.ThreadPoolExecutor(max_workers=TOOL_THREADS, thread_name_prefix="tool")
        self._next = 0

    @property
    def size_now(self) -> int:
        """Rows decoding or about to join."""
        return len(self.active) + len(self.joining)

    def add(
        self,
        prompt: str,
        config: DecodeConfig,
        *,
        on_event: Callable[[Event], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> cf.Future[Generation]:
        """Queue `prompt` to join at the next `tick`; its events carry its row index, its future its result."""
        setup = RowSetup(self.tokenizer, config, self.eos, on_event)
        row = _LiveRow(setup, self._next, prompt, setup.encode(prompt) or [self.pad_id])
        row.queue = list(row.prompt_ids)
        row.chooser = self._chooser(config)  # each row its own random stream: its sample is its own
        row.is_cancelled = cancelled or (lambda: False)
        row.started = time.perf_counter()
        self._next += 1
        self.joining.append(row)
        return row.future

    def tick(self, poll: float | None = 0.01) -> int:
        """Join the queued rows, then one decoding round; resolves the futures of rows that ended. Returns the
        rows left. With every row waiting on its tool, waits up to `poll` s for one instead of decoding."""
        try:
            with self._no_grad():
                if self.joining:
                    joining, self.joining = self.joining, []
                    self._join(joining)
                if self.active:
                    self.advance(self._choose, self._run_call, self._cancelled, poll)
        except BaseException as exc:  # every row gets the failure rather than hanging
            self._fail(exc)
            raise
        self._settle()
        return len(self.active)

    def close(self, exc: BaseException | None = None) -> None:
        """Fail what is left (with `exc`) and stop the tool threads."""
        self._fail(exc or RuntimeError("the decoder was closed"))
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _chooser(self, config: DecodeConfig) -> Any:
        raise NotImplementedError

    def _join(self, joining: list[_LiveRow]) -> None:
        raise NotImplementedError

    def _tidy(self) -> None:
        """Free what rows that left held."""

    def _reset(self) -> None:
        """Forget every row's cache."""

    def _no_grad(self) -> Any:
        return contextlib.nullcontext()

    def _choose(self, logits: Any, row: _LiveRow) -> int:
        return int(row.chooser(logits, row))

    def _run_call(self, row: _LiveRow, call: Call) -> cf.Future[ToolOutput]:
        return self.executor.submit(self.tools.run, call, row.setup.config.tool_timeout)

    def _cancelled(self, key: int) -> bool:
        return self.rows[key].is_cancelled()

    def _settle(self) -> None:
        """Resolve the futures of rows that left, and free what nobody needs any more."""
        active = set(self.active)
        now = time.perf_counter()
        for key in [k for k in self.rows if k not in active]:
            row = self.rows.pop(key)
            if row.finish is None:  # dropped without an ending: cannot happen, but never hang a caller
                row.end("cancelled")
            row.future.set_result(row.generation(now - row.started))
        self._tidy()

    def _fail(self, exc: BaseException) -> None:
        rows = [*self.rows.values(), *self.joining]
        self.rows, self.joining, self.active = {}, [], []
        self._reset()
        for row in rows:
            if row.pending is not None:
                row.pending[2].cancel()
            if not row.future.done():
                row.future.set_exception(exc)


class ContinuousDecoder(SlotDecoder, _Batch):
    """Continuous batching on a transformers model (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        tools: ToolRegistry | None = None,
        autocast_bf16: bool = False,
    ) -> None:
        eos = _eos_ids(model, tokenizer)
        pad_id = pad_id_of(tokenizer, eos)
        _Batch.__init__(self, model, [], pad_id, autocast_bf16)
        self._init_slots(tokenizer, tools, eos, pad_id)
        self.size = min(len(tokenizer), int(model.config.vocab_size))
        self.prefix: tuple[list[int], Any] | None = None  # (token ids, their one-row cache)
        self.share = _can_share_prefix(model, 2)
        self._reset()

    def _no_grad(self) -> Any:
        return self.torch.inference_mode()

    def _chooser(self, config: DecodeConfig) -> Any:
        gen = self.torch.Generator(device="cpu")
        if config.seed is not None:
            gen.manual_seed(config.seed)
        return make_chooser(self.tokenizer, self.size, self.eos, self.tools, config, gen)

    def _reset(self) -> None:
        self.cache = None
        self.mask = self.torch.zeros((0, 0), dtype=self.torch.long, device=self.device)

    def _tidy(self) -> None:
        if not self.active:
            self._reset()
        elif self.cache is not None:
            self.cache, self.mask = kvrows.keep_columns(self.cache, self.mask)

    def _prefix_for(self, queues: list[list[int]]) -> int:
        """How many leading tokens of every queue the kept prefix covers, keeping the prefix that serves them
        (a new one when the kept one covers under MIN_SHARED_PREFIX); 0: encode the prompts whole."""
        if not self.share:
            return 0
        if self.prefix is not None:
            ids = self.prefix[0]
            k = min(common_prefix(ids, q) for q in queues)
            if k >= MIN_SHARED_PREFIX:
                return k
        shared = _shared_prefix_len(queues) if len(queues) > 1 else len(queues[0]) - 1
        if shared < MIN_SHARED_PREFIX:
            return 0
        ids = queues[0][:shared]
        torch = self.torch
        self.cache = None
        t = torch.tensor([ids], dtype=torch.long, device=self.device)
        self._forward(t, torch.ones_like(t), torch.arange(shared, device=self.device)[None])
        self.prefix = (ids, self.cache)
        return shared

    def _join(self, joining: list[_LiveRow]) -> None:
        """Prefill `joining` in a forward pass of their own, then append their cache rows to the running ones."""
        torch = self.torch
        cache, mask, active = self.cache, self.mask, self.active
        shared = self._prefix_for([r.queue for r in joining])
        if shared:
            assert self.prefix is not None
            self.cache = kvrows.prefix_copy(self.prefix[1], shared, len(joining))
            for row in joining:
                row.queue = row.queue[shared:]
                row.pos = shared
        else:
            self.cache = None
        self.mask = torch.ones((len(joining), shared), dtype=torch.long, device=self.device)
        for row in joining:
            self.rows[row.index] = row
        self.active = [r.index for r in joining]
        last, fed = self.step()
        kvrows.check_cache(self.cache)
        if active:
            self.cache, self.mask = kvrows.join(cache, mask, self.cache, self.mask)
        self.active = active + self.active
        self.accept(last, fed, joining, self._choose, self._run_call)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Leading tokens `a` and `b` share, keeping at least one token of `b` to feed."""
    limit = min(len(a), len(b) - 1)
    k = 0
    while k < limit and a[k] == b[k]:
        k += 1
    return k
