"""The LM proposer, the paper's sampler: p_i = p("[" | P(x), x_<i) at every position, m calls sampled at the top k.

One forward pass over P(x) + x gives p_i at every position of x; the top k positions with p_i > τ_s each get m
sampled calls from [P(x), x_<i, "["] (on the scoring pass's KV cache, see `kvcache`, or with vLLM, see
`vllm_engine`). Settings per tool: `config.SampleConfig`, the paper's in `config.PAPER_DEFAULTS`.
"""

from __future__ import annotations

import contextlib
import inspect
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from toolformer.calls import find_calls
from toolformer.datagen.config import SampleConfig, paper_config
from toolformer.datagen.prompts import annotation_prompt
from toolformer.datagen.proposers.base import dedupe
from toolformer.datagen.proposers.kvcache import cut_cache, plain_dynamic_cache
from toolformer.datagen.proposers.vllm_engine import VLLMSampler
from toolformer.datagen.records import Candidate, Document
from toolformer.errors import ConfigError


@dataclass(frozen=True)
class Position:
    """A position of x the model may open a call at: character offset `char`, token index `token`, p_i = `p`."""

    char: int
    token: int
    p: float
    bracket: int  # the call-opening token ("[" or " [") the model prefers here; sampling continues after it


@dataclass
class Sample:
    """What the model wrote after "[" at one position: `texts` (up to m), each cut after its first "]" or
    newline."""

    position: Position
    texts: list[str]


def select_positions(positions: Sequence[Position], tau_s: float, k: int) -> list[Position]:
    """The k likeliest positions with p > tau_s (ties: earlier first), returned in text order."""
    kept = sorted((p for p in positions if p.p > tau_s), key=lambda p: (-p.p, p.char))[:k]
    return sorted(kept, key=lambda p: p.char)


class _Vocab:
    """Per-tokenizer ids: tokens that open a call ("[", " ["), tokens that contain "]" and tokens that end a
    sample without one (a newline: a call is one line)."""

    _cache: dict[tuple[int, int], _Vocab] = {}

    def __init__(self, tokenizer: Any, size: int) -> None:
        pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
        self.open: list[int] = []
        self.close: set[int] = set()
        self.stop: set[int] = set()
        for i, piece in enumerate(pieces):
            if piece is None:
                continue
            text = tokenizer.convert_tokens_to_string([piece])
            if text.strip() == "[":
                self.open.append(i)
            if "]" in text:
                self.close.add(i)
            if "]" in text or "\n" in text:
                self.stop.add(i)
        if not self.open:
            raise ConfigError("the tokenizer has no token for '[': the model cannot open a call")

    @classmethod
    def of(cls, tokenizer: Any, size: int) -> _Vocab:
        key = (id(tokenizer), size)
        if key not in cls._cache:
            cls._cache[key] = cls(tokenizer, size)
        return cls._cache[key]


def _char_starts(tokenizer: Any, text: str) -> tuple[list[int], list[int]]:
    """Token ids of " " + text (the form x takes after "Output:") and each token's first character in `text`."""
    spaced = " " + text
    try:
        enc = tokenizer(spaced, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [int(a) for a, _b in enc["offset_mapping"]]
    except (NotImplementedError, TypeError, ValueError, KeyError):  # a slow tokenizer has no offsets
        ids = tokenizer.encode(spaced, add_special_tokens=False)
        offsets = [len(tokenizer.decode(ids[:j])) for j in range(len(ids))]
    return ids, [min(max(0, o - 1), len(text)) for o in offsets]


def _accepts(model: Any, name: str) -> bool:
    """Whether the model's forward takes `name`, looking through subclasses whose forward only has **kwargs."""
    for cls in type(model).__mro__:
        forward = cls.__dict__.get("forward")
        if forward is None:
            continue
        try:
            params = inspect.signature(forward).parameters
        except (TypeError, ValueError):
            return False
        if name in params:
            return True
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return False
    return False


class _StopAt:
    """A generate() stopping criterion: a row is done once it has sampled one of `ids` (e.g. "]" or a newline)."""

    def __init__(self, ids: set[int]) -> None:
        import torch

        self.ids = torch.tensor(sorted(ids), dtype=torch.long)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.isin(input_ids[:, -1], self.ids.to(input_ids.device))


class LMProposer:
    """The paper's sampler over any HF causal LM (and its tokenizer).

    For a text x and a tool: P(x) is the tool's annotation prompt (`datagen.prompts`). One forward pass over
    P(x) + " " + x gives, at every token position i of x, p_i = the summed probability of the tokens that open a
    call ("[" and " [": their text stripped is "["). Positions inside a word or number are skipped (config
    `word_boundaries`); the top k with p_i > τ_s are kept. At each, m calls are sampled from [P(x), x_<i, b_i],
    b_i the likelier opening token there, with `model.generate` (sampling, stop at a token holding "]" or a
    newline, at most `max_new_tokens`). Samples that read as one complete call of the tool, `[Tool(args)]` (a
    result the model wrote itself is ignored), become candidates, one per (position, args).

    Sampling reuses the scoring pass's KV cache when the model has a plain DynamicCache: every kept prefix is cut
    from it and left-padded into one batch, so no prefix is encoded twice (m copies are made by hand, so
    `num_return_sequences` is 1 there). Otherwise every prefix is re-encoded and `num_return_sequences=m`.
    With config `backend="vllm"` the sampling step (not the scoring pass) runs in a `vllm.LLM` over the model's
    path instead, from the same token prompts, with `SamplingParams(n=m, stop=["]", "\\n"])`.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: SampleConfig | Mapping[str, SampleConfig] | None = None,
        prompts: Mapping[str, str] | None = None,
        descriptions: Mapping[str, str] | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.prompts = dict(prompts or {})
        self.descriptions = dict(descriptions or {})
        size = min(len(tokenizer), int(model.config.vocab_size))
        self.vocab = _Vocab.of(tokenizer, size)
        eos = getattr(tokenizer, "eos_token_id", None)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or 0)
        # transformers 5 renamed generate's `past_key_values` to `cache`.
        self._cache_kw = "cache" if _accepts(model, "cache") else "past_key_values"
        self._vllm = VLLMSampler(model)  # config backend="vllm": its engine is made on first use

    def config_for(self, tool: str) -> SampleConfig:
        """The settings for `tool`: the one config given, or the tool's entry, else the paper's defaults."""
        if isinstance(self.config, SampleConfig):
            return self.config
        if self.config is not None and tool in self.config:
            return self.config[tool]
        return paper_config(tool)

    # -- scoring -------------------------------------------------------------------------------------------------

    def _encode(self, tool: str, text: str, cfg: SampleConfig) -> tuple[list[int], list[int], list[int]]:
        prompt = annotation_prompt(tool, text, self.prompts, self.descriptions.get(tool, ""))
        prompt_ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        text_ids, starts = _char_starts(self.tokenizer, text)
        return prompt_ids, text_ids[: cfg.max_text_tokens], starts[: cfg.max_text_tokens]

    def _score(self, prompt_ids: list[int], text_ids: list[int], keep_cache: bool) -> tuple[Any, Any, Any]:
        """(p_i per text token, the likelier opening token per text token, the KV cache or None)."""
        import torch

        ids = torch.tensor([prompt_ids + text_ids], device=self.model.device)
        n = len(text_ids)
        kwargs: dict[str, Any] = {"use_cache": keep_cache}
        if _accepts(self.model, "logits_to_keep"):
            kwargs["logits_to_keep"] = n + 1  # logits at P-1 … P+n-1: the last one is not needed
        with torch.inference_mode():
            out = self.model(input_ids=ids, **kwargs)
        logits = out.logits[0, -(n + 1) : -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        opening = torch.tensor(self.vocab.open, device=logits.device)
        open_p = logprobs[:, opening].exp()
        cache = (getattr(out, "cache", None) or getattr(out, "past_key_values", None)) if keep_cache else None
        return open_p.sum(-1).cpu(), opening[open_p.argmax(-1)].cpu(), cache

    def _positions(
        self, text: str, starts: list[int], p: Any, best: Any, cfg: SampleConfig
    ) -> list[Position]:
        out: list[Position] = []
        last = -1
        for j, c in enumerate(starts):
            if c == last or c >= len(text):
                continue
            if cfg.word_boundaries and c > 0 and text[c - 1].isalnum() and text[c].isalnum():
                continue
            last = c
            out.append(Position(c, j, float(p[j]), int(best[j])))
        return out

    def positions(self, text: str, tool: str) -> list[Position]:
        """Every eligible position of `text` with its p_i, in text order (no τ_s or k applied)."""
        cfg = self.config_for(tool)
        prompt_ids, text_ids, starts = self._encode(tool, text, cfg)
        if not text_ids:
            return []
        p, best, _ = self._score(prompt_ids, text_ids, keep_cache=False)
        return self._positions(text, starts, p, best, cfg)

    # -- sampling ------------------------------------------------------------------------------------------------

    def samples(self, doc: Document, tool: str) -> list[Sample]:
        """The raw samples at the kept positions of `doc.text` (what `propose` parses)."""
        cfg = self.config_for(tool)
        prompt_ids, text_ids, starts = self._encode(tool, doc.text, cfg)
        if not text_ids:
            return []
        on_cache = cfg.share_prefix and cfg.backend == "transformers"
        p, best, cache = self._score(prompt_ids, text_ids, keep_cache=on_cache)
        kept = select_positions(self._positions(doc.text, starts, p, best, cfg), cfg.tau_s, cfg.k)
        if not kept:
            return []
        full = prompt_ids + text_ids
        prefixes = [full[: len(prompt_ids) + pos.token] for pos in kept]
        seed = None if cfg.seed is None else zlib.crc32(f"{cfg.seed}\0{doc.id}\0{tool}".encode())
        if cfg.backend == "vllm":
            prompts = [[*prefix, pos.bracket] for pos, prefix in zip(kept, prefixes)]
            return [Sample(pos, t) for pos, t in zip(kept, self._vllm.sample(prompts, cfg, seed))]
        with self._seeded(seed):
            if cfg.share_prefix and plain_dynamic_cache(cache):
                texts = self._sample_on_cache(kept, prefixes, cache, cfg)
            else:
                texts = self._sample_fresh(kept, prefixes, cfg)
        return [Sample(pos, t) for pos, t in zip(kept, texts)]

    @contextlib.contextmanager
    def _seeded(self, seed: int | None) -> Iterator[None]:
        import torch

        if seed is None:
            yield
            return
        device = self.model.device
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def _generate(self, input_ids: Any, mask: Any, cfg: SampleConfig, **kwargs: Any) -> Any:
        import torch
        from transformers import StoppingCriteriaList

        sampling = (
            {"do_sample": True, "temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": 0}
            if cfg.do_sample
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=cfg.max_new_tokens,
                stopping_criteria=StoppingCriteriaList([_StopAt(self.vocab.stop)]),
                pad_token_id=self.pad_id,
                **sampling,
                **kwargs,
            )
        return out[:, input_ids.shape[1] :].cpu()

    def _left_pad(self, rows: list[list[int]]) -> tuple[Any, Any]:
        import torch

        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[r, width - len(row) :] = 1
        return ids.to(self.model.device), mask.to(self.model.device)

    def _decode(self, generated: Any) -> list[str]:
        texts = []
        for row in generated.tolist():
            cut = next((j + 1 for j, t in enumerate(row) if t in self.vocab.stop), len(row))
            texts.append(self.tokenizer.decode(row[:cut], skip_special_tokens=True))
        return texts

    def _sample_on_cache(
        self, kept: list[Position], prefixes: list[list[int]], cache: Any, cfg: SampleConfig
    ) -> list[list[str]]:
        """m samples per position, rows cut from the scoring cache, left-padded, batch_size rows per call."""

        copies = cfg.m if cfg.do_sample else 1
        rows = [(i, prefix) for i, prefix in enumerate(prefixes) for _ in range(copies)]
        texts: list[list[str]] = [[] for _ in kept]
        for start in range(0, len(rows), cfg.batch_size):
            chunk = rows[start : start + cfg.batch_size]
            ids, mask = self._left_pad([[*prefix, kept[i].bracket] for i, prefix in chunk])
            batch_cache = cut_cache(cache, [len(prefix) for _i, prefix in chunk])
            generated = self._generate(ids, mask, cfg, **{self._cache_kw: batch_cache})
            for (i, _prefix), text in zip(chunk, self._decode(generated)):
                texts[i].append(text)
        return texts

    def _sample_fresh(
        self, kept: list[Position], prefixes: list[list[int]], cfg: SampleConfig
    ) -> list[list[str]]:
        """m samples per position with `num_return_sequences=m`, every prefix encoded again."""
        copies = cfg.m if cfg.do_sample else 1
        per_call = max(1, cfg.batch_size // copies)
        texts: list[list[str]] = []
        for start in range(0, len(kept), per_call):
            idx = range(start, min(start + per_call, len(kept)))
            ids, mask = self._left_pad([[*prefixes[i], kept[i].bracket] for i in idx])
            generated = self._decode(self._generate(ids, mask, cfg, num_return_sequences=copies))
            texts.extend(generated[j * copies : (j + 1) * copies] for j in range(len(idx)))
        return texts

    # -- proposing -----------------------------------------------------------------------------------------------

    def propose(self, doc: Document, tool: str) -> list[Candidate]:
        """Candidates of `tool` for `doc`: the samples that are one complete call of that tool."""
        return self.candidates(doc, tool, self.samples(doc, tool))

    def candidates(self, doc: Document, tool: str, samples: Sequence[Sample]) -> list[Candidate]:
        """The candidates in `samples` (from `samples(doc, tool)`): each complete call of `tool`, deduplicated."""
        cands = []
        for sample in samples:
            for text in sample.texts:
                spans = find_calls("[" + text, include_incomplete=False)
                if not spans or spans[0].start != 0 or spans[0].call.name != tool:
                    continue
                args = spans[0].call.args.strip()
                cands.append(
                    Candidate(doc.id, tool, args, sample.position.char, "lm", p_start=sample.position.p)
                )
        return dedupe(cands)
