"""Fine-tuning on the augmented corpus (`toolformer train`): config, data mixing, the TRL trainer, progress.

`from toolformer.train import TrainConfig, train` — `train` is imported lazily, so importing the package (and the
CLI) stays free of torch and transformers.
"""

from __future__ import annotations

from typing import Any

from toolformer.train.config import TrainConfig

__all__ = ["TrainConfig", "TrainReport", "train"]


def __getattr__(name: str) -> Any:
    if name in ("train", "TrainReport"):
        from toolformer.train import trainer as module

        return getattr(module, name)
    raise AttributeError(f"module 'toolformer.train' has no attribute {name!r}")
