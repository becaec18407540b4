"""Reading annotation inputs (JSONL, JSON, Parquet, text, `datasets`) and writing outputs atomically."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from fakes import write_jsonl
from toolformer.datagen import io as dio
from toolformer.datagen.records import Document
from toolformer.errors import ConfigError, DataError


def docs_of(path: Path | str, fmt: str = "auto", **kwargs) -> list[Document | dio.BadRow]:
    text_unit = kwargs.pop("text_unit", "paragraph")
    source = dio.open_source(path, fmt, text_unit=text_unit)
    return [dio.to_document(value, fid, **kwargs) for fid, value in dio.iter_rows(source)]


def test_jsonl_ids_fall_back_to_file_and_line_and_bad_rows_say_why(tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"id": "a", "text": "first"},
            "",
            {"text": "no id here"},
            "{not json",
            {"id": 7, "text": "numeric id"},
            {"id": "m", "body": "no text field"},
            {"id": "n", "text": ["not", "a", "string"]},
            {"id": "e", "text": "   "},
            {"id": "long", "text": "x" * 50},
        ],
    )
    out = docs_of(path, max_chars=20)
    assert [d.id for d in out] == ["a", "c.jsonl:3", "c.jsonl:4", "7", "m", "n", "e", "long"]
    assert isinstance(out[0], Document) and out[0].text == "first"
    reasons = {d.id: d.reason for d in out if isinstance(d, dio.BadRow)}
    assert "not JSON" in reasons["c.jsonl:4"]
    assert reasons["m"] == "missing field 'text'"
    assert "list, not a string" in reasons["n"]
    assert reasons["e"] == "empty text"
    assert "50 characters" in reasons["long"] and "max_chars=20" in reasons["long"]
    assert isinstance(out[3], Document)


def test_dotted_text_field_and_id_field(tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"meta": {"key": "k1"}, "doc": {"body": "nested text"}},
            {"meta": {"key": "k2"}, "messages": [{"content": "in a list"}]},
            {"doc.body": "a key with a dot"},
        ],
    )
    first = docs_of(path, text_field="doc.body", id_field="meta.key")
    assert (first[0].id, first[0].text) == ("k1", "nested text")
    assert isinstance(first[1], dio.BadRow) and first[1].id == "k2"
    assert first[2].text == "a key with a dot"
    listed = docs_of(path, text_field="messages.0.content", id_field="meta.key")
    assert listed[1].text == "in a list"


def test_json_array_and_wrapped_array_and_gzip_jsonl(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"text": "one"}, {"id": "x", "text": "two"}]))
    assert [(d.id, d.text) for d in docs_of(tmp_path / "a.json")] == [("a.json:1", "one"), ("x", "two")]
    (tmp_path / "w.json").write_text(json.dumps({"version": 1, "data": [{"text": "wrapped"}]}))
    assert docs_of(tmp_path / "w.json", "json")[0].text == "wrapped"
    with gzip.open(tmp_path / "z.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"text": "zipped"}) + "\n")
    assert docs_of(tmp_path / "z.jsonl.gz")[0].text == "zipped"
    # A .json file holding JSON lines is read as JSONL.
    write_jsonl(tmp_path / "lines.json", [{"text": "l1"}, {"text": "l2"}])
    assert [d.text for d in docs_of(tmp_path / "lines.json")] == ["l1", "l2"]


def test_parquet_file_and_folder(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"id": ["p1", None, "p3"], "text": ["alpha", "beta", None]})
    pq.write_table(table, tmp_path / "t.parquet")
    out = docs_of(tmp_path / "t.parquet")
    assert [d.id for d in out] == ["p1", "t.parquet:2", "p3"]
    assert out[1].text == "beta" and isinstance(out[2], dio.BadRow)
    folder = tmp_path / "pq"
    folder.mkdir()
    pq.write_table(pa.table({"text": ["b1"]}), folder / "b.parquet")
    pq.write_table(pa.table({"text": ["a1", "a2"]}), folder / "a.parquet")
    assert dio.open_source(folder).kind == "parquet"
    assert [(d.id, d.text) for d in docs_of(folder)] == [
        ("a.parquet:1", "a1"),
        ("a.parquet:2", "a2"),
        ("b.parquet:1", "b1"),
    ]


def test_text_paragraphs_and_files(tmp_path):
    (tmp_path / "t.txt").write_text("Para one\nstill one.\n\n\nPara two.\n  \nPara three.", encoding="utf-8")
    out = docs_of(tmp_path / "t.txt")
    assert [(d.id, d.text) for d in out] == [
        ("t.txt:1", "Para one\nstill one."),
        ("t.txt:5", "Para two."),
        ("t.txt:7", "Para three."),
    ]
    whole = docs_of(tmp_path / "t.txt", text_unit="file")
    assert len(whole) == 1 and "Para three." in whole[0].text
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("B text", encoding="utf-8")
    (folder / "sub" / "a.txt").write_text("A text\n\nA two", encoding="utf-8")
    assert [d.id for d in docs_of(folder, "text", text_unit="file")] == ["b.txt", "sub/a.txt"]
    assert [d.id for d in docs_of(folder, "text")] == ["b.txt:1", "sub/a.txt:1", "sub/a.txt:3"]


def test_datasets_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"id": "h1", "text": "from datasets"}, {"id": "h2", "text": "second"}])
    ds.save_to_disk(str(tmp_path / "ds"))
    assert dio.open_source(tmp_path / "ds").kind == "hf"
    assert [d.id for d in docs_of(tmp_path / "ds")] == ["h1", "h2"]
    datasets.DatasetDict({"validation": ds}).save_to_disk(str(tmp_path / "dd"))
    source = dio.open_source(tmp_path / "dd", split="validation")
    assert [v["id"] for _, v in dio.iter_rows(source)] == ["h1", "h2"]
    with pytest.raises(DataError, match="validation"):
        list(dio.iter_rows(dio.open_source(tmp_path / "dd")))


def test_format_detection_and_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        dio.open_source(tmp_path / "missing.jsonl")
    (tmp_path / "data.bin").write_text("x")
    with pytest.raises(DataError, match="--format"):
        dio.open_source(tmp_path / "data.bin")
    assert dio.open_source(tmp_path / "data.bin", "text").kind == "text"
    with pytest.raises(ConfigError, match="format='xml'"):
        dio.open_source(tmp_path / "data.bin", "xml")
    hub = dio.open_source("someone/some-dataset")
    assert hub.kind == "hf" and hub.path is None
    assert dio.open_source(tmp_path / "data.bin", "gsm8k").kind == "jsonl"


def test_source_sha256_follows_content(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "a"}])
    first = dio.source_sha256(dio.open_source(path))
    assert first == dio.source_sha256(dio.open_source(path))
    write_jsonl(path, [{"text": "b"}])
    assert dio.source_sha256(dio.open_source(path)) != first
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    before = dio.source_sha256(dio.open_source(folder))
    (folder / "a.txt").rename(folder / "b.txt")
    assert dio.source_sha256(dio.open_source(folder)) != before  # names count, not just bytes


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "out" / "shard-00000.jsonl"
    assert dio.write_jsonl_atomic(path, [{"id": "a"}, {"id": "b"}]) == 2
    assert dio.read_jsonl(path) == [{"id": "a"}, {"id": "b"}]

    def boom(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(dio.os, "replace", boom)
    with pytest.raises(OSError, match="disk gone"):
        dio.write_jsonl_atomic(path, [{"id": "c"}])
    monkeypatch.undo()
    assert dio.read_jsonl(path) == [{"id": "a"}, {"id": "b"}]
    assert sorted(p.name for p in path.parent.iterdir()) == ["shard-00000.jsonl"]


def test_remove_stale_temps_only_touches_its_prefixes(tmp_path):
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    (tmp_path / ".shard-00001.jsonl.abc.tmp").write_text("half")
    (tmp_path / ".records-00001.jsonl.def.tmp").write_text("half")
    (tmp_path / ".shard-w001of002-00001.jsonl.x.tmp").write_text("other worker")
    (tmp_path / "shard-00000.jsonl").write_text("{}\n")
    removed = dio.remove_stale_temps(tmp_path, ["shard-0", "records-0"])
    assert removed == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".shard-w001of002-00001.jsonl.x.tmp",
        "shard-00000.jsonl",
    ]


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n{"id": \n')
    with pytest.raises(DataError, match=r"r.jsonl:2"):
        dio.read_jsonl(path)


def test_written_files_get_the_usual_mode(tmp_path):
    # mkstemp creates 0600 files; outputs in a shared folder must get the mode open() would give them.
    path = tmp_path / "m.json"
    old = os.umask(0o022)
    try:
        dio.write_json_atomic(path, {"a": 1})
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {"a": 1}
    assert path.stat().st_mode & 0o777 == 0o644
