"""toolformer.versions: what reports record about the installed libraries."""

from __future__ import annotations

from importlib import metadata

import toolformer
from toolformer.versions import dist_versions, versions

ABSENT = "toolformer-no-such-distribution"


def test_versions_start_with_toolformer_and_leave_out_what_is_not_installed():
    out = versions("pytest", ABSENT)
    assert list(out) == ["toolformer", "pytest"]
    assert out == {"toolformer": toolformer.__version__, "pytest": metadata.version("pytest")}


def test_dist_versions_can_mark_a_missing_distribution():
    assert dist_versions([ABSENT, "pytest"]) == {"pytest": metadata.version("pytest")}
    out = dist_versions([ABSENT, "pytest"], missing=None)
    assert list(out) == [ABSENT, "pytest"] and out[ABSENT] is None
