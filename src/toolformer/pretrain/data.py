"""Pretraining text for `toolformer pretrain`: read documents from JSONL / text files, split them, pack token blocks.

Input (`read_documents`): a JSONL file (one document per row, in `text_field`; rows are read as `toolformer train`
reads them, its errors included), a text or Markdown file (documents separated by blank lines), or a folder of
such files (`.jsonl`, `.ndjson`, `.txt`, `.md`, each optionally `.gz`). Split: a row's own `split` field
(train/dev; other values, e.g. test, keep it out), else a hash of its id (`datagen.merge.split_of`, the rule
`annotate` and `train` use), so the dev set does not depend on the order of the documents.

Packing (`pack`): every document is tokenized without special tokens and followed by the tokenizer's end-of-text
token (so the model learns where a text ends, and generation stops there), the token streams are joined in order
and cut into blocks of `seq_len` tokens; the remainder shorter than a block is dropped. Every token of a block is
trained on (labels = input ids), none is padding.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from toolformer.calls import find_calls
from toolformer.errors import DataError
from toolformer.inputs import iter_lines
from toolformer.train.data import SPLITS, _row_id, _split, iter_jsonl

_JSONL = (".jsonl", ".ndjson")
_TEXT = (".txt", ".md")


@dataclass
class Documents:
    """The corpus as read: train and dev texts, where they came from, and what was left out."""

    files: list[str]
    train: list[str] = field(default_factory=list)
    dev: list[str] = field(default_factory=list)
    with_call: int = 0  # documents holding a complete call with its result, e.g. [Calculator(2 + 3) → 5]
    skipped: dict[str, int] = field(default_factory=dict)  # documents left out, by reason

    def add(self, text: str, split: str) -> None:
        if not text.strip():
            self.skip("empty text")
            return
        if split not in SPLITS:
            self.skip(f"split={split}")
            return
        (self.train if split == "train" else self.dev).append(text)
        if any(s.call.result is not None for s in find_calls(text, include_incomplete=False)):
            self.with_call += 1

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


@dataclass
class Packed:
    """Token blocks of one split, and how many tokens the packing saw and dropped."""

    blocks: list[list[int]]
    documents: int
    tokens: int  # every token of the documents, end-of-text tokens included
    dropped_tokens: int  # the tail shorter than one block

    def stats(self) -> dict[str, int]:
        data = asdict(self)
        data.pop("blocks")
        return {**data, "blocks": len(self.blocks)}


def _suffix(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    return Path(name).suffix


def corpus_files(path: str | Path) -> list[Path]:
    """The files of the corpus at `path`: the file itself, or a folder's JSONL and text files (sorted)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"corpus {str(path)!r}: no such file or directory")
    if p.is_file():
        return [p]
    files = sorted(f for f in p.rglob("*") if f.is_file() and _suffix(f) in _JSONL + _TEXT)
    if not files:
        raise DataError(f"corpus {str(path)!r}: a folder without .jsonl, .txt or .md files")
    return files


def _paragraphs(path: Path) -> Iterator[str]:
    """The blank-line separated documents of a text file."""
    lines: list[str] = []
    for _, line in iter_lines(path):
        if line.strip():
            lines.append(line)
        elif lines:
            yield "".join(lines).strip()
            lines = []
    if lines:
        yield "".join(lines).strip()


def read_documents(path: str | Path, text_field: str = "text", dev_fraction: float = 0.02) -> Documents:
    """Every document of the corpus at `path`, split into train and dev (see the module docstring).

    Raises DataError naming the file and line of a bad row, or when no training document is found.
    """
    from toolformer.datagen.merge import split_of

    files = corpus_files(path)
    docs = Documents([str(f) for f in files])
    for f in files:
        if _suffix(f) in _JSONL:
            for number, row in iter_jsonl(f):
                text = row.get(text_field, None)
                if not isinstance(text, str):
                    what = "no field" if text_field not in row else f"a {type(text).__name__} in field"
                    raise DataError(
                        f"{f}:{number} has {what} {text_field!r}; pick the text with --text-field"
                    )
                docs.add(text, _split(row, _row_id(row, f, number), dev_fraction))
        else:
            for i, text in enumerate(_paragraphs(f)):
                doc_id = f"{f.name}:{i}"
                docs.add(text, split_of(doc_id, dev_fraction) if dev_fraction > 0 else "train")
    if not docs.train:
        skipped = "; ".join(f"{reason}: {n}" for reason, n in docs.skipped.items())
        raise DataError(
            f"corpus {str(path)!r}: no training document in {len(files)} file(s)"
            + (f" (left out: {skipped})" if skipped else "")
        )
    return docs


def pack(tokenizer: Any, texts: list[str], seq_len: int, batch: int = 1000) -> Packed:
    """Tokenize `texts`, each followed by the end-of-text token, join them and cut blocks of `seq_len` tokens."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for start in range(0, len(texts), batch):
        encoded = tokenizer(texts[start : start + batch], add_special_tokens=False)["input_ids"]
        for ids in encoded:
            stream.extend(ids)
            stream.append(eos)
    whole = len(stream) // seq_len * seq_len
    blocks = [stream[i : i + seq_len] for i in range(0, whole, seq_len)]
    return Packed(blocks, len(texts), len(stream), len(stream) - whole)


def dev_sample(blocks: list[list[int]], limit: int, seed: int) -> list[list[int]]:
    """At most `limit` dev blocks: all when there are few, else a seeded sample kept in corpus order."""
    if len(blocks) <= limit:
        return blocks
    keep = sorted(random.Random(seed).sample(range(len(blocks)), limit))
    return [blocks[i] for i in keep]
