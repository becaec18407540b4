"""Read labelled data for `toolformer adapt` (and rows for `toolformer augment`): files → typed task examples.

Formats: JSONL, JSON (an array of objects, or JSONL under a .json name), CSV/TSV (header row), CoNLL (one
`token … tag` line per word, a blank line between sentences, `-DOCSTART-` skipped; rows become
`{"tokens": [...], "tags": [...]}`); any of them gzipped (`.gz`). Field names are options; a dotted path reaches
into nested objects and lists (`answers.text.0`, `masked_sentences.0`).

A row that does not fit its task (a missing field, an empty text, a tag list of another length than the tokens, an
answer that is not in its context) is dropped and counted with its reason, never fixed up. Torch-free.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolformer.errors import DataError
from toolformer.inputs import get_field, input_file, read_text

_MISSING = object()


# --------------------------------------------------------------------------------------------- files


def detect_format(path: str | Path, fmt: str = "auto") -> str:
    """The table format of `path`: `fmt` unless 'auto', else from the extension (.gz ignored)."""
    if fmt != "auto":
        return fmt
    name = Path(path).name.lower().removesuffix(".gz")
    for ext, kind in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".csv", "csv")):
        if name.endswith(ext):
            return kind
    if name.endswith((".tsv", ".tab")):
        return "tsv"
    if name.endswith((".conll", ".conllu", ".bio", ".iob", ".iob2")):
        return "conll"
    raise DataError(
        f"file {str(path)!r}: cannot tell its format from the extension; pass --format jsonl|json|csv|tsv|conll"
    )


def read_table(path: str | Path, fmt: str = "auto", option: str = "file") -> list[dict[str, Any]]:
    """Every row of a data file as a dict (see the module docstring for the formats); `option` names it in errors."""
    file = input_file(path, option)
    kind = detect_format(file, fmt)
    text = read_text(file, newlines=False)  # csv parses CRLF itself (quoted fields may hold line breaks)
    if kind in ("jsonl", "json"):
        rows = _read_json(text, file, kind)
    elif kind in ("csv", "tsv"):
        rows = [dict(r) for r in csv.DictReader(io.StringIO(text), delimiter="\t" if kind == "tsv" else ",")]
    else:
        rows = _read_conll(text)
    if not rows:
        raise DataError(f"file {str(path)!r} holds no rows")
    return rows


def _read_json(text: str, file: Path, kind: str) -> list[dict[str, Any]]:
    stripped = text.lstrip()
    if kind == "json" and stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DataError(f"file {str(file)!r}: not valid JSON ({exc})") from None
        rows = data
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"file {str(file)!r} line {number}: not valid JSON ({exc.msg})") from None
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise DataError(f"file {str(file)!r}: row {bad + 1} is not a JSON object")
    return rows


def _read_conll(text: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    tokens: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if tokens:
            rows.append({"tokens": list(tokens), "tags": list(tags)})
            tokens.clear()
            tags.clear()

    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            flush()
        else:
            tokens.append(parts[0])
            tags.append(parts[-1] if len(parts) > 1 else "O")
    flush()
    return rows


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write `rows` as JSONL (UTF-8, one object a line); returns the count."""
    file = Path(path).expanduser()
    file.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with file.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


# --------------------------------------------------------------------------------------------- examples


@dataclass
class ClassificationExample:
    id: str
    text: str
    label: str


@dataclass
class NerExample:
    id: str
    tokens: list[str]
    tags: list[str]


@dataclass
class QaExample:
    id: str
    question: str
    context: str
    answers: list[str]  # gold answer texts (the first one is the training target)
    starts: list[int]  # character offset of each answer in the context


@dataclass
class Seq2SeqExample:
    id: str
    source: str
    references: list[str]  # the first one is the training target

    @property
    def target(self) -> str:
        return self.references[0]


@dataclass
class Split:
    """Examples read from one file, with the rows that were dropped and why."""

    examples: list[Any] = field(default_factory=list)
    rows: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        return {"rows": self.rows, "examples": len(self.examples), "dropped": dict(self.dropped)}


@dataclass
class TaskData:
    """Train / dev / (test) examples of one task and its label set (classification tags or NER tags)."""

    task: str
    train: Split
    dev: Split
    test: Split | None = None
    labels: list[str] = field(default_factory=list)
    dev_from: str = "file"  # "file" or "split" (held out from the train file)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "train": self.train.summary(),
            "dev": {**self.dev.summary(), "from": self.dev_from},
        }
        if self.test is not None:
            out["test"] = self.test.summary()
        if self.labels:
            out["labels"] = list(self.labels)
            out["train_label_counts"] = dict(Counter(_labels_of(self.task, self.train.examples)))
        return out


def _labels_of(task: str, examples: Sequence[Any]) -> Iterable[str]:
    if task == "classification":
        return (e.label for e in examples)
    if task == "ner":
        return (t for e in examples for t in e.tags)
    return ()


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        text = value.strip()
        return text or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _word_list(value: Any) -> list[str] | None:
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError:
                return None
        else:
            return stripped.split() or None
    if isinstance(value, list) and value and all(isinstance(v, (str, int)) for v in value):
        return [str(v) for v in value]
    return None


def _answers(value: Any, context: str) -> tuple[list[str], list[int]] | str:
    """(answer texts, start offsets) or the reason the row is unusable."""
    texts: list[str] = []
    starts: list[int | None] = []
    if isinstance(value, dict):  # SQuAD / HF datasets: {"text": [...], "answer_start": [...]}
        raw_texts = value.get("text", [])
        raw_starts = value.get("answer_start", [])
        raw_texts = [raw_texts] if isinstance(raw_texts, str) else list(raw_texts)
        raw_starts = [raw_starts] if isinstance(raw_starts, int) else list(raw_starts)
        for i, t in enumerate(raw_texts):
            texts.append(str(t))
            starts.append(int(raw_starts[i]) if i < len(raw_starts) else None)
    elif isinstance(value, list):  # strings, or SQuAD JSON's [{"text", "answer_start"}]
        for item in value:
            if isinstance(item, dict):
                texts.append(str(item.get("text", "")))
                start = item.get("answer_start")
                starts.append(int(start) if isinstance(start, int) else None)
            else:
                texts.append(str(item))
                starts.append(None)
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        texts.append(str(value))
        starts.append(None)
    else:
        return "answers field has no answer"
    found_texts, found_starts = [], []
    for text, start in zip(texts, starts, strict=True):
        if not text.strip():
            continue
        if start is None or context[start : start + len(text)] != text:
            start = context.find(text)
            if start < 0:
                lower = context.lower().find(text.lower())
                if lower < 0:
                    continue
                start, text = lower, context[lower : lower + len(text)]
        found_texts.append(text)
        found_starts.append(start)
    if not found_texts:
        return "answer not in context"
    return found_texts, found_starts


def to_example(task: str, row: dict[str, Any], index: int, fields_: dict[str, str]) -> Any:
    """One row as the task's example, or a string saying why the row cannot be used."""
    raw_id = get_field(row, fields_["id"], None)
    ex_id = str(raw_id) if raw_id is not None else str(index)

    def need(name: str) -> Any:
        value = get_field(row, fields_[name], None)
        return _MISSING if value is None else value

    if task == "classification":
        text, label = need("text"), need("label")
        if text is _MISSING or label is _MISSING:
            return f"missing field {fields_['text'] if text is _MISSING else fields_['label']!r}"
        text, label = _text(text), _text(label) if not isinstance(label, bool) else str(label).lower()
        if text is None or label is None:
            return "empty text or label"
        return ClassificationExample(ex_id, text, label)
    if task == "ner":
        tokens, tags = need("tokens"), need("tags")
        if tokens is _MISSING or tags is _MISSING:
            return f"missing field {fields_['tokens'] if tokens is _MISSING else fields_['tags']!r}"
        tokens, tags = _word_list(tokens), _word_list(tags)
        if not tokens or not tags:
            return "tokens or tags are not a non-empty list"
        if len(tokens) != len(tags):
            return "tokens and tags differ in length"
        return NerExample(ex_id, tokens, tags)
    if task == "qa":
        question, context, answers = need("question"), need("context"), need("answers")
        for name, value in (("question", question), ("context", context), ("answers", answers)):
            if value is _MISSING:
                return f"missing field {fields_[name]!r}"
        question, context_text = _text(question), context if isinstance(context, str) else None
        if question is None or not context_text or not context_text.strip():
            return "empty question or context"
        parsed = _answers(answers, context_text)
        if isinstance(parsed, str):
            return parsed
        return QaExample(ex_id, question, context_text, parsed[0], parsed[1])
    source, target = need("source"), need("target")
    if source is _MISSING or target is _MISSING:
        return f"missing field {fields_['source'] if source is _MISSING else fields_['target']!r}"
    source_text = _text(source)
    refs = [t for t in (_text(v) for v in (target if isinstance(target, list) else [target])) if t]
    if source_text is None or not refs:
        return "empty source or target"
    return Seq2SeqExample(ex_id, source_text, refs)


def read_split(
    path: str | Path, task: str, fields_: dict[str, str], fmt: str = "auto", option: str = "file"
) -> Split:
    """The usable examples of one file (given as `option`), with the dropped rows counted by reason."""
    rows = read_table(path, fmt, option)
    split = Split(rows=len(rows))
    for i, row in enumerate(rows):
        example = to_example(task, row, i, fields_)
        if isinstance(example, str):
            split.dropped[example] += 1
        else:
            split.examples.append(example)
    if not split.examples:
        top = ", ".join(f"{reason} ({n})" for reason, n in split.dropped.most_common(3))
        raise DataError(f"file {str(path)!r}: no row is a usable {task} example: {top}")
    return split


def field_map(config: Any) -> dict[str, str]:
    """The field-name options of an AdaptConfig under the names `to_example` uses."""
    return {
        "id": config.id_field,
        "text": config.text_field,
        "label": config.label_field,
        "tokens": config.tokens_field,
        "tags": config.tags_field,
        "question": config.question_field,
        "context": config.context_field,
        "answers": config.answers_field,
        "source": config.source_field,
        "target": config.target_field,
    }


def _sample(examples: list[Any], n: int, seed: int) -> list[Any]:
    """`n` examples drawn with `seed`, in file order (files are often sorted by label: the head is no sample)."""
    if len(examples) <= n:
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def load_task_data(config: Any) -> TaskData:
    """Train, dev and test examples for `config` (an AdaptConfig): dev from --dev or split off the train file."""
    fields_ = field_map(config)
    train = read_split(config.train, config.task, fields_, config.format, "train")
    dev_from = "file"
    if config.dev:
        dev = read_split(config.dev, config.task, fields_, config.format, "dev")
    else:
        # A seeded shuffle, then the first share is dev: reproducible, and no ordering in the file leaks into it.
        order = list(range(len(train.examples)))
        random.Random(config.seed).shuffle(order)
        n_dev = max(1, round(len(order) * config.dev_fraction))
        if len(order) - n_dev < 1:
            raise DataError(
                f"file {config.train!r}: {len(order)} usable rows are too few to hold out a dev set; pass --dev"
            )
        dev_ids = set(order[:n_dev])
        dev = Split([e for i, e in enumerate(train.examples) if i in dev_ids], rows=n_dev)
        train = Split(
            [e for i, e in enumerate(train.examples) if i not in dev_ids],
            rows=train.rows - n_dev,
            dropped=train.dropped,
        )
        dev_from = "split"
    if config.limit is not None:
        train.examples = _sample(train.examples, config.limit, config.seed)
    if config.max_dev_rows is not None:
        dev.examples = _sample(dev.examples, config.max_dev_rows, config.seed)
    test = read_split(config.test, config.task, fields_, config.format, "test") if config.test else None
    labels: list[str] = []
    if config.task in ("classification", "ner"):
        # Labels seen anywhere: a dev/test label absent from train stays in the set, so it counts as a miss.
        seen = Counter(_labels_of(config.task, train.examples))
        for split in (dev, test):
            if split is not None:
                seen.update(_labels_of(config.task, split.examples))
        labels = sorted(seen)
        if config.task == "classification" and len(labels) < 2:
            raise DataError(f"file {config.train!r}: classification needs at least 2 labels, found {labels}")
    return TaskData(config.task, train, dev, test, labels, dev_from)
