"""toolformer: teach language models to use tools (Toolformer, Schick et al. 2023) and run them with those tools."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Toolformer", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import toolformer` and `import toolformer.tools` stay free of torch.
    if name == "Toolformer":
        from toolformer.runtime.engine import Toolformer

        return Toolformer
    raise AttributeError(f"module 'toolformer' has no attribute {name!r}")
