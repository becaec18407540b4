"""Helpers shared by the config dataclasses: the help text and default of a field, for the CLI options."""

from __future__ import annotations

from dataclasses import fields
from typing import Any


def field_help(cls: type, name: str) -> str:
    """The help text of field `name` of dataclass `cls` (the CLI uses it for the option)."""
    return next(f.metadata["help"] for f in fields(cls) if f.name == name)


def field_default(cls: type, name: str) -> Any:
    """The default of field `name` of dataclass `cls` (factories included)."""
    return getattr(cls(), name)
