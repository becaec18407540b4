"""Where toolformer keeps its caches (converted models, search indexes): `$TOOLFORMER_HOME` or ~/.cache/toolformer."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "TOOLFORMER_HOME"


def toolformer_home() -> Path:
    """The toolformer data directory: `$TOOLFORMER_HOME`, else `~/.cache/toolformer`."""
    value = os.environ.get(HOME_ENV, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "toolformer"
