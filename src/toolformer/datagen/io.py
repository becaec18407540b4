"""Read documents for annotation (JSONL, JSON, Parquet, text, `datasets`) and write its outputs atomically.

Input: `open_source(path, format)` names the source; `iter_rows(source)` yields `(fallback_id, value)` pairs in
input order (a dict per record, or a string for plain text); `to_document(value, fallback_id, ...)` turns one into
a `Document` or, when it cannot be used (missing field, not a string, empty, too long), a `BadRow` that says why.
The fallback id is `<file>:<line>` (JSONL, text), `<file>:<item>` (JSON array, 1-based), `<file>:<row>` (Parquet,
1-based) or `<name>:<row>` (`datasets`), used when a record has no id field.

Output: `write_jsonl_atomic` / `write_json_atomic` write into a temporary file in the same folder, fsync it,
`os.replace` it into place and fsync the folder, so a reader (or a resumed run) sees a whole file or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolformer.datagen.records import Document
from toolformer.errors import ConfigError, DataError
from toolformer.inputs import get_field, iter_lines, read_text

FORMATS = ("auto", "jsonl", "json", "gsm8k", "gsm8k-answer", "text", "parquet", "hf")
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json.gz")
_TEXT_SUFFIXES = (".txt", ".md", ".text")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class BadRow:
    """An input record that cannot be annotated; it is still recorded (with `reason`) so none goes missing."""

    id: str
    reason: str


@dataclass(frozen=True)
class Source:
    """Where documents come from. `kind` is the concrete format: jsonl, json, text, parquet or hf.

    `path` is None for a Hugging Face Hub id (`name`). `text_unit` ("paragraph" or "file") applies to text.
    """

    kind: str
    name: str
    path: Path | None = None
    text_unit: str = "paragraph"
    split: str = "train"


# --------------------------------------------------------------------------------------------- input


def open_source(
    path: str | os.PathLike[str], format: str = "auto", text_unit: str = "paragraph", split: str = "train"
) -> Source:
    """Resolve `path` and `format` into a Source; raises DataError for a missing path, ConfigError for a bad format.

    `format="gsm8k"` reads JSONL (the GSM8K records are turned into documents by the caller); `auto` goes by the
    file suffix (a `.json` file starting with `[` is a JSON array, else JSONL), a folder of `.txt`/`.parquet`
    files, a `datasets.save_to_disk` folder, or a Hub id `owner/name` that is not a local path.
    """
    if format not in FORMATS:
        raise ConfigError(f"format={format!r} is not one of {', '.join(FORMATS)}")
    if text_unit not in ("paragraph", "file"):
        raise ConfigError(f"text_unit={text_unit!r} is not 'paragraph' or 'file'")
    text = str(path)
    p = Path(text).expanduser()
    if not p.exists():
        if format in ("hf", "auto") and _HUB_ID.match(text) and not text.startswith((".", "/", "~")):
            return Source("hf", text, None, text_unit, split)
        raise DataError(f"input {text!r}: no such file or directory")
    kind = format
    if format in ("gsm8k", "gsm8k-answer"):
        kind = "jsonl"
    elif format == "auto":
        kind = _detect(p)
    elif format == "jsonl" and p.is_file() and _looks_like_json_array(p):
        kind = "json"  # --format jsonl on a JSON array would fail on line 1; the user means "JSON records"
    if kind in ("jsonl", "json") and not p.is_file():
        raise DataError(f"input {text!r}: format {kind} needs a file, got a directory")
    return Source(kind, p.name, p, text_unit, split)


def _detect(p: Path) -> str:
    name = p.name.lower()
    if p.is_dir():
        if (
            (p / "dataset_info.json").is_file()
            or (p / "state.json").is_file()
            or (p / "dataset_dict.json").is_file()
        ):
            return "hf"
        files = [f for f in p.rglob("*") if f.is_file()]
        if any(f.suffix.lower() == ".parquet" for f in files):
            return "parquet"
        if any(f.name.lower().endswith(_TEXT_SUFFIXES) for f in files):
            return "text"
        raise DataError(
            f"input {str(p)!r}: a folder without .parquet, .txt or `datasets` files; pass --format"
        )
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(_TEXT_SUFFIXES):
        return "text"
    if name.endswith(".json"):
        return "json" if _looks_like_json_array(p) else "jsonl"
    if name.endswith(_JSONL_SUFFIXES):
        return "jsonl"
    raise DataError(
        f"input {str(p)!r}: cannot tell the format from the name; pass --format (jsonl, json, text, parquet, hf)"
    )


def _looks_like_json_array(p: Path) -> bool:
    for _, line in iter_lines(p):
        if line.strip():
            return line.lstrip().startswith("[")
    return False


def iter_rows(source: Source) -> Iterator[tuple[str, Any]]:
    """`(fallback_id, value)` for every record of `source`, in input order; a dict, or a str for text.

    A JSONL line that is not JSON yields a BadRow instead of a value, so the run can report it and go on.
    """
    if source.kind == "jsonl":
        yield from _iter_jsonl(source)
    elif source.kind == "json":
        yield from _iter_json(source)
    elif source.kind == "text":
        yield from _iter_text(source)
    elif source.kind == "parquet":
        yield from _iter_parquet(source)
    elif source.kind == "hf":
        yield from _iter_hf(source)
    else:  # pragma: no cover - open_source never builds another kind
        raise ConfigError(f"format={source.kind!r} is not readable")


def _iter_jsonl(source: Source) -> Iterator[tuple[str, Any]]:
    assert source.path is not None
    for number, line in iter_lines(source.path):
        if not line.strip():
            continue
        fallback = f"{source.name}:{number}"
        try:
            yield fallback, json.loads(line)
        except ValueError as exc:
            yield fallback, BadRow(fallback, f"line is not JSON ({exc})")


def _iter_json(source: Source) -> Iterator[tuple[str, Any]]:
    assert source.path is not None
    text = read_text(source.path)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DataError(f"input {str(source.path)!r} is not valid JSON: {exc}") from exc
    if isinstance(data, dict):
        # {"data": [...]} and similar wrappers: take the one list of records inside
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(f"input {str(source.path)!r}: a JSON object, expected an array of records")
        data = lists[0]
    if not isinstance(data, list):
        raise DataError(
            f"input {str(source.path)!r}: expected a JSON array of records, got {type(data).__name__}"
        )
    for number, item in enumerate(data, 1):
        yield f"{source.name}:{number}", item


def _text_files(root: Path) -> list[Path]:
    return sorted(f for f in root.rglob("*") if f.is_file() and f.name.lower().endswith(_TEXT_SUFFIXES))


def _iter_text(source: Source) -> Iterator[tuple[str, Any]]:
    assert source.path is not None
    if source.path.is_dir():
        for f in _text_files(source.path):
            rel = f.relative_to(source.path).as_posix()
            if source.text_unit == "file":
                yield rel, read_text(f)
            else:
                yield from _paragraphs(f, rel)
    elif source.text_unit == "file":
        yield source.name, _read_all(source.path)
    else:
        yield from _paragraphs(source.path, source.name)


def _read_all(p: Path) -> str:
    return read_text(p)


def _paragraphs(p: Path, name: str) -> Iterator[tuple[str, str]]:
    """One document per blank-line-separated paragraph; the id is the paragraph's first line number."""
    lines: list[str] = []
    first = 0
    for number, line in iter_lines(p):
        if line.strip():
            if not lines:
                first = number
            lines.append(line.rstrip("\r\n"))
        elif lines:
            yield f"{name}:{first}", "\n".join(lines)
            lines = []
    if lines:
        yield f"{name}:{first}", "\n".join(lines)


def _iter_parquet(source: Source) -> Iterator[tuple[str, Any]]:
    assert source.path is not None
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError(
            f"input {str(source.path)!r} is Parquet, which needs pyarrow: pip install 'toolformer-kit[train]'"
        ) from exc
    files = (
        sorted(f for f in source.path.rglob("*.parquet") if f.is_file())
        if source.path.is_dir()
        else [source.path]
    )
    for f in files:
        name = f.relative_to(source.path).as_posix() if source.path.is_dir() else source.name
        number = 0
        try:
            batches = pq.ParquetFile(f).iter_batches(batch_size=1024)
        except Exception as exc:  # noqa: BLE001 - pyarrow's errors for a damaged or non-Parquet file vary
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"input {str(f)!r} is not a readable Parquet file ({first})") from None
        for batch in batches:
            for row in batch.to_pylist():
                number += 1
                yield f"{name}:{number}", row


def _iter_hf(source: Source) -> Iterator[tuple[str, Any]]:
    try:
        import datasets
    except ImportError as exc:
        raise DataError(
            f"input {source.name!r} is a `datasets` data set, which needs datasets: pip install 'toolformer-kit[train]'"
        ) from exc
    try:
        if source.path is not None:
            ds = datasets.load_from_disk(str(source.path))
        else:
            ds = datasets.load_dataset(source.name, split=source.split)
    except Exception as exc:  # noqa: BLE001 - offline hub, bad folder: one line naming the input
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"input {source.name!r}: cannot load the data set ({first})") from exc
    if isinstance(ds, datasets.DatasetDict):
        if source.split not in ds:
            raise DataError(f"input {source.name!r} has splits {list(ds)}, not split={source.split!r}")
        ds = ds[source.split]
    for number, row in enumerate(ds, 1):
        yield f"{source.name}:{number}", row


def record_id(value: Any, fallback_id: str, id_field: str | None) -> str:
    """The record's id from `id_field` (a string, or a number written as text), else `fallback_id`."""
    if id_field and isinstance(value, dict):
        try:
            found = get_field(value, id_field)
        except KeyError:
            return fallback_id
        if isinstance(found, str) and found.strip():
            return found
        if isinstance(found, (int, float)) and not isinstance(found, bool):
            return str(found)
    return fallback_id


def to_document(
    value: Any, fallback_id: str, text_field: str = "text", id_field: str | None = "id", max_chars: int = 4000
) -> Document | BadRow:
    """A Document from one input record, or a BadRow saying why not (the run reports it and goes on)."""
    if isinstance(value, BadRow):
        return value
    doc_id = record_id(value, fallback_id, id_field)
    if isinstance(value, str):
        text: Any = value
    elif isinstance(value, dict):
        try:
            text = get_field(value, text_field)
        except KeyError:
            return BadRow(doc_id, f"missing field {text_field!r}")
    else:
        return BadRow(doc_id, f"record is a {type(value).__name__}, not an object")
    if not isinstance(text, str):
        return BadRow(doc_id, f"field {text_field!r} is a {type(text).__name__}, not a string")
    if not text.strip():
        return BadRow(doc_id, "empty text")
    if max_chars and len(text) > max_chars:
        return BadRow(doc_id, f"text has {len(text)} characters, more than max_chars={max_chars}")
    meta = (
        {k: v for k, v in value.items() if k not in (text_field, id_field)} if isinstance(value, dict) else {}
    )
    return Document(doc_id, text, _jsonable(meta))


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    """Keep only the metadata that JSON can hold (Parquet/datasets rows may carry bytes, dates, arrays)."""
    out = {}
    for key, value in meta.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[str(key)] = value
    return out


def source_sha256(source: Source) -> str | None:
    """sha256 of the input file (a folder: of its files' relative paths and contents); None for a Hub id."""
    if source.path is None:
        return None
    h = hashlib.sha256()
    if source.path.is_file():
        _hash_file(h, source.path)
        return h.hexdigest()
    for f in sorted(p for p in source.path.rglob("*") if p.is_file()):
        h.update(f.relative_to(source.path).as_posix().encode() + b"\0")
        _hash_file(h, f)
    return h.hexdigest()


def _hash_file(h: Any, path: Path) -> None:
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)


# --------------------------------------------------------------------------------------------- output


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; os.replace is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that `path` is either absent/old or whole, even if the process is killed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write `rows` as JSONL atomically; returns the number of lines."""
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    write_text_atomic(path, "".join(line + "\n" for line in lines))
    return len(lines)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every row of a JSONL file; raises DataError naming the file and line of a row that is not JSON."""
    rows = []
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as exc:
            raise DataError(f"{path}:{number} is not JSON ({exc})") from exc
    return rows


def remove_stale_temps(folder: Path, prefixes: Iterable[str]) -> int:
    """Delete temporary files a killed run left behind for files starting with `prefixes`; returns how many."""
    removed = 0
    if not folder.is_dir():
        return 0
    wanted = tuple(f".{p}" for p in prefixes)
    for f in folder.iterdir():
        if f.is_file() and f.name.startswith(wanted) and f.name.endswith(".tmp"):
            f.unlink(missing_ok=True)
            removed += 1
    return removed
