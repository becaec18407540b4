"""Pretraining a small Llama from random weights (`toolformer pretrain`): config and sizes, corpus packing, trainer.

`from toolformer.pretrain import PretrainConfig, pretrain` — `pretrain` is imported lazily, so importing the
package (and the CLI) stays free of torch and transformers.
"""

from __future__ import annotations

from typing import Any

from toolformer.pretrain.config import SIZES, PretrainConfig

__all__ = ["SIZES", "PretrainConfig", "PretrainReport", "pretrain"]


def __getattr__(name: str) -> Any:
    if name in ("pretrain", "PretrainReport"):
        from toolformer.pretrain import trainer as module

        return getattr(module, name)
    raise AttributeError(f"module 'toolformer.pretrain' has no attribute {name!r}")
