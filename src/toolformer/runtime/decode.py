"""Tool-executing decoding: generate, run a tool when the model writes `[Tool(input) →`, continue on the same KV cache.

One forward pass per step over the whole batch. Each row feeds its own chunk of tokens per step (one sampled token,
or the tool result plus "]" it is forced to read); chunks are left-padded within the step and the pads are masked
out, so rows never wait on each other and the prompt is never re-encoded. A row whose tool is still running feeds
nothing until the tool returns, while the other rows keep decoding. Prompts of a batch that open with the same
tokens (a few-shot or system prompt) encode that prefix once, and every row starts from a copy of its cache.
A finished row leaves the batch (its cache and mask rows are dropped), and so does a row that `cancelled(row)`
flags before a step (a server's client went away): the other rows decode exactly as they would without it.

A call can only name a loaded tool: after "[" the next tokens are held to spelling one of the registry's names
and "(" (`runtime.callnames`, shared with the llama.cpp backend), and a result in the returned text is always
the result of a call a tool ran (`plan_feed`, `settle_results`).
"""

from __future__ import annotations

import concurrent.futures as cf
import inspect
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from toolformer.calls import ARROWS, Call, CallSpan, find_calls, sanitize_result
from toolformer.errors import ConfigError
from toolformer.runtime.callnames import hf_vocab_texts
from toolformer.tools import ToolOutput, ToolRegistry


@dataclass
class DecodeConfig:
    """How to decode. The same object feeds the CLI, the server and the run logs."""

    max_new_tokens: int = field(
        default=128, metadata={"help": "Tokens the model may sample (tool results are extra)."}
    )
    max_calls: int = field(
        default=1, metadata={"help": "Tool calls allowed per generation (paper's evals: 1)."}
    )
    trigger_top_k: int = field(
        default=0,
        metadata={
            "help": "Start a call whenever '[' is among the top-k next tokens (paper's evals: 10; 0 = off)."
        },
    )
    disabled: bool = field(
        default=False, metadata={"help": "Never call tools: p('[') = 0 (the paper's ablation)."}
    )
    force_arrow: bool = field(
        default=True,
        metadata={
            "help": "Run the tool as soon as a call's ')' is written, adding ' →' if the model does not."
        },
    )
    do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy decoding."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (with do_sample)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass (with do_sample)."})
    seed: int | None = field(default=None, metadata={"help": "Random seed for sampling."})
    stop: list[str] = field(
        default_factory=list, metadata={"help": "Stop when one of these strings is written."}
    )
    tool_timeout: float | None = field(
        default=None, metadata={"help": "Seconds per tool call (default: the tool's)."}
    )
    autocast_bf16: bool = field(default=False, metadata={"help": "Run forward passes under bf16 autocast."})

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.max_calls < 0:
            raise ConfigError(f"max_calls must be >= 0, got {self.max_calls}")
        if self.trigger_top_k < 0:
            raise ConfigError(f"trigger_top_k must be >= 0, got {self.trigger_top_k}")
        if self.do_sample and self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class CallTrace:
    """One executed call: what the model asked, what the tool said, how long it took, where it sits in the text."""

    tool: str
    input: str
    output: str
    ok: bool
    seconds: float
    start: int  # character offset of "[" in the generated text
    end: int  # character offset just after "]"

    @property
    def call(self) -> Call:
        return Call(self.tool, self.input, self.output)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Event:
    """A streaming event: `text` (new generated text), `call` (a call finished) or `done` (the row finished)."""

    kind: str
    row: int
    text: str = ""
    trace: CallTrace | None = None
    finish_reason: str | None = None


@dataclass
class Generation:
    """The result for one prompt."""

    prompt: str
    text: str
    calls: list[CallTrace]
    finish_reason: str  # "stop" (eos or stop string), "length", or "cancelled" (`cancelled(row)` said so)
    new_tokens: int  # tokens the model sampled
    forced_tokens: int  # tool-result tokens the model was made to read
    prompt_tokens: int
    seconds: float
    token_ids: list[int] = field(default_factory=list, repr=False)  # generated and forced ids, as fed

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["calls"] = [c.to_dict() for c in self.calls]
        return out


@dataclass
class _Row:
    prompt: str
    queue: list[int]  # tokens to feed at the next step
    ids: list[int] = field(default_factory=list)  # generated + forced token ids
    text: str = ""
    offset: int = 0  # text before this offset holds no open call
    calls: list[CallTrace] = field(default_factory=list)
    pending: tuple[Call, int, cf.Future[ToolOutput]] | None = None
    new_tokens: int = 0
    forced: int = 0
    finish: str | None = None
    emitted: int = 0  # characters of text already streamed
    triggers: int = 0  # calls started by the top-k trigger rule
    pos: int = 0  # next position id


class _Vocab:
    """Per-tokenizer token-id sets: tokens containing '[' (masked when calls are off) and tokens starting a call."""

    _cache: dict[int, _Vocab] = {}

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import torch

        pieces = tokenizer.convert_ids_to_tokens(list(range(min(len(tokenizer), vocab_size))))
        has, starts = [], []
        for i, p in enumerate(pieces):
            if p is None or "[" not in p:
                continue
            has.append(i)
            text = tokenizer.convert_tokens_to_string([p])
            if text.strip() == "[":
                starts.append(i)
        self.bracket = torch.tensor(has, dtype=torch.long)
        self.call_start = torch.tensor(starts or has[:1], dtype=torch.long)

    @classmethod
    def of(cls, tokenizer: Any, vocab_size: int) -> _Vocab:
        key = id(tokenizer)
        if key not in cls._cache:
            cls._cache[key] = cls(tokenizer, vocab_size)
        return cls._cache[key]


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


def _arrow_end(text: str, span: CallSpan) -> tuple[int, int | None]:
    """(index just after the call's closing ')', index just after its arrow or None)."""
    close = span.start + 1 + len(span.call.name) + 1 + len(span.call.args) + 1
    k = close
    while k < len(text) and text[k] == " ":
        k += 1
    for arrow in ARROWS:
        if text.startswith(arrow, k):
            return close, k + len(arrow)
    return close, None


def _new_from(cand: str, text: str) -> int:
    """Where the sampled token's text begins in `cand`: at the end of `text`, unless `text` ended in part of a
    character ("\ufffd") that the token completes, in which case from the first character the two differ at."""
    if cand.startswith(text):
        return len(text)
    n = min(len(cand), len(text))
    k = 0
    while k < n and cand[k] == text[k]:
        k += 1
    return k


def plan_feed(
    cand: str,
    text: str,
    offset: int,
    token: int,
    calls_left: bool,
    force_arrow: bool,
    encode: Callable[[str], list[int]],
    arrow_ids: list[int],
) -> tuple[list[int], int | None]:
    """What a row feeds after sampling `token`, and where a call to run now starts (None: no call yet).

    `cand` is the row's text with `token` decoded, `text` the text before it, `offset` where calls may start.
    A call runs once its arrow is written (text written past the arrow is cut off) or, with `force_arrow`, as
    soon as its ")" is: then " →" is fed after it. Shared by both decoding backends.

    The model never gets to write a result itself: an arrow that appears, even spelled over several byte tokens,
    runs the call at once. The one case left, a token that completes part of a character and writes past the
    arrow in one go (its text cannot be cut off), is caught by `settle_results`.
    """
    feed = [token]
    spans = find_calls(cand[offset:]) if calls_left else []
    span = spans[-1] if spans else None
    if span is None:
        return feed, None
    span = CallSpan(span.start + offset, span.end + offset, span.call, span.complete, span.stage)
    if span.stage in ("name", "args"):
        return feed, None
    aligned = cand.startswith(text)
    new_from = _new_from(cand, text)
    close, arrow_end = _arrow_end(cand, span)
    if arrow_end is not None:
        if arrow_end <= new_from:  # written before and not run (see above): not a call to run now
            return feed, None
        if not cand[arrow_end:].strip():
            return feed, span.start
        if aligned:  # the model wrote past the arrow: cut at the arrow
            return encode(cand[len(text) : arrow_end]), span.start
        return feed, None
    if force_arrow and close > new_from:
        if aligned:
            delta = cand[len(text) : close]
            feed = [token, *arrow_ids] if delta == cand[len(text) :] else [*encode(delta), *arrow_ids]
            return feed, span.start
        if not cand[close:].strip():  # nothing to cut after ")"
            return [token, *arrow_ids], span.start
    return feed, None


def settle_results(text: str, calls: Sequence[CallTrace]) -> tuple[str, list[CallTrace]]:
    """`text` with the result of every call that no tool ran removed (`[T(x) → r]` becomes `[T(x)]`), and the
    traces with their offsets moved to match. Shared by both backends: what reads as a call's result in a
    returned text always came from its tool."""
    ran = {c.start for c in calls}
    out, pos, shift = [], 0, 0
    moves: list[tuple[int, int]] = []  # (offset in text, characters removed before it so far)
    for span in find_calls(text):
        if span.call.result is None or span.start in ran:
            continue
        close, _ = _arrow_end(text, span)
        out.append(text[pos:close])
        tail = "]" if span.complete else ""
        out.append(tail)
        shift += (span.end - close) - len(tail)
        moves.append((span.end, shift))
        pos = span.end
    if not moves:
        return text, list(calls)
    out.append(text[pos:])

    def moved(at: int) -> int:
        removed = 0
        for end, total in moves:
            if at >= end:
                removed = total
        return at - removed

    traces = [replace(c, start=moved(c.start), end=moved(c.end)) for c in calls]
    return "".join(out), traces


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

    vocab_size = int(model.config.vocab_size)
    vocab = _Vocab.of(tokenizer, vocab_size)
    names = hf_vocab_texts(tokenizer, min(len(tokenizer), vocab_size)).call_names(tools.names())
    eos = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (min(eos) if eos else 0)
    cache_kw = _cache_kwarg(model)
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu")
    if config.seed is not None:
        gen.manual_seed(config.seed)

    rows = [_Row(prompt=p, queue=tokenizer.encode(p, add_special_tokens=False) or [pad_id]) for p in prompts]
    prompt_lens = [len(r.queue) for r in rows]
    active = list(range(len(rows)))  # batch slot -> row index
    cache: Any = None
    mask = torch.zeros((len(rows), 0), dtype=torch.long, device=device)

    def emit(event: Event) -> None:
        if on_event is not None:
            on_event(event)

    def flush_text(i: int, final: bool = False) -> None:
        row = rows[i]
        new = row.text[row.emitted :]
        if new and (final or not new.endswith("\ufffd")):
            row.emitted = len(row.text)
            emit(Event("text", i, new))

    def finish(i: int, reason: str) -> None:
        rows[i].finish = reason
        flush_text(i, final=True)
        emit(Event("done", i, finish_reason=reason))

    def cancel(i: int) -> None:
        row = rows[i]
        if row.pending is not None:  # a call not started yet never runs; a running one finishes unread
            row.pending[2].cancel()
            row.pending = None
        row.queue = []
        finish(i, "cancelled")

    def drop_finished() -> None:
        """Take finished rows out of the batch: their slots, their mask rows and their KV cache rows."""
        nonlocal active, mask
        keep = [b for b, i in enumerate(active) if rows[i].finish is None]
        if len(keep) == len(active):
            return
        active = [active[b] for b in keep]
        if not active:
            return
        index = torch.tensor(keep, dtype=torch.long, device=device)
        mask = mask[index]
        if cache is None:  # nothing encoded yet
            return
        if not hasattr(cache, "batch_select_indices"):  # a cache we cannot shrink: stop rather than mis-align
            raise ConfigError(f"model cache {type(cache).__name__} cannot drop finished rows")
        cache.batch_select_indices(index)

    def start_tool(i: int, call: Call, call_start: int) -> None:
        rows[i].pending = (call, call_start, executor.submit(tools.run, call, config.tool_timeout))

    def take_result(i: int) -> None:
        row = rows[i]
        assert row.pending is not None
        call, call_start, fut = row.pending
        row.pending = None
        out = fut.result()
        result = sanitize_result(out.text)
        sep = "" if row.text.endswith(" ") else " "
        forced = tokenizer.encode(f"{sep}{result}]", add_special_tokens=False)
        row.queue.extend(forced)  # the call's own tokens may not have been fed yet
        row.forced += len(forced)
        row.ids.extend(forced)
        row.text = tokenizer.decode(row.ids, skip_special_tokens=True)
        row.offset = len(row.text)
        trace = CallTrace(call.name, call.input, out.text, out.ok, out.seconds, call_start, len(row.text))
        row.calls.append(trace)
        flush_text(i)
        emit(Event("call", i, trace=trace))

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    arrow_ids = encode(" →")

    def accept(i: int, token: int) -> None:
        """Decide what row i feeds next after sampling `token`."""
        row = rows[i]
        row.new_tokens += 1
        if token in eos:
            finish(i, "stop")
            return
        cand = tokenizer.decode([*row.ids, token], skip_special_tokens=True)
        calls_left = len(row.calls) < config.max_calls and not config.disabled
        feed, call_start = plan_feed(
            cand, row.text, row.offset, token, calls_left, config.force_arrow, encode, arrow_ids
        )
        if len(feed) > 1:
            row.forced += len(feed) - 1
        row.ids.extend(feed)
        row.queue = feed
        # The common case feeds just the sampled token: its text is `cand`, already decoded.
        row.text = cand if feed == [token] else tokenizer.decode(row.ids, skip_special_tokens=True)
        if call_start is not None:
            call = find_calls(row.text[call_start:])[0].call
            start_tool(i, Call(call.name, call.args), call_start)
            flush_text(i)
            return
        for s in config.stop:
            at = row.text.find(s, max(0, row.emitted - len(s)))
            if s and at != -1:
                row.text = row.text[:at]
                finish(i, "stop")
                return
        flush_text(i)
        if row.new_tokens >= config.max_new_tokens:
            finish(i, "length")

    def choose(logits: Any, i: int) -> int:
        row = rows[i]
        logits = logits.float()
        if config.disabled or len(row.calls) >= config.max_calls:
            logits[vocab.bracket] = float("-inf")
        else:
            # A call can only name a loaded tool: after "[" only tokens spelling one of their `Name(`.
            rule, in_call = names.state(row.text[row.offset :])
            if rule is not None and rule.ids.size:
                ids = torch.from_numpy(rule.ids)
                if rule.only:
                    kept = logits[ids]
                    logits = torch.full_like(logits, float("-inf"))
                    logits[ids] = kept
                else:
                    logits[ids] = float("-inf")
            if config.trigger_top_k and not in_call and row.triggers < config.max_calls:
                # A forced "[" that the model does not turn into a call still uses up one of the row's calls;
                # otherwise an untrained model is forced into "[" after "[" and writes junk.
                top = torch.topk(logits, min(config.trigger_top_k, logits.shape[0])).indices
                hits = top[torch.isin(top, vocab.call_start)]
                hits = hits[torch.isfinite(logits[hits])]  # never a "[" that no loaded name may follow
                if hits.numel():
                    row.triggers += 1
                    return int(hits[0])
        if not config.do_sample:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / config.temperature, dim=-1)
        if config.top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_p, dim=-1) - sorted_p < config.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
        return int(torch.multinomial(probs, 1, generator=gen))

    try:
        with torch.inference_mode():
            shared = _shared_prefix_len([r.queue for r in rows]) if _can_share_prefix(model, len(rows)) else 0
            if shared:
                # Rows that open alike (a few-shot or system prompt) encode that prefix once, then copy its cache:
                # a batch of B prompts costs one prefix plus B suffixes instead of B whole prompts.
                ids = torch.tensor([rows[0].queue[:shared]], dtype=torch.long, device=device)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.autocast_bf16):
                    out = model(
                        input_ids=ids,
                        attention_mask=torch.ones_like(ids),
                        position_ids=torch.arange(shared, device=device)[None],
                        use_cache=True,
                        logits_to_keep=1,
                        **{cache_kw: None},
                    )
                cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
                cache.batch_repeat_interleave(len(rows))
                mask = torch.ones((len(rows), shared), dtype=torch.long, device=device)
                for row in rows:
                    row.queue = row.queue[shared:]
                    row.pos = shared
            while active:
                if cancelled is not None:  # rows whose client went away leave the batch before the next step
                    for i in active:
                        if cancelled(i):
                            cancel(i)
                    drop_finished()
                    if not active:
                        break
                # Tool results that are ready become the next chunk of their row.
                for i in active:
                    if rows[i].pending is not None and rows[i].pending[2].done():
                        take_result(i)
                if all(rows[i].pending is not None for i in active):
                    cf.wait(
                        [rows[i].pending[2] for i in active],
                        timeout=None
                        if cancelled is None
                        else CANCEL_POLL_S,  # a waiting row may be cancelled
                        return_when=cf.FIRST_COMPLETED,
                    )
                    continue
                # Chunks are padded to the widest row: on a CPU a decode step is bound by reading the weights, so
                # a few extra positions cost little (feeding results one token per step measured no faster).
                width = max(len(rows[i].queue) for i in active if rows[i].pending is None)
                ids = torch.full((len(active), width), pad_id, dtype=torch.long)
                step_mask = torch.zeros((len(active), width), dtype=torch.long)
                pos = torch.zeros((len(active), width), dtype=torch.long)
                fed: list[int] = []  # rows whose queue is now empty: their last logits choose the next token
                for b, i in enumerate(active):
                    row = rows[i]
                    chunk = (
                        row.queue[:width] if row.pending is None else []
                    )  # a call's tokens go in with its result
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
                mask = torch.cat([mask, step_mask.to(device)], dim=1)
                kwargs = {cache_kw: cache}
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.autocast_bf16):
                    out = model(
                        input_ids=ids.to(device),
                        attention_mask=mask,
                        position_ids=pos.to(device),
                        use_cache=True,
                        logits_to_keep=1,
                        **kwargs,
                    )
                cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
                last = out.logits[:, -1, :].cpu()
                for b, i in enumerate(active):
                    if i in fed and rows[i].pending is None and rows[i].finish is None:
                        accept(i, choose(last[b], i))
                drop_finished()
    finally:
        if own_executor:
            executor.shutdown(wait=False, cancel_futures=True)

    elapsed = time.perf_counter() - start_time
    settled = [settle_results(r.text, r.calls) for r in rows]
    return [
        Generation(
            prompt=r.prompt,
            text=text,
            calls=calls,
            finish_reason=r.finish or "length",
            new_tokens=r.new_tokens,
            forced_tokens=r.forced,
            prompt_tokens=n,
            seconds=elapsed,
            token_ids=list(r.ids),
        )
        for r, n, (text, calls) in zip(rows, prompt_lens, settled)
    ]
