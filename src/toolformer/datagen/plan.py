"""The input plan of an annotation run: this worker's rows in input order, as documents, cut into chunks.

`worker_rows` yields the rows of this worker (`hash(id) % num_shards == shard_id`) up to `limit` input rows,
flagging repeated ids; `make_item` turns one into a `Document` (GSM8K records through the data proposer's
builders; inline calls taken out for `--proposer data`) or a `BadRow`; `plan_chunks` checks that the input gives
documents at all and returns the chunks' ids; `input_documents` rebuilds chosen documents as a run built them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from toolformer.datagen.config import AnnotateConfig
from toolformer.datagen.io import BadRow, Source, iter_rows, open_source, record_id, to_document
from toolformer.datagen.merge import shard_of
from toolformer.datagen.proposers.data import DataProposer, gsm8k_answer_document, gsm8k_document
from toolformer.datagen.records import Document
from toolformer.errors import DataError

T = TypeVar("T")


@dataclass
class Row:
    """One input row of this worker: its document id, `<file>:<line>`, the value read and the first row with the
    same id (None if this is the first)."""

    id: str
    fallback_id: str
    value: Any
    duplicate_of: str | None = None


def worker_rows(source: Source, config: AnnotateConfig) -> Iterator[Row]:
    """This worker's input rows, in input order, up to `limit` input rows; repeated ids are flagged."""
    seen: dict[str, str] = {}
    for number, (fallback_id, value) in enumerate(iter_rows(source)):
        if config.limit is not None and number >= config.limit:
            break
        doc_id = value.id if isinstance(value, BadRow) else record_id(value, fallback_id, config.id_field)
        if config.num_shards > 1 and shard_of(doc_id, config.num_shards) != config.shard_id:
            continue
        first = seen.setdefault(doc_id, fallback_id)
        yield Row(doc_id, fallback_id, value, first if first != fallback_id else None)


def plan_chunks(source: Source, config: AnnotateConfig) -> list[list[str]]:
    """This worker's chunks of document ids, after checking that the input can give documents at all.

    DataError (one line naming the input) for an empty input, a JSONL line that is not JSON (a broken file, not a
    bad row) and, in a single-worker run, an input none of whose rows gives a document (a wrong --text-field).
    Rows that are merely unusable (a missing field in some rows, an empty text) are recorded as bad rows later.
    """
    where = str(source.path) if source.path is not None else source.name
    rows = usable = 0
    reasons: Counter[str] = Counter()
    fields_seen: list[str] | None = None

    def checked() -> Iterator[str]:
        nonlocal rows, usable, fields_seen
        for row in worker_rows(source, config):
            rows += 1
            if isinstance(row.value, BadRow):
                line = row.fallback_id.rsplit(":", 1)[-1]
                what = row.value.reason.removeprefix("line ")
                raise DataError(f"input {where!r}: line {line} {what}; fix or remove the line")
            if fields_seen is None and isinstance(row.value, dict):
                fields_seen = [str(k) for k in row.value]
            item = make_item(row, config)
            if isinstance(item, BadRow):
                reasons[item.reason] += 1
            else:
                usable += 1
            yield row.id

    plan = list(chunks(checked(), config.shard_size))
    if rows == 0 and (config.num_shards == 1 or next(iter_rows(source), None) is None):
        limited = f" within --limit {config.limit}" if config.limit is not None else ""
        raise DataError(f"input {where!r} holds no documents{limited}: nothing to annotate")
    if rows and not usable and config.num_shards == 1:
        top = "; ".join(f"{reason} ({n})" for reason, n in reasons.most_common(2))
        hint = ""
        if any(r.startswith("missing field") for r in reasons) and config.format not in (
            "gsm8k",
            "gsm8k-answer",
        ):
            shown = ", ".join(fields_seen[:8]) if fields_seen else "none"
            hint = f"; its fields: {shown}: pick the text with --text-field"
        raise DataError(f"input {where!r}: none of its {rows} rows gives a document ({top}){hint}")
    return plan


def make_item(row: Row, config: AnnotateConfig) -> Document | BadRow:
    """The document of `row` as a run with `config` annotates it, or the BadRow saying why there is none."""
    if row.duplicate_of is not None:
        return BadRow(row.id, f"duplicate id (first seen at {row.duplicate_of})")
    if config.format in ("gsm8k", "gsm8k-answer") and isinstance(row.value, dict):
        return _gsm8k_item(row, config)
    item = to_document(row.value, row.fallback_id, config.text_field, config.id_field, config.max_chars)
    if isinstance(item, Document) and "data" in config.proposer_names():
        # Inline calls already in the text are taken out; the `data` proposer proposes them back for scoring.
        item = DataProposer().extract(item)[0]
    return item


def _gsm8k_item(row: Row, config: AnnotateConfig) -> Document | BadRow:
    make = gsm8k_answer_document if config.format == "gsm8k-answer" else gsm8k_document
    try:
        doc, _ = make(row.value)
    except DataError as exc:
        return BadRow(row.id, str(exc))
    if config.max_chars and len(doc.text) > config.max_chars:
        return BadRow(row.id, f"text has {len(doc.text)} characters, more than max_chars={config.max_chars}")
    doc.id = row.id  # the GSM8K annotations stay in doc.meta for the `data` proposer
    return doc


def input_documents(config: AnnotateConfig, ids: Collection[str]) -> dict[str, Document]:
    """The documents `ids` of `config.input`, built exactly as a run with `config` builds them (every worker's).

    For folders written before records held the texts of documents that kept no call (`outputs.AnnotateFolder`).
    """
    wanted = set(ids)
    found: dict[str, Document] = {}
    source = open_source(config.input, config.format, config.text_unit, config.hf_split)
    for row in worker_rows(source, replace(config, num_shards=1, shard_id=0)):
        if row.id in wanted and row.id not in found and row.duplicate_of is None:
            item = make_item(row, config)
            if isinstance(item, Document):
                found[row.id] = item
                if len(found) == len(wanted):
                    break
    return found


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size`, the last one shorter."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
