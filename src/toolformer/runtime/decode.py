"""Tool-executing decoding on transformers: generate, run a tool when the model writes `[Tool(input) →`, continue on
the same KV cache.

One forward pass per step over the whole batch. Each row feeds its own chunk of tokens per step (one sampled token,
or the tool result plus "]" it is forced to read); chunks are left-padded within the step and the pads are masked
out, so rows never wait on each other and the prompt is never re-encoded. A row whose tool is still running feeds
nothing until the tool returns, while the other rows keep decoding. Prompts of a batch that open with the same
tokens (a few-shot or system prompt) encode that prefix once, and every row starts from a copy of its cache.
A finished row leaves the batch (its cache and mask rows are dropped), and so does a row that `cancelled(row)`
flags before a step (a server's client went away): the other rows decode exactly as they would without it.

What a row does with each token (calls, results, stop strings, streaming) is `runtime.rows`, and how its next
token is chosen (call names held to the loaded tools, the top-k trigger, greedy or top-p) is `runtime.choose`,
both shared with the llama.cpp backend. The config and result types live in `runtime.results` and are importable
from here.
"""

from __future__ import annotations

import concurrent.futures as cf
import inspect
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from toolformer.calls import Call
from toolformer.errors import ConfigError
from toolformer.runtime.callnames import hf_vocab_texts
from toolformer.runtime.choose import TokenChooser, TorchLogits, hf_call_tokens
from toolformer.runtime.results import CallTrace, DecodeConfig, Event, Generation
from toolformer.runtime.rows import Row, RowSetup
from toolformer.tools import ToolOutput, ToolRegistry

__all__ = ["CallTrace", "DecodeConfig", "Event", "Generation", "generate"]

CANCEL_POLL_S = 0.05  # how often rows that all wait on tools are checked for `cancelled`
MIN_SHARED_PREFIX = 16  # tokens: a shorter common prefix is not worth its own forward pass


def _can_share_prefix(model: Any, rows: int) -> bool:
    """Whether a batch may encode its common prompt prefix once: several rows, and a transformers model (its
    DynamicCache can repeat rows; stand-in models in tests keep the plain path)."""
    transformers = sys.modules.get("transformers")
    return rows > 1 and transformers is not None and isinstance(model, transformers.PreTrainedModel)


def _shared_prefix_len(queues: list[list[int]]) -> int:
    """Tokens every prompt starts with, keeping at least one token per row to feed for its first logits; 0 when
    that is under MIN_SHARED_PREFIX."""
    first = queues[0]
    limit = min(len(q) for q in queues) - 1
    k = 0
    while k < limit and all(q[k] == first[k] for q in queues):
        k += 1
    return k if k >= MIN_SHARED_PREFIX else 0


def _cache_kwarg(model: Any) -> str:
    """transformers renamed `past_key_values` to `cache` in 5.x; pass whichever the model takes."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), getattr(model, "config", None), tokenizer):
        eos = getattr(src, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        elif isinstance(eos, (list, tuple)):
            ids.update(int(e) for e in eos)
    return ids


@dataclass
class _BatchRow(Row):
    queue: list[int] = field(default_factory=list)  # tokens to feed at the next step
    pending: tuple[Call, int, cf.Future[ToolOutput]] | None = (
        None  # a call whose tool runs, and its "[" offset
    )
    pos: int = 0  # next position id


class Rounds:
    """The decoding round both batch decoders share (`_Batch` here, `runtime.llamaslots` on llama.cpp): `rows`
    maps keys to rows, `active` lists the keys decoding, in slot order; a subclass provides `step()` (one forward
    pass: the last logits per slot and the keys whose queue it emptied) and `drop_finished()`."""

    rows: Any
    active: list[int]

    def step(self) -> tuple[Any, list[int]]:
        raise NotImplementedError

    def drop_finished(self) -> None:
        raise NotImplementedError

    def accept(
        self,
        last: Any,
        fed: list[int],
        live: list[_BatchRow],
        choose: Callable[[Any, _BatchRow], int],
        run_call: Callable[[_BatchRow, Call], cf.Future[ToolOutput]],
    ) -> None:
        """Choose the next token of every row in `live` (slot `b` has logits `last[b]`) whose queue the step
        emptied; a call it opens starts on `run_call`. Finished rows then leave the batch."""
        for b, row in enumerate(live):
            if row.index in fed and row.pending is None and row.finish is None:
                row.queue, call = row.accept(choose(last[b], row))
                if call is not None:
                    row.pending = (*call, run_call(row, call[0]))
        self.drop_finished()

    def advance(
        self,
        choose: Callable[[Any, _BatchRow], int],
        run_call: Callable[[_BatchRow, Call], cf.Future[ToolOutput]],
        cancelled: Callable[[int], bool] | None = None,
        poll: float | None = None,
    ) -> None:
        """One round: rows that `cancelled(i)` flags leave, finished tool results are queued, then one step and a
        token for each row it fed; when every row waits on its tool, wait for one instead (up to `poll` s)."""
        rows = self.rows
        if cancelled is not None:  # rows whose client went away leave the batch before the next step
            for i in self.active:
                if cancelled(i):
                    _cancel(rows[i])
            self.drop_finished()
            if not self.active:
                return
        live = [rows[i] for i in self.active]
        for row in live:  # tool results that are ready become the next chunk of their row
            if row.pending is not None and row.pending[2].done():
                _take_result(row)
        if all(row.pending is not None for row in live):
            cf.wait([row.pending[2] for row in live], timeout=poll, return_when=cf.FIRST_COMPLETED)
            return
        last, fed = self.step()
        self.accept(last, fed, live, choose, run_call)


class _Batch(Rounds):
    """The unfinished rows on one KV cache: `active` maps batch slots to row indices."""

    def __init__(self, model: Any, rows: list[_BatchRow], pad_id: int, autocast_bf16: bool) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.rows = rows
        self.pad_id = pad_id
        self.autocast_bf16 = autocast_bf16
        self.active = list(range(len(rows)))
        self.cache: Any = None
        self.cache_kw = _cache_kwarg(model)
        self.device = next(model.parameters()).device
        self.mask = torch.zeros((len(rows), 0), dtype=torch.long, device=self.device)

    def _forward(self, ids: Any, mask: Any, pos: Any) -> Any:
        with self.torch.autocast("cpu", dtype=self.torch.bfloat16, enabled=self.autocast_bf16):
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                use_cache=True,
                logits_to_keep=1,
                **{self.cache_kw: self.cache},
            )
        self.cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        return out

    def share_prefix(self) -> None:
        """Rows that open alike (a few-shot or system prompt) encode that prefix once, then copy its cache: a batch
        of B prompts costs one prefix plus B suffixes instead of B whole prompts."""
        torch, rows = self.torch, self.rows
        shared = (
            _shared_prefix_len([r.queue for r in rows]) if _can_share_prefix(self.model, len(rows)) else 0
        )
        if not shared:
            return
        ids = torch.tensor([rows[0].queue[:shared]], dtype=torch.long, device=self.device)
        self._forward(ids, torch.ones_like(ids), torch.arange(shared, device=self.device)[None])
        self.cache.batch_repeat_interleave(len(rows))
        self.mask = torch.ones((len(rows), shared), dtype=torch.long, device=self.device)
        for row in rows:
            row.queue = row.queue[shared:]
            row.pos = shared

    def step(self) -> tuple[Any, list[int]]:
        """Feed every active row's next chunk in one forward pass: (last logits per slot, rows whose queue is now
        empty, whose logits choose their next token)."""
        torch, rows, active = self.torch, self.rows, self.active
        # Chunks are padded to the widest row: on a CPU a decode step is bound by reading the weights, so a few
        # extra positions cost little (feeding results one token per step measured no faster).
        width = max(len(rows[i].queue) for i in active if rows[i].pending is None)
        ids = torch.full((len(active), width), self.pad_id, dtype=torch.long)
        step_mask = torch.zeros((len(active), width), dtype=torch.long)
        pos = torch.zeros((len(active), width), dtype=torch.long)
        fed: list[int] = []
        for b, i in enumerate(active):
            row = rows[i]
            chunk = row.queue[:width] if row.pending is None else []  # a call's tokens go in with its result
            n = len(chunk)
            if n:
                ids[b, width - n :] = torch.tensor(chunk)
                step_mask[b, width - n :] = 1
                pos[b, width - n :] = torch.arange(row.pos, row.pos + n)
                row.pos += n
                row.queue = row.queue[n:]
                if not row.queue:
                    fed.append(i)
            pos[b, : width - n] = row.pos
        self.mask = torch.cat([self.mask, step_mask.to(self.device)], dim=1)
        out = self._forward(ids.to(self.device), self.mask, pos.to(self.device))
        return out.logits[:, -1, :].cpu(), fed

    def drop_finished(self) -> None:
        """Take finished rows out of the batch: their slots, their mask rows and their KV cache rows."""
        keep = [b for b, i in enumerate(self.active) if self.rows[i].finish is None]
        if len(keep) == len(self.active):
            return
        self.active = [self.active[b] for b in keep]
        if not self.active:
            return
        index = self.torch.tensor(keep, dtype=self.torch.long, device=self.device)
        self.mask = self.mask[index]
        if self.cache is None:  # nothing encoded yet
            return
        if not hasattr(
            self.cache, "batch_select_indices"
        ):  # a cache we cannot shrink: stop rather than mis-align
            raise ConfigError(f"model cache {type(self.cache).__name__} cannot drop finished rows")
        self.cache.batch_select_indices(index)


def _cancel(row: _BatchRow) -> None:
    if row.pending is not None:  # a call not started yet never runs; a running one finishes unread
        row.pending[2].cancel()
        row.pending = None
    row.queue = []
    row.end("cancelled")


def _take_result(row: _BatchRow) -> None:
    """Queue the finished tool's result: the call's own tokens may not have been fed yet."""
    assert row.pending is not None
    call, call_start, fut = row.pending
    row.pending = None
    row.queue.extend(row.add_result(call, call_start, fut.result()))


def pad_id_of(tokenizer: Any, eos: set[int]) -> int:
    """The id that pads rows: the tokenizer's pad token, else the smallest end-of-sequence id, else 0."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (min(eos) if eos else 0)


def make_chooser(
    tokenizer: Any, size: int, eos: set[int], tools: ToolRegistry, config: DecodeConfig, generator: Any
) -> TokenChooser:
    """The token chooser for rows decoding under `config` with `tools` (sampling draws from `generator`)."""
    vocab = hf_vocab_texts(tokenizer, size)
    grammar = None
    if config.grammar is not None:  # JSON tool calls held to the request's functions (`runtime.grammar`)
        from toolformer.runtime.grammar import GrammarMask, hf_ll_tokenizer, vocab_rules

        ll = None if config.grammar.mode == "none" else hf_ll_tokenizer(tokenizer, size, eos)
        grammar = GrammarMask(config.grammar, ll, vocab_rules(vocab), eos, config.max_new_tokens)
    names = vocab.call_names(tools.names())
    return TokenChooser(
        config, hf_call_tokens(tokenizer, size), names, TorchLogits(config, generator), grammar
    )


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    tools: ToolRegistry | None = None,
    config: DecodeConfig | None = None,
    on_event: Callable[[Event], None] | None = None,
    executor: cf.Executor | None = None,
    cancelled: Callable[[int], bool] | None = None,
) -> list[Generation]:
    """Generate a continuation of every prompt, executing tool calls inline.

    Returns one `Generation` per prompt; each call in its text reads `[Tool(input) → result]`.
    `cancelled(i)` is asked for every unfinished row before each step: once it is true the row stops with
    finish_reason "cancelled" (its pending tool call is dropped) and leaves the batch, which goes on without it.
    """
    import torch

    config = config or DecodeConfig()
    if isinstance(prompts, str):
        prompts = [prompts]
    if not prompts:
        return []
    tools = tools if tools is not None else ToolRegistry()
    own_executor = executor is None
    executor = executor or cf.ThreadPoolExecutor(max_workers=max(1, min(8, len(prompts))))
    start_time = time.perf_counter()
    size = min(len(tokenizer), int(model.config.vocab_size))
    gen = torch.Generator(device="cpu")
    if config.seed is not None:
        gen.manual_seed(config.seed)
    eos = _eos_ids(model, tokenizer)
    choose = make_chooser(tokenizer, size, eos, tools, config, gen)
    pad_id = pad_id_of(tokenizer, eos)
    setup = RowSetup(tokenizer, config, eos, on_event)
    rows = [_BatchRow(setup, i, p, setup.encode(p) or [pad_id]) for i, p in enumerate(prompts)]
    for row in rows:
        row.queue = list(row.prompt_ids)
    batch = _Batch(model, rows, pad_id, config.autocast_bf16)

    def run_call(row: _BatchRow, call: Call) -> cf.Future[ToolOutput]:
        return executor.submit(tools.run, call, config.tool_timeout)

    poll = None if cancelled is None else CANCEL_POLL_S  # a row waiting on its tool may be cancelled
    try:
        with torch.inference_mode():
            batch.share_prefix()
            while batch.active:
                batch.advance(choose, run_call, cancelled, poll)
    finally:
        if own_executor:
            executor.shutdown(wait=False, cancel_futures=True)
    elapsed = time.perf_counter() - start_time
    return [row.generation(elapsed) for row in rows]
