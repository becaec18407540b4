"""Where tests find the real data sets (`../shared/data` beside the checkout): skip locally, fail in CI.

`shared_data("gsm8k/gsm8k_train.jsonl")` is the file's path. The folder is `$TOOLFORMER_SHARED_DATA` when set,
else `../shared/data` relative to the repository root (CI clones main with `../shared` beside it). A missing
file skips the test with the path in the reason, except when `$CI` is set: there it fails the test, because a
CI run that silently skips the tests on real data has not tested them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_ENV = "TOOLFORMER_SHARED_DATA"
REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """The shared data folder ($TOOLFORMER_SHARED_DATA, else ../shared/data next to the checkout)."""
    override = os.environ.get(DATA_ENV)
    return Path(override) if override else REPO.parent / "shared" / "data"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def shared_data(relpath: str) -> Path:
    """The path of `relpath` under the shared data folder; skips the test (fails it in CI) when it is missing."""
    path = data_root() / relpath
    if not path.exists():
        message = f"real data not available: {path} (set {DATA_ENV} to the shared data folder)"
        if in_ci():
            pytest.fail(f"{message}; CI must run the tests on real data", pytrace=False)
        pytest.skip(message)
    return path
