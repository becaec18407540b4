"""One error tree for toolformer: every error a user can cause is a ToolformerError with a one-line message."""

from __future__ import annotations


class ToolformerError(Exception):
    """Base of every error toolformer raises on purpose; the CLI prints its message on one line."""


class ConfigError(ToolformerError, ValueError):
    """A bad argument, option or config field; the message names it and its value."""


class ModelNotFoundError(ToolformerError):
    """A model name, path or file that cannot be loaded; the message says how to get it."""


class ToolNotFoundError(ToolformerError, KeyError):
    """A tool name that no registry knows."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ToolError(ToolformerError):
    """A tool could not run; at generation time this becomes `error: …` text, never a crash."""


class ToolTimeoutError(ToolError):
    """A tool ran past its time limit."""


class DataError(ToolformerError):
    """Bad input data: the message names the file, line or field."""


class MissingExtraError(ToolformerError, ImportError):
    """An optional dependency is missing; the message carries the install command."""


def require(module: str, extra: str) -> None:
    """Import `module` or raise MissingExtraError naming the pip extra that provides it."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{module} is not installed: pip install 'toolformer-kit[{extra}]'") from exc
