"""Training texts for `toolformer train`: read the augmented corpus, mix in plain texts, tokenize with loss masks.

Input (`read_corpus`): an output folder of `toolformer annotate` (every `shard-*.jsonl`: rows `{"id", "split",
"text" (with calls), "source_text", "calls"}`; the texts of its input's documents that kept no call are read back
through the manifest), a JSONL file, or a folder of JSONL files (`--text-field`, default "text"). A row whose text
holds a complete call `[Tool(args) → result]` is *annotated*; a row without one is *plain*. Each annotated row
also gives a *source* text: its `source_text`, else the text with the calls taken out (`strip_calls`).

Split: a row's `split` field ("train"/"dev"; any other value, e.g. "test", keeps the row out of training), else a
hash of its id (`datagen.merge.split_of`, the same rule annotate uses), so the dev set never depends on the order
of the rows or on the other rows.

Mix (`mix`): per split, every annotated text plus round(mix_ratio × annotated) plain texts drawn with the seed,
from the pools `mix_from` names in order (auto: plain documents first, then source texts); `mix_ratio=None`
takes every row as given. `MixStats` counts what went in, by origin, and the share of texts with a call.

Tokens (`encode`): the text and EOS, cut to `max_length`. Loss "all" labels every token (the paper); "after-call"
labels the tokens from the one holding the first call's "[" on (offsets from the fast tokenizer), so the prefix
the model merely reads costs nothing. A text with no labelled token left is dropped and counted.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolformer.calls import find_calls, strip_calls
from toolformer.errors import DataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev")
ANNOTATED, PLAIN, SOURCE = "annotated", "plain", "source"
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")


@dataclass
class Text:
    """One training text. `loss_start` is the character offset of the first call ("after-call" loss starts at
    the token holding it); None means the whole text counts in either loss mode."""

    id: str
    text: str
    split: str
    origin: str  # ANNOTATED (has calls), PLAIN (a document without calls) or SOURCE (an annotated text, calls removed)
    loss_start: int | None = None

    @property
    def has_call(self) -> bool:
        return self.origin == ANNOTATED


@dataclass
class Corpus:
    """Everything read from the data: annotated rows, plain rows/documents, and the annotated rows' sources."""

    kind: str  # "annotate" (an annotate output folder) or "jsonl"
    files: list[str]
    annotated: list[Text] = field(default_factory=list)
    plain: list[Text] = field(default_factory=list)
    source: list[Text] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # rows left out, by reason
    notes: list[str] = field(default_factory=list)  # why a pool is empty or smaller than expected


@dataclass
class SplitStats:
    """What one split's texts are made of."""

    texts: int = 0
    with_call: int = 0
    plain: int = 0
    by_origin: dict[str, int] = field(default_factory=dict)
    plain_wanted: int | None = None  # round(mix_ratio × annotated); None with mix_ratio=None
    plain_available: int = 0  # size of the pools mix_from names
    call_share: float | None = None  # with_call / texts


@dataclass
class MixStats:
    """The makeup of the training and dev sets (saved in the training report)."""

    mix_ratio: float | None
    mix_from: str
    train: SplitStats
    dev: SplitStats
    skipped_rows: dict[str, int]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------- reading


def _open(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")  # noqa: SIM115 - the caller closes it


def data_files(path: str | Path) -> tuple[str, list[Path]]:
    """(kind, files) for `path`: an annotate folder's shards, a folder's JSONL files, or one file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data {str(path)!r}: no such file or directory")
    if p.is_file():
        return "jsonl", [p]
    shards = sorted(p.glob("shard-*.jsonl"))
    if shards:
        return "annotate", shards
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(_JSONL_SUFFIXES))
    if not files:
        raise DataError(
            f"data {str(path)!r}: a folder without shard-*.jsonl (annotate output) or *.jsonl files"
        )
    return "jsonl", files


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; DataError naming file and line for one that is not an object."""
    try:
        with _open(path) as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise DataError(f"{path}:{number} is not JSON ({exc})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{number} is a JSON {type(row).__name__}, not an object")
                yield number, row
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(f"{path} cannot be read ({exc})") from None


def _row_id(row: dict[str, Any], path: Path, number: int) -> str:
    value = row.get("id")
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return f"{path.name}:{number}"


def _split(row: dict[str, Any], doc_id: str, dev_fraction: float) -> str:
    from toolformer.datagen.merge import split_of

    value = row.get("split")
    if value is None or value == "":
        return split_of(doc_id, dev_fraction) if dev_fraction > 0 else "train"
    return str(value)


def read_corpus(
    path: str | Path, text_field: str = "text", dev_fraction: float = 0.05, documents: bool = True
) -> Corpus:
    """Read the training data at `path` (see the module docstring).

    Raises DataError naming the file, line and field of the first bad row, or when nothing usable is found.
    `documents` False skips reading back an annotate folder's documents that kept no call.
    """
    kind, files = data_files(path)
    corpus = Corpus(kind, [str(f) for f in files])
    skipped: Counter[str] = Counter()
    for f in files:
        for number, row in iter_jsonl(f):
            if text_field not in row:
                fields = ", ".join(sorted(row)[:8])
                raise DataError(
                    f"{f}:{number} has no field {text_field!r} (fields: {fields}); pick one with --text-field"
                )
            text = row[text_field]
            if not isinstance(text, str):
                raise DataError(
                    f"{f}:{number}: field {text_field!r} is a {type(text).__name__}, not a string"
                )
            if not text.strip():
                skipped["empty text"] += 1
                continue
            doc_id = _row_id(row, f, number)
            split = _split(row, doc_id, dev_fraction)
            if split not in SPLITS:
                skipped[f"split={split}"] += 1
                continue
            spans = find_calls(text, include_incomplete=False)
            if not spans:
                corpus.plain.append(Text(doc_id, text, split, PLAIN))
                continue
            start = spans[0].start
            corpus.annotated.append(Text(doc_id, text, split, ANNOTATED, start))
            source = row.get("source_text")
            if not isinstance(source, str) or not source.strip():
                source = strip_calls(text)
            # The text before the first call is the same in both, so the call's offset marks the same place.
            corpus.source.append(Text(doc_id, source, split, SOURCE, min(start, len(source))))
    if kind == "annotate" and documents:
        corpus.plain.extend(_documents_without_calls(Path(path).expanduser(), corpus, text_field))
    corpus.skipped = dict(skipped)
    if not corpus.annotated and not corpus.plain:
        raise DataError(f"data {str(path)!r}: no training texts in {len(files)} file(s)")
    return corpus


def _documents_without_calls(folder: Path, corpus: Corpus, text_field: str) -> list[Text]:
    """The annotate input's documents that kept no call (status ok), read back through the manifest.

    The records say which documents kept none, but hold no text; the manifest names the input. Anything that
    goes wrong (input moved, Hub data set, unreadable) leaves a note and an empty pool, never a failure.
    """
    wanted: dict[str, str] = {}
    for rec_file in sorted(folder.glob("records-*.jsonl")):
        try:
            for _, rec in iter_jsonl(rec_file):
                if rec.get("status") == "ok" and not rec.get("kept_calls") and rec.get("split") in SPLITS:
                    wanted[str(rec.get("id"))] = str(rec["split"])
        except DataError as exc:
            corpus.notes.append(f"documents without calls not used: {exc}")
            return []
    if not wanted:
        return []
    manifests = sorted(folder.glob("manifest*.json"))
    try:
        manifest = json.loads(manifests[0].read_text(encoding="utf-8")) if manifests else {}
        config = manifest.get("config", {})
        input_path = manifest.get("input", {}).get("path")
        if not input_path or not Path(input_path).exists():
            corpus.notes.append(
                f"documents without calls not used: the annotate input {input_path!r} is not a local file"
            )
            return []
        return _read_documents(input_path, config, wanted, text_field)
    except Exception as exc:  # noqa: BLE001 - an optional pool: say why it is empty and train on the rest
        corpus.notes.append(f"documents without calls not used: {type(exc).__name__}: {exc}")
        return []


def _read_documents(
    input_path: str, config: dict[str, Any], wanted: dict[str, str], text_field: str
) -> list[Text]:
    """The texts of the documents `wanted` ({id: split}) from an annotate input, as annotate read them."""
    from toolformer.datagen.io import get_field, iter_rows, open_source, record_id

    fmt = config.get("format", "auto")
    source = open_source(
        input_path, fmt, config.get("text_unit", "paragraph"), config.get("hf_split", "train")
    )
    field_name = config.get("text_field", text_field)
    out: list[Text] = []
    for fallback_id, value in iter_rows(source):
        if not isinstance(value, (dict, str)):
            continue  # a line that is not JSON: annotate recorded it as bad
        doc_id = record_id(value, fallback_id, config.get("id_field", "id"))
        split = wanted.pop(doc_id, None)
        if split is None:
            continue
        if fmt == "gsm8k" and isinstance(value, dict):
            from toolformer.datagen.sample import gsm8k_document

            text = gsm8k_document(value)[0].text
        elif isinstance(value, str):
            text = value
        else:
            try:
                text = get_field(value, field_name)
            except KeyError:
                continue
        if isinstance(text, str) and text.strip():
            out.append(Text(doc_id, strip_calls(text), split, PLAIN))
        if not wanted:
            break
    return out


# --------------------------------------------------------------------------------------------- mixing


def _pools(corpus: Corpus, split: str, mix_from: str) -> list[list[Text]]:
    plain = [t for t in corpus.plain if t.split == split]
    source = [t for t in corpus.source if t.split == split]
    return {"plain": [plain], "source": [source], "auto": [plain, source]}[mix_from]


def _mix_split(
    corpus: Corpus, split: str, ratio: float | None, mix_from: str, seed: int
) -> tuple[list[Text], int | None, int]:
    """(texts, plain texts wanted, plain texts available) for one split."""
    annotated = [t for t in corpus.annotated if t.split == split]
    if ratio is None:  # every row as given
        plain = [t for t in corpus.plain if t.split == split]
        return annotated + plain, None, len(plain)
    pools = _pools(corpus, split, mix_from)
    wanted = round(ratio * len(annotated))
    rng = random.Random(f"{seed}:{split}")
    extra: list[Text] = []
    for pool in pools:
        if len(extra) >= wanted:
            break
        # Sorted by id before shuffling: the draw depends on the seed, not on the order the files were read.
        ordered = sorted(pool, key=lambda t: t.id)
        rng.shuffle(ordered)
        extra.extend(ordered[: wanted - len(extra)])
    return annotated + extra, wanted, sum(len(p) for p in pools)


def _stats(texts: Sequence[Text], wanted: int | None, available: int) -> SplitStats:
    with_call = sum(t.has_call for t in texts)
    return SplitStats(
        texts=len(texts),
        with_call=with_call,
        plain=len(texts) - with_call,
        by_origin=dict(Counter(t.origin for t in texts)),
        plain_wanted=wanted,
        plain_available=available,
        call_share=with_call / len(texts) if texts else None,
    )


def mix(
    corpus: Corpus,
    ratio: float | None = 0.5,
    mix_from: str = "auto",
    seed: int = 0,
    max_dev: int | None = None,
) -> tuple[list[Text], list[Text], MixStats]:
    """(train texts, dev texts, stats): every annotated text plus round(ratio × annotated) plain ones per split.

    The dev set is mixed the same way but with a fixed seed, then cut to `max_dev` texts in hash order, so dev
    perplexities of runs with different seeds are measured on the same texts.
    """
    train, train_wanted, train_available = _mix_split(corpus, "train", ratio, mix_from, seed)
    dev, dev_wanted, dev_available = _mix_split(corpus, "dev", ratio, mix_from, 0)
    if max_dev is not None and len(dev) > max_dev:
        dev = sorted(dev, key=lambda t: _stable_hash(f"{t.origin}:{t.id}"))[:max_dev]
    train_stats = _stats(train, train_wanted, train_available)
    notes = list(corpus.notes)
    if train_wanted and train_stats.plain < train_wanted:
        notes.append(
            f"mix_ratio={ratio:g} wants {train_wanted} plain training texts, only {train_stats.plain} are "
            f"available from mix_from={mix_from!r}"
        )
    stats = MixStats(
        ratio, mix_from, train_stats, _stats(dev, dev_wanted, dev_available), dict(corpus.skipped), notes
    )
    return train, dev, stats


def _stable_hash(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


# --------------------------------------------------------------------------------------------- tokens


def encode(
    tokenizer: Any, item: Text, loss: str = "all", max_length: int = 1024
) -> dict[str, list[int]] | None:
    """`{"input_ids", "labels"}` for one text (labels -100 where the loss ignores a token), or None if no
    labelled token is left after cutting to `max_length` (e.g. the call lies beyond it)."""
    return encode_many(tokenizer, [item], loss, max_length)[0]


def encode_many(
    tokenizer: Any, items: Sequence[Text], loss: str = "all", max_length: int = 1024
) -> list[dict[str, list[int]] | None]:
    """`encode` for many texts with one tokenizer call."""
    if not items:
        return []
    texts = [t.text for t in items]
    masked = loss == "after-call"
    fast = bool(getattr(tokenizer, "is_fast", False))
    enc = tokenizer(texts, return_offsets_mapping=masked and fast)
    eos = tokenizer.eos_token_id
    out: list[dict[str, list[int]] | None] = []
    for i, item in enumerate(items):
        ids = list(enc["input_ids"][i])
        if masked and item.loss_start is not None:
            if fast:
                offsets = enc["offset_mapping"][i]
                # A token counts if it ends after the call's "[": " [" and "=[" tokens are in, "= " is out.
                keep = [end > item.loss_start for _, end in offsets]
            else:
                prefix = list(tokenizer(item.text[: item.loss_start])["input_ids"])
                n = _common_prefix(prefix, ids)
                keep = [j >= n for j in range(len(ids))]
        else:
            keep = [True] * len(ids)
        if eos is not None and (not ids or ids[-1] != eos):
            ids.append(eos)
            keep.append(True)  # learning where a text ends is part of the LM loss
        ids, keep = ids[:max_length], keep[:max_length]
        labels = [t if k else -100 for t, k in zip(ids, keep)]
        out.append({"input_ids": ids, "labels": labels} if any(keep) else None)
    return out


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
