"""Cutting the LM proposer's scoring KV cache into a batch of prefixes, so sampling encodes no prefix twice.

The scoring pass over P(x) + x leaves a one-row DynamicCache; `cut_cache` makes from it a left-padded batch whose
row r holds the first n_r positions (one kept position's prefix). Only plain DynamicCaches of full-attention
layers can be cut (`plain_dynamic_cache`); other caches make the proposer re-encode every prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def cut_cache(cache: Any, lengths: Sequence[int]) -> Any:
    """A batch DynamicCache whose row r holds the first `lengths[r]` positions of the one-row `cache`, left-padded
    with zeros to the longest (the pads are masked out by the attention mask that goes with them)."""
    import torch
    from transformers import DynamicCache

    width = max(lengths)
    data = []
    with torch.inference_mode():
        for layer in cache.layers:
            pair = []
            for full in (layer.keys, layer.values):
                cut = full.new_zeros((len(lengths), full.shape[1], width, full.shape[3]))
                for r, n in enumerate(lengths):
                    cut[r, :, width - n :] = full[0, :, :n]
                pair.append(cut)
            data.append(tuple(pair))
        return DynamicCache(data)


def plain_dynamic_cache(cache: Any) -> bool:
    """Whether `cache` is a DynamicCache of full-attention layers whose tensors can be cut and re-batched."""
    if cache is None:
        return False
    try:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer
    except ImportError:
        return False
    return (
        isinstance(cache, DynamicCache)
        and bool(cache.layers)
        and all(type(layer) is DynamicLayer and layer.keys is not None for layer in cache.layers)
    )
