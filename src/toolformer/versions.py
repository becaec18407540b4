"""The versions of toolformer and of installed libraries that reports and manifests record."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_LEAVE_OUT: Any = object()


def dist_versions(dists: Iterable[str], missing: Any = _LEAVE_OUT) -> dict[str, Any]:
    """The installed version of each distribution in `dists`; one not installed gets `missing`, else is left out.

    Read from the installed metadata, so nothing is imported (torch and friends stay unloaded).
    """
    from importlib import metadata

    out: dict[str, Any] = {}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            if missing is not _LEAVE_OUT:
                out[dist] = missing
    return out


def versions(*dists: str) -> dict[str, str]:
    """`{"toolformer": its version, dist: version, ...}` for the distributions of `dists` that are installed."""
    import toolformer

    return {"toolformer": toolformer.__version__, **dist_versions(dists)}
