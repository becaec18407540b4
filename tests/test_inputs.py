"""toolformer.inputs: a folder is not "missing", bad bytes are named by file and line, BOMs and gzip are read,
dotted fields are found."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from toolformer.errors import DataError
from toolformer.inputs import get_field, input_file, iter_lines, open_text, read_text


def test_input_file_tells_a_folder_from_a_missing_file(tmp_path: Path):
    (tmp_path / "f.jsonl").write_text("{}\n")
    assert input_file(tmp_path / "f.jsonl", "data") == tmp_path / "f.jsonl"
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match=r"^data='.*folder' is a directory, not a file$"):
        input_file(tmp_path / "folder", "data")
    with pytest.raises(DataError, match=r"^data='.*nope\.jsonl': no such file$"):
        input_file(tmp_path / "nope.jsonl", "data")


def test_iter_lines_names_the_line_with_bad_bytes(tmp_path: Path):
    path = tmp_path / "c.jsonl"
    path.write_bytes("\ufeff{}\n".encode() + b'{"a": "ok"}\n' + b'{"a": "caf\xe9"}\n')
    lines = iter_lines(path)
    assert next(lines) == (1, "{}\n")  # the byte-order mark is dropped
    assert next(lines) == (2, '{"a": "ok"}\n')
    with pytest.raises(DataError, match=r"c\.jsonl:3: not UTF-8 text \(byte 0xe9 at column 11\)"):
        next(lines)


def test_gzip_is_read_and_a_broken_gzip_is_one_line(tmp_path: Path):
    good = tmp_path / "c.jsonl.gz"
    with gzip.open(good, "wt", encoding="utf-8") as fh:
        fh.write("one\ntwo\n")
    assert [n for n, _ in iter_lines(good)] == [1, 2]
    assert read_text(good) == "one\ntwo\n"
    bad = tmp_path / "b.jsonl.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"b\.jsonl\.gz:1: cannot read"):
        list(iter_lines(bad))


def test_read_text_counts_the_line_of_a_bad_byte_and_normalises_newlines(tmp_path: Path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"a\r\nb\rc\n")
    assert read_text(path) == "a\nb\nc\n" and read_text(path, newlines=False) == "a\r\nb\rc\n"
    path.write_bytes(b"first\nsecond \xff line\nthird\n")
    with pytest.raises(DataError, match=r"t\.txt:2: not UTF-8 text \(byte 0xff at column 8\)"):
        read_text(path)


def test_open_text_reads_plain_and_gzipped_files_alike(tmp_path: Path):
    text = "first line\nzweite Zeile: café\r\nthird\n"
    (tmp_path / "a.txt").write_text(text, encoding="utf-8", newline="")
    with gzip.open(tmp_path / "a.txt.GZ", "wb") as fh:
        fh.write(text.encode())
    for name in ("a.txt", "a.txt.GZ"):
        with open_text(tmp_path / name) as fh:
            assert fh.read() == "first line\nzweite Zeile: café\nthird\n"  # universal newlines, like open()


def test_get_field_follows_dotted_paths_and_keys_with_dots():
    row = {"answers": {"text": ["Paris", "paris"]}, "meta.id": 7, "pair": ("a", "b"), "meta": {"id": 8}}
    assert get_field(row, "answers.text.0") == "Paris"
    assert get_field(row, "answers.text.-1") == "paris"
    assert get_field(row, "pair.1") == "b"
    assert get_field(row, "meta.id") == 7  # the whole name first
    assert get_field(row, "meta") == {"id": 8}
    assert get_field(["x", {"y": 1}], "1.y") == 1
    for missing in ("answers.text.2", "answers.nope", "pair.x", "nope"):
        assert get_field(row, missing, None) is None
        with pytest.raises(KeyError, match=missing):
            get_field(row, missing)
