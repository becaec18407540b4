"""Read an annotate output folder back as typed records: the one reader of `annotate`, `annotate inspect` and `train`.

Layout (written by `annotate.py`, see its docstring): per chunk a `records-*.jsonl` file (a `DocumentRecord` per
input row, in input order; written last, it marks the chunk as done) and a `shard-*.jsonl` file (a `TrainingRow`
per document that kept a call, in the same order); one `manifest*.json` per worker, whose "status" stays
"running" until that worker has finished.

`AnnotateFolder(path).documents()` joins them into one `AnnotatedDocument` per input row: its record, its shard row
and its text without calls: the row's `source_text`, else the record's `text`, else (folders written before
records held the text) the text rebuilt from the annotate input with the run's own options
(`annotate.input_documents`). Whatever stops that last step (the input moved or changed, a Hub data set) becomes a
note, and those documents carry the reason instead of a text. `unfinished()` says why a folder is not a finished
run (a worker still "running", workers missing).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolformer.datagen.io import read_jsonl
from toolformer.datagen.records import DocumentRecord, TrainingRow
from toolformer.errors import DataError, ToolformerError

ANNOTATED, PLAIN, BAD = "annotated", "plain", "bad"
_RECORDS, _SHARD = "records-", "shard-"


# --------------------------------------------------------------------------------------------- files


def read_records(path: Path) -> list[DocumentRecord]:
    """Every record of one `records-*.jsonl` file; DataError naming the file and line of one that is not a record."""
    return [_typed(DocumentRecord, row, path, n) for n, row in enumerate(read_jsonl(path), 1)]


def read_rows(path: Path) -> list[TrainingRow]:
    """Every row of one `shard-*.jsonl` file; DataError naming the file and line of one that is not a row."""
    return [_typed(TrainingRow, row, path, n) for n, row in enumerate(read_jsonl(path), 1)]


def _typed(cls: Any, row: Any, path: Path, number: int) -> Any:
    try:
        if not isinstance(row, dict):
            raise TypeError(f"a JSON {type(row).__name__}, not an object")
        return cls.from_dict(row)
    except (KeyError, TypeError, ValueError) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise DataError(f"{path} row {number} is not an annotate {cls.__name__} ({what})") from None


# --------------------------------------------------------------------------------------------- documents


@dataclass
class CallContext:
    """One candidate call of a document with the text around its position (for `annotate inspect`)."""

    call: str
    tool: str
    position: int
    gain: float | None
    kept: bool
    reason: str
    before: str
    after: str


@dataclass
class AnnotatedDocument:
    """One input row of an annotate run: its record, its shard row (if it kept a call) and its text without calls.

    `record` is None only for a shard row whose records file is missing (a chunk not finished, a hand-made
    folder). `text` is None when it cannot be found; `missing` then says why.
    """

    record: DocumentRecord | None
    row: TrainingRow | None
    text: str | None = None
    missing: str = ""

    @property
    def id(self) -> str:
        return self.record.id if self.record is not None else self.row.id  # type: ignore[union-attr]

    @property
    def split(self) -> str:
        return self.record.split if self.record is not None else self.row.split  # type: ignore[union-attr]

    @property
    def kind(self) -> str:
        """BAD (an input row annotate could not read), ANNOTATED (kept a call) or PLAIN (kept none)."""
        if self.record is None:
            return ANNOTATED
        if self.record.status == "bad":
            return BAD
        return ANNOTATED if self.record.kept_calls > 0 or self.row is not None else PLAIN

    @property
    def gain(self) -> float | None:
        """The largest gain L⁻ − L⁺ among its candidates (or kept calls); None when nothing was scored."""
        if self.record is not None and self.record.candidates:
            return self.record.gain
        gains = [c.gain for c in self.row.calls if c.gain is not None] if self.row is not None else []
        return max(gains) if gains else None

    def contexts(self, window: int = 60) -> list[CallContext]:
        """Its candidate calls, largest gain first, each with up to `window` characters of text on either side."""
        text = self.text or ""
        out = []
        if self.record is not None and self.record.candidates:
            for c in self.record.candidates:
                out.append(
                    CallContext(
                        c.text(c.result is not None), c.tool, c.position, c.gain, bool(c.kept), c.reason,
                        text[max(0, c.position - window) : c.position], text[c.position : c.position + window],
                    )
                )  # fmt: skip
        elif self.row is not None:
            from toolformer.calls import format_call

            for k in self.row.calls:
                out.append(
                    CallContext(
                        format_call(k.tool, k.args, k.result), k.tool, k.position, k.gain, True, "kept",
                        text[max(0, k.position - window) : k.position], text[k.position : k.position + window],
                    )
                )  # fmt: skip
        return sorted(out, key=lambda c: (c.gain is None, -(c.gain or 0.0)))


@dataclass
class _Chunk:
    key: str
    records: Path | None
    shard: Path | None


@dataclass
class AnnotateFolder:
    """An output folder of `toolformer annotate`, read back (see the module docstring)."""

    path: Path
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.path = Path(self.path).expanduser()
        if not self.path.is_dir():
            raise DataError(f"{str(self.path)!r} is not a folder (the output of `toolformer annotate`)")

    @staticmethod
    def looks_like(path: str | Path) -> bool:
        """True for a folder holding annotate outputs (a manifest, records or shard files)."""
        p = Path(path).expanduser()
        return p.is_dir() and any(
            any(p.glob(pattern)) for pattern in ("manifest*.json", f"{_RECORDS}*.jsonl", f"{_SHARD}*.jsonl")
        )

    # ------------------------------------------------------------------------------------------ manifests

    def manifests(self) -> list[tuple[Path, dict[str, Any]]]:
        """(path, content) of every worker's manifest; DataError naming one that is not JSON."""
        out = []
        for path in sorted(self.path.glob("manifest*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise DataError(f"{path} is not readable JSON ({exc})") from None
            out.append((path, data if isinstance(data, dict) else {}))
        return out

    @property
    def status(self) -> str:
        """ "running" if any worker has not finished, "done" if every manifest says so, else "unknown"."""
        statuses = [m.get("status") for _, m in self.manifests()]
        if "running" in statuses:
            return "running"
        return "done" if statuses and all(s == "done" for s in statuses) else "unknown"

    def unfinished(self) -> str | None:
        """Why this is not a finished run (one line), or None: a worker still "running", or workers missing."""
        manifests = self.manifests()
        running = [p.name for p, m in manifests if m.get("status") == "running"]
        if running:
            return f'{", ".join(running)} says "status": "running" (annotate has not finished, or was killed)'
        expected = {int(m.get("worker", {}).get("num_shards", 1) or 1) for _, m in manifests}
        if manifests and max(expected) > len(manifests):
            return f"only {len(manifests)} of {max(expected)} workers' manifests are there"
        return None

    # ------------------------------------------------------------------------------------------ records

    def _chunks(self) -> list[_Chunk]:
        chunks: dict[str, _Chunk] = {}
        for prefix in (_RECORDS, _SHARD):
            for path in sorted(self.path.glob(f"{prefix}*.jsonl")):
                chunk = chunks.setdefault(
                    path.name[len(prefix) :], _Chunk(path.name[len(prefix) :], None, None)
                )
                if prefix == _RECORDS:
                    chunk.records = path
                else:
                    chunk.shard = path
        return [chunks[k] for k in sorted(chunks)]

    def records(self) -> Iterator[DocumentRecord]:
        """Every document's record, chunk by chunk, in input order."""
        for chunk in self._chunks():
            if chunk.records is not None:
                yield from read_records(chunk.records)

    def rows(self) -> Iterator[TrainingRow]:
        """Every training row (documents that kept a call), chunk by chunk."""
        for chunk in self._chunks():
            if chunk.shard is not None:
                yield from read_rows(chunk.shard)

    def _joined(self) -> Iterator[AnnotatedDocument]:
        for chunk in self._chunks():
            rows = read_rows(chunk.shard) if chunk.shard is not None else []
            by_id = {r.id: r for r in rows}
            records = read_records(chunk.records) if chunk.records is not None else []
            for rec in records:
                row = by_id.pop(rec.id, None) if rec.status == "ok" else None
                text = row.source_text if row is not None else rec.text
                yield AnnotatedDocument(rec, row, text)
            for row in rows:  # rows with no record: a chunk whose records file is missing
                if row.id in by_id:
                    yield AnnotatedDocument(None, row, row.source_text)

    def documents(self) -> list[AnnotatedDocument]:
        """Every document of the folder (see the module docstring), in chunk and input order."""
        docs = list(self._joined())
        lacking = {d.id: d for d in docs if d.text is None and d.kind == PLAIN}
        if lacking:
            texts, why = self._texts_from_input(set(lacking))
            for doc_id, doc in lacking.items():
                doc.text = texts.get(doc_id)
                if doc.text is None:
                    doc.missing = why or "not found in the annotate input"
        return docs

    def find(self, doc_id: str) -> AnnotatedDocument:
        """The document with id `doc_id`; DataError if there is none."""
        if not any(self.path.glob(f"{_RECORDS}*.jsonl")):
            raise DataError(
                f"{self.path} has no records-*.jsonl files: is it the output of `toolformer annotate`?"
            )
        for doc in self.documents():
            if doc.id == doc_id:
                return doc
        raise DataError(f"no document with id={doc_id!r} in {self.path}")

    # ------------------------------------------------------------------------------------------ texts

    def _texts_from_input(self, ids: set[str]) -> tuple[dict[str, str], str]:
        """({id: text}, why not) for documents whose record holds no text: rebuilt from the annotate input."""
        why = self._input_problem()
        if why:
            self.notes.append(f"{len(ids)} documents without a call have no text: {why}")
            return {}, why
        from toolformer.datagen.config import AnnotateConfig
        from toolformer.datagen.plan import input_documents

        _, manifest = self.manifests()[0]
        known = AnnotateConfig.__dataclass_fields__
        config = AnnotateConfig(**{k: v for k, v in manifest.get("config", {}).items() if k in known})
        config.input = manifest["input"]["path"]
        try:
            docs = input_documents(config, ids)
        except (ToolformerError, OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
            why = f"the annotate input cannot be read again ({type(exc).__name__}: {exc})"
            self.notes.append(f"{len(ids)} documents without a call have no text: {why}")
            return {}, why
        return {doc_id: doc.text for doc_id, doc in docs.items()}, "not found in the annotate input"

    def _input_problem(self) -> str:
        manifests = self.manifests()
        if not manifests:
            return "no manifest.json names the annotate input"
        info = manifests[0][1].get("input", {})
        path = info.get("path")
        if not path or not Path(path).exists():
            return f"the annotate input {path!r} is not a local file"
        from toolformer.datagen.io import open_source, source_sha256

        config = manifests[0][1].get("config", {})
        try:
            source = open_source(path, config.get("format", "auto"), config.get("text_unit", "paragraph"))
            sha = source_sha256(source)
        except (ToolformerError, OSError) as exc:
            return f"the annotate input {path!r} cannot be read ({exc})"
        if info.get("sha256") and sha and sha != info["sha256"]:
            return f"the annotate input {path!r} changed since the run (sha256 differs)"
        return ""
