"""Make a model smaller and faster, and measure what it costs (`toolformer compress`).

Methods: trim (keep N decoder layers, optionally healed), prune (magnitude, unstructured), prune-structured (MLP
channels removed), int8 (torch.ao dynamic), int8-wo / int4-wo (torchao weight-only), bf16. Each writes a folder
that `toolformer.models.load_model` loads, with a report comparing it with its source: weights on disk, peak
memory, tokens/s, perplexity and math accuracy with tools.

    from toolformer.compress import CompressConfig, compress
    result = compress(CompressConfig(model="smollm2-135m-instruct", method="int8", out="smol-int8"))

Importing this package does not import torch.
"""

from __future__ import annotations

from typing import Any

from toolformer.compress.config import METHODS, CompressConfig

__all__ = ["METHODS", "CompressConfig", "CompressResult", "compress"]


def __getattr__(name: str) -> Any:
    if name in ("compress", "CompressResult"):
        from toolformer.compress import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'toolformer.compress' has no attribute {name!r}")
