"""The folder layout of an annotation run: its file names, the chunk files' writing and completion, the lock.

Each finished chunk is written atomically as `shard-NNNNN.jsonl` (the kept rows) then `records-NNNNN.jsonl`
(every document; its presence marks the chunk done), next to `manifest.json`. With `num_shards > 1` every name
carries the worker (`shard-w001of004-00000.jsonl`, `manifest-w001of004.json`) so workers share one folder; each
worker holds an exclusive lock (`.lock-w001of004-annotate`) while it writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolformer.datagen.io import write_jsonl_atomic
from toolformer.datagen.outputs import read_records, read_rows
from toolformer.errors import ConfigError, DataError


@dataclass(frozen=True)
class OutputNames:
    """File names of one worker's outputs in the shared folder."""

    shard_id: int = 0
    num_shards: int = 1

    @property
    def tag(self) -> str:
        return "" if self.num_shards == 1 else f"w{self.shard_id:03d}of{self.num_shards:03d}-"

    def shard(self, out: Path, chunk: int) -> Path:
        return out / f"shard-{self.tag}{chunk:05d}.jsonl"

    def records(self, out: Path, chunk: int) -> Path:
        return out / f"records-{self.tag}{chunk:05d}.jsonl"

    def manifest(self, out: Path) -> Path:
        return out / ("manifest.json" if self.num_shards == 1 else f"manifest-{self.tag[:-1]}.json")

    def lock(self, out: Path) -> Path:
        return out / f".lock-{self.tag or 'w000of001-'}annotate"

    @property
    def prefixes(self) -> list[str]:
        return [f"shard-{self.tag}", f"records-{self.tag}", self.manifest(Path()).name]


def chunk_complete(out: Path, names: OutputNames, index: int, ids: list[str]) -> bool:
    """Both files of chunk `index` exist, the records hold exactly `ids` in order, the shard the kept ones."""
    rec_path, shard_path = names.records(out, index), names.shard(out, index)
    if not rec_path.is_file() or not shard_path.is_file():
        return False
    try:
        records = read_records(rec_path)
        rows = read_rows(shard_path)
    except (DataError, OSError, UnicodeDecodeError):
        return False
    if [r.id for r in records] != ids:
        return False
    return [r.id for r in rows] == [r.id for r in records if r.kept_calls > 0]


def write_chunk(
    out: Path, names: OutputNames, index: int, results: list[tuple[dict[str, Any], dict[str, Any] | None]]
) -> None:
    # Shard first, records last: the records file marks the chunk as done.
    write_jsonl_atomic(names.shard(out, index), [row for _, row in results if row is not None])
    write_jsonl_atomic(names.records(out, index), [record for record, _ in results])


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` so two runs never write the same worker's files at once."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the user keeps runs apart
        yield
        return
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(
                f"another annotate run is writing {path.parent} (lock {path.name}); wait for it or use another --out"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
