"""Training texts for `toolformer train`: read the augmented corpus, mix in plain texts, tokenize with loss masks.

Input (`read_corpus`): an output folder of `toolformer annotate`, read with its own reader
(`datagen.outputs.AnnotateFolder`: every document, its shard row if it kept a call, its text if it kept none), a
JSONL file, or a folder of JSONL files (`--text-field`, default "text"; a row with string `prompt` and `completion`
fields instead is TRL's prompt–completion format: its text is prompt + completion, and only the completion is in
the loss, in either loss mode, as TRL does). A text holding a complete call
`[Tool(args) → result]` is *annotated*; a document or row without one is *plain*. Each annotated text also gives
a *source* text: its `source_text`, else the text with the calls taken out (`strip_calls`). `Corpus.documents`
accounts for every document (or row): annotated, plain, or dropped with the reason. An annotate folder whose run
has not finished (a manifest still says "running") is refused unless `allow_partial`.

Split: a row's `split` field ("train"/"dev"; any other value, e.g. "test", keeps the row out of training), else a
hash of its id (`datagen.merge.split_of`, the same rule annotate uses), so the dev set never depends on the order
of the rows or on the other rows.

Mix (`mix`): per split, every annotated text plus round(mix_ratio × annotated) plain texts drawn with the seed,
from the pools `mix_from` names in order (auto: plain documents first, then source texts); `mix_ratio=None`
takes every row as given. `MixStats` counts what went in, by origin, and the share of texts with a call.

Tokens (`encode`): the text and EOS, cut to `max_length`. Loss "all" labels every token (the paper); "after-call"
labels the tokens from the one holding the first call's "[" on (offsets from the fast tokenizer), so the prefix
the model merely reads costs nothing; a prompt–completion row labels its completion only. A text with no labelled
token left is dropped and counted.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolformer.calls import find_calls, strip_calls
from toolformer.errors import DataError
from toolformer.inputs import open_text

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
    # A prompt–completion row: no token before this offset is ever labelled.
    completion_start: int | None = None

    @property
    def has_call(self) -> bool:
        return self.origin == ANNOTATED


@dataclass
class DocumentCounts:
    """Every document of an annotate folder (or row of JSONL data): annotated + plain + dropped = total."""

    total: int = 0
    annotated: int = 0
    plain: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # by reason

    def drop(self, reason: str) -> None:
        self.total += 1
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Corpus:
    """Everything read from the data: annotated rows, plain rows/documents, and the annotated rows' sources."""

    kind: str  # "annotate" (an annotate output folder) or "jsonl"
    files: list[str]
    annotated: list[Text] = field(default_factory=list)
    plain: list[Text] = field(default_factory=list)
    source: list[Text] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # rows left out, by reason (= documents.dropped)
    notes: list[str] = field(default_factory=list)  # why a pool is empty or smaller than expected
    documents: DocumentCounts = field(default_factory=DocumentCounts)


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
    documents: dict[str, Any] = field(default_factory=dict)  # DocumentCounts: every document accounted for

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------- reading


def data_files(path: str | Path) -> tuple[str, list[Path]]:
    """(kind, files) for `path`: an annotate folder's shards, a folder's JSONL files, or one file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data {str(path)!r}: no such file or directory")
    if p.is_file():
        return "jsonl", [p]
    from toolformer.datagen.outputs import AnnotateFolder

    if AnnotateFolder.looks_like(p):
        return "annotate", sorted(p.glob("records-*.jsonl")) + sorted(p.glob("shard-*.jsonl"))
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(_JSONL_SUFFIXES))
    if not files:
        raise DataError(
            f"data {str(path)!r}: a folder without shard-*.jsonl (annotate output) or *.jsonl files"
        )
    return "jsonl", files


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; DataError naming file and line for one that is not an object."""
    try:
        with open_text(path) as fh:
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
    path: str | Path, text_field: str = "text", dev_fraction: float = 0.05, allow_partial: bool = False
) -> Corpus:
    """Read the training data at `path` (see the module docstring).

    Raises DataError naming the file, line and field of the first bad row, for an unfinished annotate folder
    (unless `allow_partial`), or when nothing usable is found.
    """
    kind, files = data_files(path)
    if kind == "annotate":
        corpus = _read_annotate(Path(path).expanduser(), allow_partial)
    else:
        corpus = _read_jsonl(files, text_field, dev_fraction)
    corpus.skipped = dict(corpus.documents.dropped)
    if not corpus.annotated and not corpus.plain:
        counts = corpus.documents
        dropped = "; ".join(f"{reason}: {n}" for reason, n in counts.dropped.items())
        raise DataError(
            f"data {str(path)!r}: no training texts among {counts.total} documents in {len(files)} file(s)"
            + (f" (dropped: {dropped})" if dropped else "")
        )
    return corpus


def _add(
    corpus: Corpus,
    doc_id: str,
    text: str,
    split: str,
    source_text: str | None = None,
    completion_start: int | None = None,
) -> None:
    """File one text as annotated (with its source) or plain, by whether it holds a call with its result.

    Only executed calls e(c, r) count: a call written without a result (a tools header's `[QA("…")]` example)
    is part of the text the model reads, not a call it is trained to make.
    """
    spans = [s for s in find_calls(text, include_incomplete=False) if s.call.result is not None]
    if not spans:
        corpus.plain.append(Text(doc_id, text, split, PLAIN, None, completion_start))
        corpus.documents.plain += 1
        corpus.documents.total += 1
        return
    start = spans[0].start
    corpus.annotated.append(Text(doc_id, text, split, ANNOTATED, start, completion_start))
    corpus.documents.annotated += 1
    corpus.documents.total += 1
    if not isinstance(source_text, str) or not source_text.strip():
        source_text = strip_calls(text)
    # The text before the first call is the same in both, so the call's offset marks the same place.
    corpus.source.append(
        Text(doc_id, source_text, split, SOURCE, min(start, len(source_text)), completion_start)
    )


def _read_jsonl(files: list[Path], text_field: str, dev_fraction: float) -> Corpus:
    corpus = Corpus("jsonl", [str(f) for f in files])
    for f in files:
        for number, row in iter_jsonl(f):
            pair = _prompt_completion(row, f, number)
            if pair is not None:
                text, completion_start = pair[0] + pair[1], len(pair[0])
            elif text_field not in row:
                fields = ", ".join(sorted(row)[:8])
                raise DataError(
                    f"{f}:{number} has no field {text_field!r} (fields: {fields}); pick one with --text-field"
                )
            else:
                text, completion_start = row[text_field], None
            if not isinstance(text, str):
                raise DataError(
                    f"{f}:{number}: field {text_field!r} is a {type(text).__name__}, not a string"
                )
            if not text.strip():
                corpus.documents.drop("empty text")
                continue
            doc_id = _row_id(row, f, number)
            split = _split(row, doc_id, dev_fraction)
            if split not in SPLITS:
                corpus.documents.drop(f"split={split}")
                continue
            _add(corpus, doc_id, text, split, row.get("source_text"), completion_start)
    return corpus


def _prompt_completion(row: dict[str, Any], path: Path, number: int) -> tuple[str, str] | None:
    """(prompt, completion) of a row holding both fields, else None (a text row); DataError if either is no string."""
    if "prompt" not in row or "completion" not in row:
        return None
    for name in ("prompt", "completion"):
        if not isinstance(row.get(name), str):
            raise DataError(
                f"{path}:{number}: a prompt–completion row needs string fields 'prompt' and 'completion' "
                f"({name!r} is {type(row.get(name)).__name__})"
            )
    if not row["completion"].strip():
        raise DataError(f"{path}:{number}: field 'completion' is empty")
    return row["prompt"], row["completion"]


_NUMBER = re.compile(r"\d+")


def _bad_reason(verdict: str) -> str:
    """A bad row's verdict as a count key: without the part naming the row, numbers as N."""
    return "bad input row: " + _NUMBER.sub("N", verdict.split(" (")[0].split(": ")[0]).strip()


def _read_annotate(folder: Path, allow_partial: bool) -> Corpus:
    """Every document of an annotate folder: annotated (its shard row), plain (its text), or dropped, with why."""
    from toolformer.datagen.outputs import ANNOTATED as KEPT
    from toolformer.datagen.outputs import BAD, AnnotateFolder

    annotated = AnnotateFolder(folder)
    unfinished = annotated.unfinished()
    if unfinished is not None and not allow_partial:
        n = sum(1 for _ in annotated.records())
        raise DataError(
            f"data {str(folder)!r} is an unfinished annotate run: {unfinished}; {n} documents are there so far. "
            "Rerun the same annotate command to finish it, or pass --allow-partial to train on what is there"
        )
    files = sorted(folder.glob("records-*.jsonl")) + sorted(folder.glob("shard-*.jsonl"))
    corpus = Corpus("annotate", [str(f) for f in files])
    for doc in annotated.documents():
        if doc.kind == BAD:
            corpus.documents.drop(_bad_reason(doc.record.verdict if doc.record else ""))
        elif doc.split not in SPLITS:
            corpus.documents.drop(f"split={doc.split}")
        elif doc.kind == KEPT:
            if doc.row is None:
                corpus.documents.drop("kept a call, but its shard row is missing")
            else:
                _add(corpus, doc.id, doc.row.text, doc.split, doc.row.source_text)
        elif doc.text is None:
            corpus.documents.drop(f"no call kept, and no text: {doc.missing}")
        elif not doc.text.strip():
            corpus.documents.drop("empty text")
        else:
            # A document that kept no call may still hold calls the run did not propose back: hide them.
            corpus.plain.append(Text(doc.id, strip_calls(doc.text), doc.split, PLAIN))
            corpus.documents.plain += 1
            corpus.documents.total += 1
    corpus.notes.extend(annotated.notes)
    if unfinished is not None:
        corpus.notes.append(
            f"the annotate run is not finished ({unfinished}): trained on the {corpus.documents.total} "
            "documents written so far (--allow-partial)"
        )
    return corpus


def why_no_training_texts(corpus: Corpus, stats: MixStats) -> str:
    """One line saying why mixing left no training text (for the error `train` raises)."""
    counts = corpus.documents
    what = "documents" if corpus.kind == "annotate" else "rows"
    if not corpus.annotated:
        where = (
            "annotate kept no call in any of them: see why with `toolformer annotate inspect DIR` (gains L⁻ − L⁺) "
            "and rerun annotate with a lower tau_f (--tau-f, --tau-f-tool)"
            if corpus.kind == "annotate"
            else "a training text holds a complete call [Tool(args) → result]: annotate the data first "
            "(`toolformer annotate`), or name the field holding them with --text-field"
        )
        if stats.mix_ratio is not None and corpus.plain:
            where += f"; mix_ratio={stats.mix_ratio:g} adds plain texts only beside texts with a call"
        elif corpus.plain:
            where += f"; the {len(corpus.plain)} plain texts are all in the dev split"
        return f"no text carries a call ({counts.total} {what}, {counts.plain} plain): {where}"
    dev = sum(t.split == "dev" for t in corpus.annotated)
    if dev == len(corpus.annotated):
        return (
            f"all {dev} texts with a call are in the dev split, none is left to train on: give rows split=train, "
            "or (annotate) use a smaller --dev-fraction"
        )
    return f"no training texts after mixing ({counts.total} {what}: {counts.annotated} with a call, {counts.plain} plain)"


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
        ratio,
        mix_from,
        train_stats,
        _stats(dev, dev_wanted, dev_available),
        dict(corpus.skipped),
        notes,
        corpus.documents.to_dict(),
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
    cuts = masked or any(t.completion_start is not None for t in items)
    enc = tokenizer(texts, return_offsets_mapping=cuts and fast)
    eos = tokenizer.eos_token_id
    out: list[dict[str, list[int]] | None] = []
    for i, item in enumerate(items):
        ids = list(enc["input_ids"][i])
        cut = item.completion_start
        if masked and item.loss_start is not None:
            cut = max(cut or 0, item.loss_start)
        if cut is not None:
            if fast:
                offsets = enc["offset_mapping"][i]
                # A token counts if it ends after the call's "[": " [" and "=[" tokens are in, "= " is out.
                keep = [end > cut for _, end in offsets]
            else:
                prefix = list(tokenizer(item.text[:cut])["input_ids"])
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
