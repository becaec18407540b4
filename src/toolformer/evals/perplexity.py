"""Perplexity of held-out text with tools disabled: p('[') = 0, as in the paper's Table 8.

"Disabled" means the decoder's rule, applied to scoring: every token containing "[" (the same set
`DecodeConfig(disabled=True)` masks) gets probability 0 and the rest is renormalised. A text token that itself
contains "[" is scored with the unmasked distribution (a disabled model could not write it at all), and counted.
The unmasked perplexity, the model's plain LM perplexity, is reported next to it; the difference is the mass the
model puts on starting calls. Perplexity with tools executed is not computed (the paper calls it intractable).

Each text is scored on its own from its second token (the first has no context), at most `max_tokens` tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TextScore:
    """One text: tokens scored and its negative log-likelihood, masked (disabled) and unmasked."""

    tokens: int
    nll: float
    nll_unmasked: float
    bracket_targets: int = 0

    @property
    def ppl(self) -> float:
        return math.exp(self.nll / self.tokens) if self.tokens else float("nan")


@dataclass
class PerplexityResult:
    """Corpus perplexity (token-weighted) with tools disabled, and the plain LM perplexity."""

    tokens: int
    ppl: float
    ppl_unmasked: float
    bracket_targets: int
    texts: list[TextScore] = field(default_factory=list)


def perplexity(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int = 8,
    max_tokens: int = 512,
    on_batch: Callable[[int], None] | None = None,
) -> PerplexityResult:
    """Score `texts` with `model`; `on_batch(n)` is called after each batch of n texts."""
    import torch

    from toolformer.runtime.choose import hf_call_tokens

    vocab = hf_call_tokens(tokenizer, int(model.config.vocab_size))
    bracket = torch.from_numpy(vocab.bracket)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = [tokenizer.encode(t, add_special_tokens=False)[:max_tokens] for t in texts]
    scores: list[TextScore] = []
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            batch = encoded[start : start + batch_size]
            width = max(len(ids) for ids in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, row in enumerate(batch):  # right padding: positions start at 0 for every row
                ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
                mask[b, : len(row)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1, :]
            targets = ids[:, 1:].to(logits.device)
            # log p = logit - logsumexp; with '[' masked the normaliser drops the bracket tokens' mass, computed
            # from their logits alone, so no second vocabulary-sized tensor is built.
            logits = logits.float()
            lse = torch.logsumexp(logits, dim=-1)
            lse_bracket = torch.logsumexp(logits[..., bracket.to(logits.device)], dim=-1)
            lse_masked = lse + torch.log1p(-torch.exp(lse_bracket - lse).clamp(max=1 - 1e-7))
            picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            del logits
            lp_plain = (picked - lse).cpu()
            is_bracket = torch.isin(targets, bracket.to(targets.device)).cpu()
            lp_masked = torch.where(is_bracket, lp_plain, (picked - lse_masked).cpu())
            for b, row in enumerate(batch):
                n = len(row) - 1
                scores.append(
                    TextScore(
                        tokens=n,
                        nll=float(-lp_masked[b, :n].sum()) if n else 0.0,
                        nll_unmasked=float(-lp_plain[b, :n].sum()) if n else 0.0,
                        bracket_targets=int(is_bracket[b, :n].sum()) if n else 0,
                    )
                )
            if on_batch is not None:
                on_batch(len(batch))
    total = sum(s.tokens for s in scores)
    return PerplexityResult(
        tokens=total,
        ppl=math.exp(sum(s.nll for s in scores) / total) if total else float("nan"),
        ppl_unmasked=math.exp(sum(s.nll_unmasked for s in scores) / total) if total else float("nan"),
        bracket_targets=sum(s.bracket_targets for s in scores),
        texts=scores,
    )
