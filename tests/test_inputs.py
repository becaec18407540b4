"""toolformer.inputs: a folder is not "missing", bad bytes are named by file and line, BOMs and gzip are read."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from toolformer.errors import DataError
from toolformer.inputs import input_file, iter_lines, read_text


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
