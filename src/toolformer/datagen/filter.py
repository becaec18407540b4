"""Keep a sampled call only if its result makes the next tokens more likely (paper §2, "Filtering"), batched.

For a call c at token x_i of a text x, with weights w_t (`loss_weights`):

    L_i(z) = −Σ_{t<h} w_t · log p_M(x_{i+t} | start, z, x_{1:i+t−1})
    L⁺ = L_i(e(c, r)),   L⁻ = min(L_i(ε), L_i(e(c, ε))),   keep iff L⁻ − L⁺ ≥ τ_f

Conventions (decided here; the paper leaves them open):
- The call is a PREFIX of the whole text (paper footnote 3), joined by `FilterConfig.prefix_separator` (default
  "\\n"): the scored sequence is `start + tokens(e(c, r) + "\\n") + tokens(x)`. The text is tokenised once, on its
  own, so x_j is the very same token in all three conditions and only the context differs. A newline rather than
  a space because BPE tokenisers glue a leading space to the next word (" Out"); a space tokenised apart from the
  text would be an odd lone token, while a line break is a natural boundary.
- `start` is the tokenizer's BOS token (else EOS, else the separator's tokens), so L_i(ε) at the very first token
  is defined; all three conditions share it.
- e(c, ε) is the call with an empty result, `format_call(tool, args, "")` = `[Calculator(2 + 3) → ]`.
- A candidate's `position` is the character offset of x_i; it snaps to the first token starting at or after it
  (a position inside a word skips to the next token). No such token: reason "no tokens after position".
- Near the end of the text fewer than h tokens remain: the sum runs over those only (weights not renormalised).
- A candidate whose tool failed (`ok is False`) is not scored and is dropped as "tool error" (the paper's
  Calculator gives no result for bad input; an `error: …` text is not information the model should learn to
  want); `FilterConfig.score_errors` scores them anyway. One without a result (`result is None`): "no result".
- `score_*` fill the candidates in place (and return them); `kept` is set only for the unscorable ones (False).

Cost: per document one forward of the plain text gives L_i(ε) for every position. Each distinct prefix (e(c, r)
or e(c, ε); the same call at several positions shares one) needs one sequence, cut after the last token it scores
(x_{i+h−1}), since nothing later can change the loss. Sequences from all documents are sorted by length and
packed into right-padded batches of at most `max_batch_tokens` (rows × longest row). The vocabulary projection
and log-softmax run only on the positions that are scored (hidden states from the base model, then the output
embedding on the gathered rows); a model whose head is not a plain projection falls back to full logits.
"""

from __future__ import annotations

import bisect
import contextlib
import operator
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from toolformer.calls import format_call
from toolformer.datagen.records import Candidate
from toolformer.errors import ConfigError

KEPT = "kept"
BELOW_TAU = "below tau_f"
TOOL_ERROR = "tool error"
NO_RESULT = "no result"
NO_TOKENS = "no tokens after position"
BAD_POSITION = "bad position"

# Paper §4.1 (App. A): Calculator and MT use τ_f = 0.5, every other tool the default 1.0.
PAPER_TAU_F_PER_TOOL: dict[str, float] = {"Calculator": 0.5, "MT": 0.5}

# Config attributes that mean the causal-LM head is more than `lm_head(hidden)` (e.g. Gemma 2 softcapping):
# their models take the full-logits path. The numeric probe in `_verified_split` catches most others.
_HEAD_EXTRAS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def loss_weights(horizon: int = 5) -> list[float]:
    """The paper's weights w_t = w̃_t / Σ w̃ with w̃_t = max(0, 1 − t / horizon): for 5, ≈ .33 .27 .20 .13 .07."""
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ConfigError(f"horizon={horizon!r} must be an integer >= 1")
    raw = [max(0.0, 1.0 - t / horizon) for t in range(horizon)]
    total = sum(raw)
    return [w / total for w in raw]


@dataclass
class FilterConfig:
    """Settings of the filtering step; defaults are the paper's."""

    tau_f: float = field(default=1.0, metadata={"help": "keep a call if L⁻ − L⁺ ≥ tau_f (paper default 1.0)"})
    tau_f_per_tool: dict[str, float] = field(
        default_factory=lambda: dict(PAPER_TAU_F_PER_TOOL),
        metadata={"help": "per-tool tau_f overrides by tool name (paper: Calculator and MT use 0.5)"},
    )
    horizon: int = field(
        default=5,
        metadata={
            "help": "tokens after the call that count; weights 1 − t/horizon (decay 0.2 at 5), normalised"
        },
    )
    max_batch_tokens: int = field(
        default=4096,
        metadata={
            "help": "padding budget per forward: rows × longest row; one longer sequence still runs alone"
        },
    )
    autocast_bf16: bool = field(
        default=True,
        metadata={"help": "run the forwards under bfloat16 autocast (log-softmax stays float32)"},
    )
    device: str = field(default="cpu", metadata={"help": "torch device of the model; inputs are built there"})
    prefix_separator: str = field(
        default="\n", metadata={"help": "joins the call prefix e(c, r) to the text: e(c, r) + sep + text"}
    )
    score_errors: bool = field(
        default=False,
        metadata={"help": "also score candidates whose tool failed (ok=False); by default they are dropped"},
    )

    def __post_init__(self) -> None:
        loss_weights(self.horizon)  # validates horizon
        if isinstance(self.max_batch_tokens, bool) or not isinstance(self.max_batch_tokens, int):
            raise ConfigError(f"max_batch_tokens={self.max_batch_tokens!r} must be an integer >= 1")
        if self.max_batch_tokens < 1:
            raise ConfigError(f"max_batch_tokens={self.max_batch_tokens!r} must be an integer >= 1")

    def tau_for(self, tool: str) -> float:
        """τ_f for `tool`: its override if any, else `tau_f`."""
        return float(self.tau_f_per_tool.get(tool, self.tau_f))


# ------------------------------------------------------------------------------------------------ planning


class _Job:
    """One sequence to run: `head` (start + prefix tokens) then the text's tokens up to the last scored one."""

    __slots__ = ("head", "text_ids", "targets", "logprobs")

    def __init__(self, head: list[int], text_ids: list[int]) -> None:
        self.head = head
        self.text_ids = text_ids
        self.targets: set[int] = set()  # indices j of the text tokens x_j whose log-prob is needed
        self.logprobs: dict[int, float] = {}

    @property
    def length(self) -> int:
        return len(self.head) + max(self.targets) + 1

    def ids(self) -> list[int]:
        return self.head + self.text_ids[: max(self.targets) + 1]


@dataclass
class _Plan:
    """Everything needed to turn job log-probs into one candidate's losses."""

    candidate: Candidate
    index: int
    count: int  # tokens scored: min(horizon, tokens left)
    plus: _Job
    noresult: _Job
    plain: _Job


class _Tokens:
    """Tokenisation with the cache of prefix token ids shared across documents."""

    def __init__(self, tokenizer: Any, config: FilterConfig) -> None:
        self.tokenizer = tokenizer
        self.separator = config.prefix_separator
        self._prefixes: dict[str, list[int]] = {}
        start = _first_id(tokenizer, "bos_token_id", "eos_token_id")
        self.start = [start] if start is not None else self.encode(self.separator)
        pad = _first_id(tokenizer, "pad_token_id", "eos_token_id")
        self.pad = 0 if pad is None else pad

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def head(self, call_text: str | None) -> list[int]:
        """start + tokens(call_text + separator); just start for the plain text (call_text None)."""
        if call_text is None:
            return self.start
        ids = self._prefixes.get(call_text)
        if ids is None:
            ids = self._prefixes[call_text] = self.start + self.encode(call_text + self.separator)
        return ids

    def text(self, text: str) -> tuple[list[int], list[int]]:
        """The text's token ids and each token's start character."""
        try:
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        except NotImplementedError as exc:  # slow (Python) tokenizers have no offset mapping
            raise ConfigError(
                f"tokenizer={type(self.tokenizer).__name__!r} has no offset mapping; use a fast tokenizer"
            ) from exc
        return list(enc["input_ids"]), [int(start) for start, _ in enc["offset_mapping"]]


def _first_id(tokenizer: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return None


def _reset(candidate: Candidate) -> None:
    candidate.token_index = None
    candidate.loss_plus = candidate.loss_empty = candidate.loss_noresult = candidate.loss_minus = None
    candidate.kept = None
    candidate.reason = ""


def _mark(candidate: Candidate, reason: str) -> None:
    candidate.kept = False
    candidate.reason = reason


def _plan_document(
    tokens: _Tokens,
    doc: int,
    text: str,
    candidates: Sequence[Candidate],
    config: FilterConfig,
    jobs: dict[tuple[int, str | None], _Job],
) -> list[_Plan]:
    """Tokenise one document, mark unscorable candidates, and register the jobs the others need."""
    text_ids, starts = tokens.text(text)
    plans = []

    def job(call_text: str | None) -> _Job:
        key = (doc, call_text)
        if key not in jobs:
            jobs[key] = _Job(tokens.head(call_text), text_ids)
        return jobs[key]

    for cand in candidates:
        _reset(cand)
        try:  # any integer type (numpy ints from a data frame too), but not bool or float
            position = -1 if isinstance(cand.position, bool) else operator.index(cand.position)
        except TypeError:
            position = -1
        if position < 0:
            _mark(cand, BAD_POSITION)
            continue
        if cand.ok is False and not config.score_errors:
            _mark(cand, TOOL_ERROR)
            continue
        if cand.result is None:
            _mark(cand, NO_RESULT)
            continue
        index = bisect.bisect_left(starts, position)  # first token starting at or after `position`
        if index >= len(text_ids):
            _mark(cand, NO_TOKENS)
            continue
        count = min(config.horizon, len(text_ids) - index)
        plan = _Plan(
            cand,
            index,
            count,
            plus=job(cand.text(with_result=True)),
            noresult=job(format_call(cand.tool, cand.args, "")),
            plain=job(None),
        )
        for needed in (plan.plus, plan.noresult, plan.plain):
            needed.targets.update(range(index, index + count))
        cand.token_index = index
        plans.append(plan)
    return plans


def _loss(job: _Job, plan: _Plan, weights: list[float]) -> float:
    """L_i(z) = −Σ_t w_t · log p(x_{i+t} | start, z, x_{<i+t}) from the job run with prefix z."""
    return -sum(weights[t] * job.logprobs[plan.index + t] for t in range(plan.count))


def _finish(plans: list[_Plan], weights: list[float]) -> None:
    for plan in plans:
        cand = plan.candidate
        cand.loss_plus = _loss(plan.plus, plan, weights)
        cand.loss_empty = _loss(plan.plain, plan, weights)
        cand.loss_noresult = _loss(plan.noresult, plan, weights)
        cand.loss_minus = min(cand.loss_empty, cand.loss_noresult)


# ------------------------------------------------------------------------------------------------ running

# model -> whether `base_model` + output embedding on gathered rows reproduces the model's logits.
_SPLIT_VERDICTS: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _head_split(model: Any) -> tuple[Any, Any] | None:
    """(base model giving hidden states, output projection) for a plain HF causal LM, else None."""
    base = getattr(model, "base_model", None)
    get_head = getattr(model, "get_output_embeddings", None)
    if base is None or base is model or get_head is None:
        return None
    try:
        head = get_head()
    except (AttributeError, NotImplementedError):
        return None
    config = getattr(model, "config", None)
    for name in _HEAD_EXTRAS:
        value = getattr(config, name, None)
        if value is not None and value is not False and value != 1:
            return None
    return None if head is None else (base, head)


def _hidden(output: Any) -> Any:
    hidden = getattr(output, "last_hidden_state", None)
    return output[0] if hidden is None else hidden


def _probe(model: Any, split: tuple[Any, Any], input_ids: Any) -> bool:
    """Does the split reproduce the full forward's logits on a short real input?"""
    import torch

    base, head = split
    ids = input_ids[:1, : min(int(input_ids.shape[1]), 32)]
    try:
        with torch.inference_mode():
            full = model(input_ids=ids, use_cache=False).logits[0]
            part = head(_hidden(base(input_ids=ids, use_cache=False))[0])
    except Exception:  # any failure (odd signature, wrapped model) means: use the full forward
        return False
    if part.shape != full.shape:
        return False
    # Same ops in the model's own precision, so only rounding differs: tight for float32, bf16-sized otherwise.
    tol = 1e-4 if full.dtype == torch.float32 else 2e-2
    return bool(torch.allclose(part.float(), full.float(), rtol=tol, atol=tol))


def _verified_split(model: Any, input_ids: Any) -> tuple[Any, Any] | None:
    split = _head_split(model)
    if split is None:
        return None
    try:
        verdict = _SPLIT_VERDICTS.get(model)
    except TypeError:  # not weak-referenceable: probe every time
        verdict = None
    if verdict is None:
        verdict = _probe(model, split, input_ids)
        with contextlib.suppress(TypeError):
            _SPLIT_VERDICTS[model] = verdict
    return split if verdict else None


def _check_device(model: Any, device: Any) -> None:
    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    if first is not None and first.device.type != device.type:
        raise ConfigError(f"device={str(device)!r} but the model is on {first.device}; move it or set device")


def _forward(model: Any, batch: list[_Job], pad: int, config: FilterConfig) -> None:
    """Run one padded batch and store log p(x_j | …) for every target of every job in it."""
    import torch

    device = torch.device(config.device)
    width = max(job.length for job in batch)
    rows: list[list[int]] = []
    mask: list[list[int]] = []
    r_idx: list[int] = []
    c_idx: list[int] = []
    targets: list[int] = []
    owners: list[tuple[_Job, int]] = []
    for b, job in enumerate(batch):
        ids = job.ids()
        rows.append(ids + [pad] * (width - len(ids)))
        mask.append([1] * len(ids) + [0] * (width - len(ids)))
        for j in sorted(job.targets):
            at = len(job.head) + j  # where x_j sits; the logits one step earlier predict it
            r_idx.append(b)
            c_idx.append(at - 1)
            targets.append(ids[at])
            owners.append((job, j))
    input_ids = torch.tensor(rows, dtype=torch.long, device=device)
    attention_mask = torch.tensor(mask, dtype=torch.long, device=device)
    r_t = torch.tensor(r_idx, device=device)
    c_t = torch.tensor(c_idx, device=device)
    t_t = torch.tensor(targets, device=device)
    split = _verified_split(model, input_ids)
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if config.autocast_bf16
        else contextlib.nullcontext()
    )
    with torch.inference_mode(), autocast:
        if split is not None:
            base, head = split
            hidden = _hidden(base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False))
            logits = head(hidden[r_t, c_t])
        else:
            logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[
                r_t, c_t
            ]
    logprobs = torch.log_softmax(logits.float(), dim=-1).gather(1, t_t[:, None])[:, 0]
    for (job, j), value in zip(owners, logprobs.cpu().tolist()):
        job.logprobs[j] = value


def _run(model: Any, jobs: list[_Job], pad: int, config: FilterConfig) -> None:
    """Sort jobs by length (less padding) and run them in batches within `max_batch_tokens`."""
    import torch

    _check_device(model, torch.device(config.device))
    batch: list[_Job] = []
    for job in sorted(jobs, key=lambda j: j.length):
        # sorted ascending, so the newcomer is the longest row: the batch would cost (rows + 1) × its length
        if batch and (len(batch) + 1) * job.length > config.max_batch_tokens:
            _forward(model, batch, pad, config)
            batch = []
        batch.append(job)
    if batch:
        _forward(model, batch, pad, config)


# ------------------------------------------------------------------------------------------------ public


def score_documents(
    model: Any,
    tokenizer: Any,
    docs: Sequence[tuple[str, list[Candidate]]],
    config: FilterConfig | None = None,
) -> list[list[Candidate]]:
    """Fill token_index and the four losses of every candidate of every `(text, candidates)`, batched across all.

    Candidates are updated in place; the lists are returned. Unscorable candidates get `kept=False` and a reason.
    """
    config = config or FilterConfig()
    tokens = _Tokens(tokenizer, config)
    jobs: dict[tuple[int, str | None], _Job] = {}
    plans: list[_Plan] = []
    for doc, (text, candidates) in enumerate(docs):
        plans.extend(_plan_document(tokens, doc, text, candidates, config, jobs))
    needed = [job for job in jobs.values() if job.targets]
    if needed:
        _run(model, needed, tokens.pad, config)
    _finish(plans, loss_weights(config.horizon))
    return [candidates for _, candidates in docs]


def score_candidates(
    model: Any, tokenizer: Any, text: str, candidates: list[Candidate], config: FilterConfig | None = None
) -> list[Candidate]:
    """Fill token_index, loss_plus, loss_empty, loss_noresult and loss_minus of one document's candidates."""
    return score_documents(model, tokenizer, [(text, candidates)], config)[0]


def apply_threshold(candidates: list[Candidate], config: FilterConfig | None = None) -> list[Candidate]:
    """Set `kept`/`reason` of scored candidates from L⁻ − L⁺ ≥ τ_f (per tool); marked ones stay as they are."""
    config = config or FilterConfig()
    for cand in candidates:
        gain = cand.gain
        if gain is None:
            if not cand.reason:  # never scored: not a verdict this step can give
                _mark(cand, "not scored")
            continue
        cand.kept = gain >= config.tau_for(cand.tool)
        cand.reason = KEPT if cand.kept else BELOW_TAU
    return candidates


def filter_candidates(
    model: Any, tokenizer: Any, text: str, candidates: list[Candidate], config: FilterConfig | None = None
) -> list[Candidate]:
    """Score one document's candidates, then set `kept` and `reason` ("kept", "below tau_f", "tool error", …)."""
    config = config or FilterConfig()
    return apply_threshold(score_candidates(model, tokenizer, text, candidates, config), config)


def filter_documents(
    model: Any,
    tokenizer: Any,
    docs: Sequence[tuple[str, list[Candidate]]],
    config: FilterConfig | None = None,
) -> list[list[Candidate]]:
    """`filter_candidates` over many documents, batched across them."""
    config = config or FilterConfig()
    scored = score_documents(model, tokenizer, docs, config)
    return [apply_threshold(candidates, config) for candidates in scored]
