"""Open the files users pass in: a folder is not "missing", bad bytes name their file and line, never a traceback.

`input_file(path, option)` checks that a path given for `option` is a readable file (a DataError says whether it is
missing or a folder). `iter_lines(path)` yields `(line number, text)` of a UTF-8 file (gzip when it ends in `.gz`),
decoding line by line so a byte that is not UTF-8 is reported as `FILE:LINE`; `read_text(path)` reads a whole
file the same way. A UTF-8 byte-order mark at the start is dropped. Every problem is a one-line DataError.
`open_text(path)` is the plain text handle (gzip too) for readers that report errors their own way, and
`get_field(record, "a.b.0")` reads a dotted field of a record read from such a file.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, TextIO

from toolformer.errors import DataError

_BOM = "\ufeff"
_MISSING: Any = object()


def input_file(path: str | os.PathLike[str], option: str) -> Path:
    """`path` as a Path when it is an existing file; DataError naming `option` when it is missing or a folder."""
    text = str(path)
    p = Path(text).expanduser()
    if p.is_dir():
        raise DataError(f"{option}={text!r} is a directory, not a file")
    if not p.exists():
        raise DataError(f"{option}={text!r}: no such file")
    if not p.is_file():
        raise DataError(f"{option}={text!r} is not a regular file")
    return p


def not_utf8(path: Path, line: int, raw: bytes, exc: UnicodeDecodeError) -> DataError:
    """The one-line error for bytes of `path` (its line `line`, `raw`) that are not UTF-8."""
    bad = raw[exc.start : exc.start + 1].hex() or "?"
    return DataError(
        f"{path}:{line}: not UTF-8 text (byte 0x{bad} at column {exc.start + 1}); "
        "is it a binary file? Save it as UTF-8"
    )


def _open_binary(path: Path) -> IO[bytes]:
    try:
        if path.name.lower().endswith(".gz"):
            return gzip.open(path, "rb")
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not a file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def iter_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """`(number, line)` for every line of the UTF-8 (or gzipped UTF-8) file `path`, line end kept."""
    p = Path(path)
    number = 0
    try:
        with _open_binary(p) as fh:
            for number, raw in enumerate(fh, 1):  # noqa: B007 - `number` is read in the except clauses
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise not_utf8(p, number, raw, exc) from None
                if number == 1:
                    line = line.removeprefix(_BOM)
                yield number, line
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; EOFError: a cut-off gzip stream
        raise DataError(f"{p}:{number + 1}: cannot read ({exc})") from None


def read_text(path: str | os.PathLike[str], newlines: bool = True) -> str:
    """The whole UTF-8 (or gzipped UTF-8) file; `newlines` turns CRLF and CR into LF like text mode does."""
    p = Path(path)
    try:
        with _open_binary(p) as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{p}: cannot read ({exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = data.rfind(b"\n", 0, exc.start) + 1
        end = data.find(b"\n", exc.start)
        line = data[start : end if end >= 0 else len(data)]
        shifted = UnicodeDecodeError(exc.encoding, line, exc.start - start, exc.end - start, exc.reason)
        raise not_utf8(p, data.count(b"\n", 0, exc.start) + 1, line, shifted) from None
    text = text.removeprefix(_BOM)
    return text.replace("\r\n", "\n").replace("\r", "\n") if newlines else text


def open_text(path: str | os.PathLike[str]) -> TextIO:
    """`path` opened as UTF-8 text (universal newlines), gunzipped when its name ends in `.gz`; the caller closes it.

    Nothing is checked here: OSError, UnicodeDecodeError and EOFError (a cut-off gzip) surface while reading.
    """
    p = Path(path)
    if p.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8")
    return open(p, encoding="utf-8")  # noqa: SIM115 - the caller closes it


def get_field(record: Any, dotted: str, default: Any = _MISSING) -> Any:
    """`record[a][b]...` for `dotted="a.b"` (list items by number: `messages.0.content`).

    A key that itself contains dots (`{"meta.text": ...}`) is found too: the whole name is tried first. A field
    that is not there returns `default`, or raises KeyError(dotted) when no default is given.
    """
    if isinstance(record, dict) and dotted in record:
        return record[dotted]
    value = record
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif (
            isinstance(value, (list, tuple))
            and part.lstrip("-").isdigit()
            and -len(value) <= int(part) < len(value)
        ):
            value = value[int(part)]
        else:
            if default is _MISSING:
                raise KeyError(dotted)
            return default
    return value
