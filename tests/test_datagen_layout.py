"""The folder layout of an annotation run (`datagen/layout.py`): file names, chunk writing and completion, the lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import write_jsonl
from toolformer.datagen.layout import OutputNames, chunk_complete, locked, write_chunk
from toolformer.datagen.outputs import read_records, read_rows
from toolformer.errors import ConfigError


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"  # tmp_path itself also holds the test's toolformer home
    folder.mkdir()
    return folder


def _record(doc_id: str, kept: int) -> dict:
    return {"id": doc_id, "split": "train", "status": "ok", "kept_calls": kept}


def _row(doc_id: str) -> dict:
    return {"id": doc_id, "split": "train", "text": "with call", "source_text": "without", "calls": []}


def test_a_single_worker_uses_plain_names_and_several_workers_tag_theirs(out):
    one, third = OutputNames(), OutputNames(shard_id=2, num_shards=4)
    assert [p.name for p in (one.shard(out, 3), one.records(out, 3), one.manifest(out))] == [
        "shard-00003.jsonl",
        "records-00003.jsonl",
        "manifest.json",
    ]
    assert [p.name for p in (third.shard(out, 3), third.records(out, 3), third.manifest(out))] == [
        "shard-w002of004-00003.jsonl",
        "records-w002of004-00003.jsonl",
        "manifest-w002of004.json",
    ]
    assert one.lock(out).name == ".lock-w000of001-annotate"
    assert third.lock(out).name == ".lock-w002of004-annotate"
    assert third.prefixes == ["shard-w002of004-", "records-w002of004-", "manifest-w002of004.json"]


def test_write_chunk_writes_the_kept_rows_and_every_record_and_then_the_chunk_is_complete(out):
    names = OutputNames()
    results = [(_record("a", 1), _row("a")), (_record("b", 0), None)]
    assert not chunk_complete(out, names, 0, ["a", "b"])
    write_chunk(out, names, 0, results)
    assert [r.id for r in read_records(names.records(out, 0))] == ["a", "b"]
    assert [r.id for r in read_rows(names.shard(out, 0))] == ["a"]
    assert chunk_complete(out, names, 0, ["a", "b"])
    assert not chunk_complete(out, names, 0, ["b", "a"])  # another plan: the chunk is redone
    assert not chunk_complete(out, names, 1, ["a", "b"])
    assert sorted(p.name for p in out.iterdir()) == ["records-00000.jsonl", "shard-00000.jsonl"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda shard, records: shard.unlink(),  # the records file alone does not make a chunk
        lambda shard, records: records.write_text('{"id": "a"', encoding="utf-8"),  # cut short
        lambda shard, records: records.write_bytes(b"\xff\xfe"),
        lambda shard, records: write_jsonl(shard, []),  # a kept row is missing from the shard
        lambda shard, records: write_jsonl(shard, [_row("a"), _row("b")]),  # a row the records did not keep
    ],
)
def test_a_chunk_with_a_missing_or_broken_file_is_not_complete(out: Path, damage):
    names = OutputNames()
    write_chunk(out, names, 0, [(_record("a", 1), _row("a")), (_record("b", 0), None)])
    damage(names.shard(out, 0), names.records(out, 0))
    assert not chunk_complete(out, names, 0, ["a", "b"])


def test_a_second_run_on_the_same_workers_lock_is_refused_until_the_first_lets_go(out):
    path = OutputNames().lock(out)
    refused = r"another annotate run is writing .* \(lock \.lock-w000of001-annotate\)"
    with locked(path):
        with pytest.raises(ConfigError, match=refused), locked(path):
            pass
        with locked(OutputNames(shard_id=1, num_shards=2).lock(out)):  # another worker's lock is free
            pass
    with locked(path):  # released
        pass
