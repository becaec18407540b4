"""Row surgery on a transformers `DynamicCache` for continuous batching: join two caches, copy a prefix, drop columns.

A cache holds, per layer, keys and values of shape (rows, heads, positions, head_dim); rows of one cache are
aligned on positions by left padding, with the batch's attention mask saying which positions are real. Joining
two caches pads the shorter on the left with zeros (masked out), so neither side's attention changes; dropping a
column that every row masks changes nothing either. Only plain `DynamicLayer`s qualify: a sliding-window or
linear-attention layer keeps positions by count, which padding would shift.

A stand-in cache (the tests' fakes) that has no `layers` joins through its own `batch_concat(other)`.
"""

from __future__ import annotations

from typing import Any

from toolformer.errors import ConfigError


def check_cache(cache: Any) -> None:
    """Raise `ConfigError` unless rows can join and leave `cache` (plain dynamic layers, or a `batch_concat`)."""
    layers = getattr(cache, "layers", None)
    if layers is None:
        if not hasattr(cache, "batch_concat"):
            raise ConfigError(f"model cache {type(cache).__name__} cannot take joining rows")
        return
    from transformers.cache_utils import DynamicLayer

    odd = {type(layer).__name__ for layer in layers if type(layer) is not DynamicLayer}
    if odd:
        raise ConfigError(f"model cache layers {sorted(odd)} cannot take joining rows (use static batching)")


def _pad_left(t: Any, width: int) -> Any:
    import torch

    if t.shape[-2] == width:
        return t
    pad = torch.zeros((*t.shape[:-2], width - t.shape[-2], t.shape[-1]), dtype=t.dtype, device=t.device)
    return torch.cat([pad, t], dim=-2)


def join(a: Any, mask_a: Any, b: Any, mask_b: Any) -> tuple[Any, Any]:
    """The rows of cache `a` then those of `b`, left-padded to one width, with their joined attention mask."""
    import torch

    width = max(mask_a.shape[1], mask_b.shape[1])
    mask = torch.cat(
        [
            torch.nn.functional.pad(mask_a, (width - mask_a.shape[1], 0)),
            torch.nn.functional.pad(mask_b, (width - mask_b.shape[1], 0)),
        ]
    )
    if not hasattr(a, "layers"):
        a.batch_concat(b)
        return a, mask
    for la, lb in zip(a.layers, b.layers, strict=True):
        la.keys = torch.cat([_pad_left(la.keys, width), _pad_left(lb.keys, width)])
        la.values = torch.cat([_pad_left(la.values, width), _pad_left(lb.values, width)])
    return a, mask


def keep_columns(cache: Any, mask: Any) -> tuple[Any, Any]:
    """`cache` and `mask` without the positions no row attends to (left by rows that left)."""
    used = mask.any(dim=0)
    if bool(used.all()) or not hasattr(cache, "layers"):
        return cache, mask
    index = used.nonzero().squeeze(1)
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(-2, index)
        layer.values = layer.values.index_select(-2, index)
    return cache, mask[:, index]


def prefix_copy(cache: Any, length: int, rows: int) -> Any:
    """A new cache holding the first `length` positions of one-row `cache`, repeated for `rows` rows."""
    from transformers import DynamicCache

    data = [
        (
            layer.keys[..., :length, :].repeat_interleave(rows, dim=0),
            layer.values[..., :length, :].repeat_interleave(rows, dim=0),
        )
        for layer in cache.layers
    ]
    return DynamicCache(data)
