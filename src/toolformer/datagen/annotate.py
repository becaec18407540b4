"""The annotation pipeline over a corpus (paper §2): heuristics → sample → execute → filter → merge, resumable.

`annotate(config)` reads the input (see `io.py`), keeps the documents of this worker (`hash(id) % num_shards ==
shard_id`), cuts them in input order into chunks of `shard_size` and writes each finished chunk atomically into
`config.out` as two files:

- `shard-NNNNN.jsonl`: the augmented training texts of the chunk, one row per document with at least one kept
  call: `{"id", "split", "text" (calls inserted), "source_text", "calls": [{"tool", "args", "result", "position",
  "start", "end", "gain", "loss_plus", "loss_minus"}]}`. `split` is "train" or "dev" (hash of the id, see
  `merge.split_of`); the trainer reads every `shard-*.jsonl` and picks rows by `split`. `position` is the
  character offset in `source_text`, `start`/`end` the call's span in `text`.
- `records-NNNNN.jsonl`: every document of the chunk, kept or not, in input order: `{"id", "split", "status"
  ("ok" or "bad"), "verdict" (why the text was kept or dropped), "tools_applied", "kept_calls", "candidates":
  [every candidate with its call, position, token index, L⁺, L⁻, L(ε), L(e(c, ε)), gain, kept, reason]}`, plus
  the document's `text` when it kept no call (so a folder holds every document's text: `train` mixes these in as
  plain texts). A bad input row (missing field, not a string, empty, too long, duplicate id) is a record with
  status "bad"; a line that is not JSON, an empty input or one where no row gives a document stops the run before
  anything is written or loaded. `outputs.AnnotateFolder` reads a folder back as typed records
  (`records.DocumentRecord`, `records.TrainingRow`).

The records file is written after the shard file and is the chunk's completion mark. A rerun with the same
options skips every chunk whose two files exist and whose ids match the input (checked line by line), and redoes
the others, so a run killed at any point and rerun loses and duplicates nothing. `manifest.json` holds the
config (a rerun with different options is refused, naming the field), the input's sha256, the model, the tools
and their versions, counts per tool, the split and timings. With `num_shards > 1` every file name carries the
worker (`shard-w001of004-00000.jsonl`, `manifest-w001of004.json`) so workers can share one folder.

The stages are plain callables passed in (`applies`, `proposers`, `execute_fn`, `filter_fn`), defaulting to
`heuristics.applies`, the proposers named by `config.proposer`, `execute.execute` and `filter.filter_documents`.
`backend="ray"` runs the same `Pipeline.process` in Ray Data actors (`docs/scale.md`). With
`exclude_self_from_search` (the default) every call runs with its document's own passage left out of WikiSearch
and QA (`execute.execute(documents=...)`), so a corpus that is also the search corpus is not annotated with
calls that copy it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from toolformer.configs import field_default, field_help
from toolformer.datagen.execute import ToolCache, execute
from toolformer.datagen.filter import PAPER_TAU_F_PER_TOOL, FilterConfig
from toolformer.datagen.io import (
    BadRow,
    Source,
    iter_rows,
    open_source,
    record_id,
    remove_stale_temps,
    source_sha256,
    to_document,
    write_json_atomic,
    write_jsonl_atomic,
)
from toolformer.datagen.merge import best_per_position, merge_spans, shard_of, split_of
from toolformer.datagen.outputs import read_records, read_rows
from toolformer.datagen.records import Candidate, Document
from toolformer.errors import ConfigError, DataError, ToolformerError, require

MANIFEST_VERSION = 1
PROPOSERS = ("rule", "data", "lm")
BACKENDS = ("local", "ray")
SAMPLE_BACKENDS = ("transformers", "vllm")
SELF_EXCLUSION_RULE = (
    "WikiSearch/QA hits left out: same id as the document, or normalised text equal to it, or whose first 100 "
    "normalised characters occur in it, or that contain its first 100 (tools.wikisearch.document_exclusion)"
)
# A debugging and testing hook: sleep this many seconds per document (e.g. to kill a run mid-way on purpose).
DELAY_ENV = "TOOLFORMER_ANNOTATE_DELAY_S"


def _opt(default: Any, help: str, **kwargs: Any) -> Any:
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class AnnotateConfig:
    """Every option of an annotation run. The CLI's options are these fields; the manifest stores them."""

    input: str = _opt(
        "", "Input: a JSONL/JSON/Parquet/text file or folder, a `datasets` folder, or a Hub id."
    )
    out: str = _opt(
        "augmented", "Output folder for shards, records and the manifest (shared by all workers)."
    )
    format: str = _opt(
        "auto",
        "Input format: auto (by suffix), jsonl, json, gsm8k (GSM8K JSONL: question + solution with <<calc>> "
        "annotations, for --proposer data), gsm8k-answer (the same records as short 'Question: …\\nAnswer: 72' texts "
        "with one call composed from the whole solution before the answer), text, parquet, hf (`datasets` folder "
        "or Hub id).",
    )
    text_field: str = _opt("text", "Field holding the text; a dotted path reaches into objects (meta.body).")
    id_field: str = _opt("id", "Field holding the document id; rows without it get <file>:<line>.")
    text_unit: str = _opt(
        "paragraph", "Plain text input: one document per blank-line paragraph, or per file."
    )
    hf_split: str = _opt("train", "Split to read from a `datasets` DatasetDict or Hub data set.")
    tools: str = _opt(
        "Calculator,Calendar,WikiSearch,QA",
        "Tools, comma-separated: built-in names (Calculator,Calendar,WikiSearch,QA,MT), module:function or mcp:CMD.",
    )
    proposer: str = _opt(
        "rule",
        "Who proposes candidate calls: rule (pattern rules), data (calls already in the data, --format gsm8k), "
        "lm (sampled from the model with the paper's prompts P(x)), or several, comma-separated (rule,lm).",
    )
    model: str = _opt(
        "smollm2-135m-instruct",
        "Model M that scores the calls (and samples them with lm): alias, GGUF, folder.",
    )
    tau_f: float = _opt(1.0, "Keep a call if L⁻ − L⁺ ≥ tau_f (paper: 1.0).")
    tau_f_tool: dict[str, float] = field(
        default_factory=lambda: dict(PAPER_TAU_F_PER_TOOL),
        metadata={"help": "Per-tool tau_f, TOOL=VALUE, repeatable; default Calculator=0.5 MT=0.5 (paper)."},
    )
    horizon: int = _opt(5, "Tokens after a call whose loss counts (weights 1 − t/horizon, paper: 5).")
    limit: int | None = _opt(None, "Read only the first N input rows (all workers: the same N rows).")
    shard_size: int = _opt(64, "Documents per output shard; each shard is written once it is finished.")
    num_shards: int = _opt(1, "Workers splitting the input by hash(id) % num_shards (one folder for all).")
    shard_id: int = _opt(0, "This worker's number, 0 ≤ shard_id < num_shards.")
    backend: str = _opt(
        "local", "local (this process) or ray (Ray Data actors; pip install 'toolformer-kit[scale]')."
    )
    device: str = _opt("cpu", "Torch device of the model: cpu, cuda, cuda:1, mps.")
    autocast_bf16: bool | None = _opt(
        None, "Score under bfloat16 autocast; default: on for CUDA, off otherwise."
    )
    max_batch_tokens: int = _opt(4096, "Scoring batch budget: rows × longest row, in tokens.")
    batch_docs: int = _opt(8, "Documents scored together (the progress bar moves per batch).")
    max_chars: int = _opt(
        4000, "Texts longer than this many characters are skipped as bad rows (0: no limit)."
    )
    dev_fraction: float = _opt(0.05, "Fraction of documents (by hash of id) whose rows get split=dev.")
    seed: int = _opt(0, "Seed of the train/dev split hash and of LM sampling.")
    workers: int = _opt(4, "Threads running tool calls.")
    exclude_self_from_search: bool = _opt(
        True,
        "WikiSearch and QA leave out the annotated document's own passage (same id, or text that overlaps it), "
        "so a corpus that is also the search corpus does not get calls that just copy the text.",
    )
    sample_backend: str = _opt(
        "transformers",
        "Engine sampling the calls of --proposer lm: transformers, or vllm (GPU; pip install "
        "'toolformer-kit[gpu]'). The p_i scoring pass always uses transformers.",
    )
    tool_cache: str | None = _opt(
        None, "SQLite file caching tool results across runs (default: memory only)."
    )
    ray_address: str | None = _opt(
        None, "Ray cluster address for --backend ray (default: local or RAY_ADDRESS)."
    )
    ray_actors: int = _opt(2, "Ray actors (model copies) for --backend ray.")

    def check(self) -> None:
        """Raise ConfigError naming the first bad field and its value."""
        if not str(self.input).strip():
            raise ConfigError("input='' : give an input file, folder or data set")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend={self.backend!r} is not one of {', '.join(BACKENDS)}")
        for name in self.proposer_names():
            if name not in PROPOSERS:
                raise ConfigError(
                    f"proposer={self.proposer!r}: {name!r} is not one of {', '.join(PROPOSERS)}"
                )
        if self.sample_backend not in SAMPLE_BACKENDS:
            raise ConfigError(
                f"sample_backend={self.sample_backend!r} is not one of {', '.join(SAMPLE_BACKENDS)}"
            )
        if not self.proposer_names():
            raise ConfigError(f"proposer={self.proposer!r} names no proposer")
        if not [t for t in self.tools.split(",") if t.strip()]:
            raise ConfigError(f"tools={self.tools!r} names no tool")
        positive = {"shard_size": self.shard_size, "num_shards": self.num_shards, "horizon": self.horizon}
        positive |= {
            "batch_docs": self.batch_docs,
            "workers": self.workers,
            "max_batch_tokens": self.max_batch_tokens,
        }
        positive |= {"ray_actors": self.ray_actors}
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be an integer >= 1")
        if not (isinstance(self.shard_id, int) and 0 <= self.shard_id < self.num_shards):
            raise ConfigError(f"shard_id={self.shard_id!r} must be in 0..{self.num_shards - 1} (num_shards)")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 0):
            raise ConfigError(f"limit={self.limit!r} must be a non-negative integer")
        if not isinstance(self.max_chars, int) or self.max_chars < 0:
            raise ConfigError(f"max_chars={self.max_chars!r} must be a non-negative integer")
        if not 0.0 <= self.dev_fraction < 1.0:
            raise ConfigError(f"dev_fraction={self.dev_fraction!r} must be in [0, 1)")
        for tool, tau in self.tau_f_tool.items():
            if not isinstance(tau, (int, float)) or isinstance(tau, bool):
                raise ConfigError(f"tau_f_tool[{tool!r}]={tau!r} must be a number")

    def proposer_names(self) -> list[str]:
        return [p.strip().lower() for p in self.proposer.split(",") if p.strip()]

    def tool_names(self) -> list[str]:
        return [t.strip() for t in self.tools.split(",") if t.strip()]

    def filter_config(self) -> FilterConfig:
        bf16 = self.device.startswith("cuda") if self.autocast_bf16 is None else self.autocast_bf16
        return FilterConfig(
            tau_f=self.tau_f,
            tau_f_per_tool=dict(self.tau_f_tool),
            horizon=self.horizon,
            max_batch_tokens=self.max_batch_tokens,
            autocast_bf16=bf16,
            device=self.device,
        )

    help = classmethod(field_help)
    default = classmethod(field_default)


# Fields that change only speed or where results go, not what a chunk contains: a rerun may change them.
NOT_COMPARED = frozenset(
    {
        "out", "limit", "backend", "device", "autocast_bf16", "max_batch_tokens", "batch_docs", "workers",
        "tool_cache", "ray_address", "ray_actors", "shard_id", "sample_backend",
    }
)  # fmt: skip


def parse_tau_f_tool(items: Sequence[str], base: dict[str, float] | None = None) -> dict[str, float]:
    """`["Calculator=0.5", "QA=2"]` → {tool: tau} on top of `base` (default: the paper's per-tool values)."""
    out = dict(PAPER_TAU_F_PER_TOOL if base is None else base)
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"tau_f_tool={item!r} must be TOOL=NUMBER, e.g. Calculator=0.5") from None
    return out


# --------------------------------------------------------------------------------------------- names


@dataclass(frozen=True)
class OutputNames:
    """File names of one worker's outputs in the shared folder."""

    shard_id: int = 0
    num_shards: int = 1

    @property
    def tag(self) -> str:
        return "" if self.num_shards == 1 else f"w{self.shard_id:03d}of{self.num_shards:03d}-"

    def shard(self, out: Path, chunk: int) -> Path:
        return out / f"shard-{self.tag}{chunk:05d}.jsonl"

    def records(self, out: Path, chunk: int) -> Path:
        return out / f"records-{self.tag}{chunk:05d}.jsonl"

    def manifest(self, out: Path) -> Path:
        return out / ("manifest.json" if self.num_shards == 1 else f"manifest-{self.tag[:-1]}.json")

    def lock(self, out: Path) -> Path:
        return out / f".lock-{self.tag or 'w000of001-'}annotate"

    @property
    def prefixes(self) -> list[str]:
        return [f"shard-{self.tag}", f"records-{self.tag}", self.manifest(Path()).name]


# --------------------------------------------------------------------------------------------- pipeline

Proposer = Any  # anything with .propose(doc, tool) -> list[Candidate]
Applies = Callable[[str, str], bool]
ExecuteFn = Callable[..., list[Candidate]]
FilterFn = Callable[[Any, Any, Sequence[tuple[str, list[Candidate]]], FilterConfig], list[list[Candidate]]]


def _cand_record(cand: Candidate) -> dict[str, Any]:
    row = cand.to_dict()
    row.pop("doc_id", None)
    row["call"] = cand.text(with_result=cand.result is not None)
    row["gain"] = cand.gain
    return row


class Pipeline:
    """The per-document stages with their collaborators; `process(items)` turns documents into output rows.

    `filter_fn(model, tokenizer, [(text, candidates), ...], filter_config)` scores a batch of documents and sets
    `kept`/`reason` (default `filter.filter_documents`); `execute_fn(candidates, tools, cache=, workers=)` runs the
    calls (default `execute.execute`); `applies(tool, text)` is the document heuristic.
    """

    def __init__(
        self,
        config: AnnotateConfig,
        model: Any,
        tokenizer: Any,
        tools: Any,
        proposers: Sequence[Proposer],
        applies: Applies,
        execute_fn: ExecuteFn = execute,
        filter_fn: FilterFn | None = None,
        cache: ToolCache | None = None,
    ) -> None:
        if filter_fn is None:
            from toolformer.datagen.filter import filter_documents

            filter_fn = filter_documents
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        self.tools = tools
        self.proposers = list(proposers)
        self.applies = applies
        self.execute_fn = execute_fn
        self.filter_fn = filter_fn
        self.filter_config = config.filter_config()
        self.cache = cache if cache is not None else ToolCache(config.tool_cache)
        # The registry's names, not the spec's: `calculator` or `mytools:add` load as `Calculator` and `add`.
        self.tool_names = list(tools) if isinstance(tools, Mapping) else config.tool_names()
        self.delay = float(os.environ.get(DELAY_ENV, "0") or 0)
        self.seconds = {"propose": 0.0, "execute": 0.0, "filter": 0.0}

    def process(
        self, items: Sequence[Document | BadRow]
    ) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        """(record, shard row or None) for every item, in order; stages run batched over the items."""
        docs = [item for item in items if isinstance(item, Document)]
        applied: dict[str, list[str]] = {}
        cands: dict[str, list[Candidate]] = {}
        t0 = time.perf_counter()
        failed: dict[str, str] = {}
        for doc in docs:
            applied[doc.id] = [t for t in self.tool_names if self.applies(t, doc.text)]
            try:
                cands[doc.id] = self._propose(doc, applied[doc.id])
            except ToolformerError as exc:  # e.g. DataError: a document the proposer cannot read; go on
                failed[doc.id] = f"proposer failed: {exc}"
                cands[doc.id] = []
            if self.delay:
                time.sleep(self.delay)
        t1 = time.perf_counter()
        everything = [c for doc in docs for c in cands[doc.id]]
        if everything:
            extra: dict[str, Any] = {}
            if self.config.exclude_self_from_search:
                extra["documents"] = {doc.id: doc.text for doc in docs if cands[doc.id]}
            self.execute_fn(everything, self.tools, cache=self.cache, workers=self.config.workers, **extra)
        t2 = time.perf_counter()
        batch = [(doc.text, cands[doc.id]) for doc in docs if cands[doc.id]]
        if batch:
            self.filter_fn(self.model, self.tokenizer, batch, self.filter_config)
        t3 = time.perf_counter()
        self.seconds["propose"] += t1 - t0
        self.seconds["execute"] += t2 - t1
        self.seconds["filter"] += t3 - t2
        out = []
        for item in items:
            if isinstance(item, Document) and item.id in failed:
                item = BadRow(item.id, failed[item.id])
            if isinstance(item, BadRow):
                split = split_of(item.id, self.config.dev_fraction, self.config.seed)
                record = {
                    "id": item.id,
                    "split": split,
                    "status": "bad",
                    "verdict": item.reason,
                    "kept_calls": 0,
                }
                out.append((record, None))
            else:
                out.append(self._finish(item, applied[item.id], cands[item.id]))
        return out

    def _propose(self, doc: Document, tools: list[str]) -> list[Candidate]:
        seen: set[tuple[str, str, int]] = set()
        found: list[Candidate] = []
        for tool_name in tools:
            for proposer in self.proposers:
                for cand in proposer.propose(doc, tool_name):
                    key = (cand.tool, cand.args, cand.position)
                    if key not in seen:  # rule and lm may propose the same call; score it once
                        seen.add(key)
                        cand.doc_id = doc.id
                        found.append(cand)
        return found

    def _finish(
        self, doc: Document, applied: list[str], cands: list[Candidate]
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        kept = best_per_position(c for c in cands if c.kept)
        split = split_of(doc.id, self.config.dev_fraction, self.config.seed)
        if kept:
            verdict = "kept"
        elif not applied:
            verdict = "no tool's heuristic applies"
        elif not cands:
            verdict = "no candidate call proposed"
        else:
            verdict = "no call kept"
        record = {
            "id": doc.id,
            "split": split,
            "status": "ok",
            "verdict": verdict,
            "chars": len(doc.text),
            "tools_applied": applied,
            "kept_calls": len(kept),
            "candidates": [_cand_record(c) for c in cands],
        }
        if not kept:
            record["text"] = doc.text  # its only copy in the folder: train uses it as a plain text
            return record, None
        text, spans = merge_spans(doc.text, kept)
        calls = [
            {
                "tool": c.tool,
                "args": c.args,
                "result": c.result,
                "position": c.position,
                "start": start,
                "end": end,
                "gain": c.gain,
                "loss_plus": c.loss_plus,
                "loss_minus": c.loss_minus,
            }
            for c, (start, end) in zip(kept, spans)
        ]
        row = {"id": doc.id, "split": split, "text": text, "source_text": doc.text, "calls": calls}
        return record, row


def default_proposers(
    names: Sequence[str],
    model: Any = None,
    tokenizer: Any = None,
    seed: int = 0,
    sample_backend: str = "transformers",
) -> list[Proposer]:
    """The proposers named by `--proposer` (rule, data, lm), from `datagen.sample`.

    `data` proposes the calls the input already holds: GSM8K's `<<…>>` annotations (`--format gsm8k`) or inline
    `[Tool(args) → r]` calls, which are taken out of the text first (see `_make_item`). `lm` samples with the
    paper's per-tool settings (τ_s, k, m), seeded with `seed`, sampling with `sample_backend`.
    """
    from toolformer.datagen import sample

    out: list[Proposer] = []
    for name in names:
        if name == "rule":
            out.append(sample.RuleProposer())
        elif name == "data":
            out.append(sample.DataProposer())
        elif name == "lm":
            configs = {
                tool: replace(sample.paper_config(tool), seed=seed, backend=sample_backend)
                for tool in sample.PAPER_DEFAULTS
            }
            out.append(_SeededLM(sample.LMProposer(model, tokenizer, configs), seed, sample_backend))
        else:
            raise ConfigError(f"proposer={name!r} is not one of {', '.join(PROPOSERS)}")
    return out


class _SeededLM:
    """LMProposer with the run's seed and backend also for tools outside the paper's five (else: defaults)."""

    def __init__(self, inner: Any, seed: int, backend: str = "transformers") -> None:
        self.inner = inner
        self.seed = seed
        self.backend = backend

    def propose(self, doc: Document, tool: str) -> list[Candidate]:
        configs = self.inner.config
        if isinstance(configs, dict) and tool not in configs:
            from toolformer.datagen import sample

            configs[tool] = replace(sample.paper_config(tool), seed=self.seed, backend=self.backend)
        return self.inner.propose(doc, tool)


def default_applies(proposers: Sequence[str] = ()) -> Applies:
    """The paper's per-tool text heuristics; none when only the `data` proposer runs.

    The heuristics exist to spare LM sampling on texts unlikely to need a tool; calls the data already holds
    cost no sampling, and the loss filter still decides each of them.
    """
    if proposers and set(proposers) == {"data"}:
        return lambda tool_name, text: True
    from toolformer.datagen.heuristics import applies

    return applies


def build_pipeline(
    config: AnnotateConfig,
    model: Any = None,
    tokenizer: Any = None,
    tools: Any = None,
    proposers: Sequence[Proposer] | None = None,
    applies: Applies | None = None,
    execute_fn: ExecuteFn | None = None,
    filter_fn: FilterFn | None = None,
) -> Pipeline:
    """A Pipeline, loading what is not given: the model (`config.model` on `config.device`), the tools, ..."""
    if model is None or tokenizer is None:
        from toolformer.models import load_model

        model, tokenizer = load_model(config.model, device=config.device)
    if tools is None:
        from toolformer.tools import load_tools

        tools = load_tools(config.tool_names())
    if proposers is None:
        proposers = default_proposers(
            config.proposer_names(), model, tokenizer, config.seed, config.sample_backend
        )
    return Pipeline(
        config,
        model,
        tokenizer,
        tools,
        proposers,
        applies or default_applies(config.proposer_names()),
        execute_fn or execute,
        filter_fn,
    )


# --------------------------------------------------------------------------------------------- input plan


@dataclass
class _Row:
    id: str
    fallback_id: str
    value: Any
    duplicate_of: str | None = None


def _worker_rows(source: Source, config: AnnotateConfig) -> Iterator[_Row]:
    """This worker's input rows, in input order, up to `limit` input rows; repeated ids are flagged."""
    seen: dict[str, str] = {}
    for number, (fallback_id, value) in enumerate(iter_rows(source)):
        if config.limit is not None and number >= config.limit:
            break
        doc_id = value.id if isinstance(value, BadRow) else record_id(value, fallback_id, config.id_field)
        if config.num_shards > 1 and shard_of(doc_id, config.num_shards) != config.shard_id:
            continue
        first = seen.setdefault(doc_id, fallback_id)
        yield _Row(doc_id, fallback_id, value, first if first != fallback_id else None)


def _plan(source: Source, config: AnnotateConfig) -> list[list[str]]:
    """This worker's chunks of document ids, after checking that the input can give documents at all.

    DataError (one line naming the input) for an empty input, a JSONL line that is not JSON (a broken file, not a
    bad row) and, in a single-worker run, an input none of whose rows gives a document (a wrong --text-field).
    Rows that are merely unusable (a missing field in some rows, an empty text) are recorded as bad rows later.
    """
    where = str(source.path) if source.path is not None else source.name
    plan: list[list[str]] = []
    chunk: list[str] = []
    rows = usable = 0
    reasons: Counter[str] = Counter()
    fields_seen: list[str] | None = None
    for row in _worker_rows(source, config):
        rows += 1
        if isinstance(row.value, BadRow):
            line = row.fallback_id.rsplit(":", 1)[-1]
            what = row.value.reason.removeprefix("line ")
            raise DataError(f"input {where!r}: line {line} {what}; fix or remove the line")
        if fields_seen is None and isinstance(row.value, dict):
            fields_seen = [str(k) for k in row.value]
        item = _make_item(row, config)
        if isinstance(item, BadRow):
            reasons[item.reason] += 1
        else:
            usable += 1
        chunk.append(row.id)
        if len(chunk) == config.shard_size:
            plan.append(chunk)
            chunk = []
    if chunk:
        plan.append(chunk)
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


def _make_item(row: _Row, config: AnnotateConfig) -> Document | BadRow:
    if row.duplicate_of is not None:
        return BadRow(row.id, f"duplicate id (first seen at {row.duplicate_of})")
    if config.format in ("gsm8k", "gsm8k-answer") and isinstance(row.value, dict):
        return _gsm8k_item(row, config)
    item = to_document(row.value, row.fallback_id, config.text_field, config.id_field, config.max_chars)
    if isinstance(item, Document) and "data" in config.proposer_names():
        from toolformer.datagen.sample import DataProposer

        # Inline calls already in the text are taken out; the `data` proposer proposes them back for scoring.
        item = DataProposer().extract(item)[0]
    return item


def _gsm8k_item(row: _Row, config: AnnotateConfig) -> Document | BadRow:
    from toolformer.datagen.sample import gsm8k_answer_document, gsm8k_document

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
    for row in _worker_rows(source, replace(config, num_shards=1, shard_id=0)):
        if row.id in wanted and row.id not in found and row.duplicate_of is None:
            item = _make_item(row, config)
            if isinstance(item, Document):
                found[row.id] = item
                if len(found) == len(wanted):
                    break
    return found


def _chunks(rows: Iterator[_Row], size: int) -> Iterator[list[_Row]]:
    chunk: list[_Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --------------------------------------------------------------------------------------------- outputs


def _chunk_complete(out: Path, names: OutputNames, index: int, ids: list[str]) -> bool:
    """Both files of chunk `index` exist, the records hold exactly `ids` in order, the shard the kept ones."""
    rec_path, shard_path = names.records(out, index), names.shard(out, index)
    if not rec_path.is_file() or not shard_path.is_file():
        return False
    try:
        records = read_records(rec_path)
        rows = read_rows(shard_path)
    except (DataError, OSError, UnicodeDecodeError):
        return False
    if [r.id for r in records] != ids:
        return False
    return [r.id for r in rows] == [r.id for r in records if r.kept_calls > 0]


def _write_chunk(
    out: Path, names: OutputNames, index: int, results: list[tuple[dict[str, Any], dict[str, Any] | None]]
) -> None:
    # Shard first, records last: the records file marks the chunk as done.
    write_jsonl_atomic(names.shard(out, index), [row for _, row in results if row is not None])
    write_jsonl_atomic(names.records(out, index), [record for record, _ in results])


@dataclass
class ToolStats:
    """One tool's funnel over the run's documents."""

    texts: int = 0  # documents whose heuristic passed
    positions: int = 0  # distinct (document, position) pairs with a proposed call
    proposed: int = 0
    executed_ok: int = 0
    executed_error: int = 0
    kept: int = 0  # calls in the training texts (L⁻ − L⁺ ≥ τ_f and the best at their position)
    texts_kept: int = 0  # documents with at least one kept call of this tool
    best_gain: float | None = None  # the largest L⁻ − L⁺ among its scored candidates


@dataclass
class AnnotateReport:
    """What a run produced (`annotate` returns it; the CLI prints it)."""

    out: Path
    manifest: Path
    documents: int = 0
    bad: int = 0
    texts_kept: int = 0
    calls_kept: int = 0
    dev_texts: int = 0
    per_tool: dict[str, ToolStats] = field(default_factory=dict)
    bad_rows: list[BadRow] = field(default_factory=list)
    shards: list[Path] = field(default_factory=list)
    records: list[Path] = field(default_factory=list)
    chunks_done_before: int = 0
    chunks_written: int = 0
    documents_this_run: int = 0
    seconds: float = 0.0
    load_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def texts_per_hour(self) -> float | None:
        """Documents annotated per hour by this run (model loading excluded)."""
        busy = self.seconds - self.load_seconds
        return self.documents_this_run * 3600 / busy if self.documents_this_run and busy > 0 else None


MAX_BAD_IN_MANIFEST = 100


def nothing_kept_advice(
    report: AnnotateReport, tau_for: Callable[[str], float], proposers: Sequence[str]
) -> str | None:
    """When a run kept no call: one paragraph saying why (no candidate, every call failed, gains below τ_f) and
    what to change. None when something was kept."""
    if report.calls_kept or not report.documents:
        return None
    stats = report.per_tool
    proposed = sum(st.proposed for st in stats.values())
    if proposed == 0:
        return (
            f"kept no call: the {', '.join(proposers)} proposer found no candidate in {report.documents} documents "
            "(the heuristics passed "
            + ", ".join(f"{n}: {st.texts}" for n, st in stats.items())
            + "). Small models cannot follow the paper's prompt: try `--proposer rule` on prose, `--proposer data` "
            "on texts that already hold calls, or `toolformer mixture build` for question texts."
        )
    if all(st.executed_ok == 0 for st in stats.values()):
        return "kept no call: every proposed call failed (see `toolformer annotate inspect DIR`): check the tools."
    gains = ", ".join(
        f"{n} best {st.best_gain:.2f} < τ_f {tau_for(n):g}"
        for n, st in stats.items()
        if st.best_gain is not None
    )
    return (
        f"kept no call: {proposed} candidates were scored but none reached τ_f ({gains}). Lower --tau-f / "
        "--tau-f-tool, give texts where a tool's result predicts what follows (short question/answer texts work "
        "best at 135M), and see `toolformer annotate inspect DIR` for the gains."
    )


def _collect(report: AnnotateReport, out: Path, names: OutputNames, n_chunks: int, tools: list[str]) -> None:
    """Fill the report's counts from the records files of this worker (also the chunks of earlier runs)."""
    stats = {t: ToolStats() for t in tools}
    for index in range(n_chunks):
        report.records.append(names.records(out, index))
        report.shards.append(names.shard(out, index))
        for rec in read_records(names.records(out, index)):
            report.documents += 1
            if rec.status == "bad":
                report.bad += 1
                if len(report.bad_rows) < MAX_BAD_IN_MANIFEST:
                    report.bad_rows.append(BadRow(rec.id, rec.verdict))
                continue
            if rec.kept_calls > 0:
                report.texts_kept += 1
                report.calls_kept += rec.kept_calls
                report.dev_texts += rec.split == "dev"
            for tool_name in rec.tools_applied:
                stats.setdefault(tool_name, ToolStats()).texts += 1
            positions: dict[str, set[int]] = {}
            kept_tools: set[str] = set()
            for cand in rec.candidates:
                st = stats.setdefault(cand.tool, ToolStats())
                st.proposed += 1
                positions.setdefault(cand.tool, set()).add(cand.position)
                if cand.ok:
                    st.executed_ok += 1
                elif cand.ok is False:
                    st.executed_error += 1
                if cand.kept:
                    st.kept += 1
                    kept_tools.add(cand.tool)
                if cand.gain is not None and (st.best_gain is None or cand.gain > st.best_gain):
                    st.best_gain = cand.gain
            for tool_name, found in positions.items():
                stats[tool_name].positions += len(found)
            for tool_name in kept_tools:
                stats[tool_name].texts_kept += 1
    report.per_tool = stats


# --------------------------------------------------------------------------------------------- manifest


def _compared(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in NOT_COMPARED}


def _check_manifests(
    out: Path, config: AnnotateConfig, sha: str | None, names: OutputNames
) -> dict[str, Any]:
    """Refuse a folder written with other options (any worker's manifest), naming the first differing field.

    Returns this worker's previous manifest ({} if none).
    """
    mine: dict[str, Any] = {}
    wanted = _compared(json.loads(json.dumps(asdict(config))))
    for path in sorted(out.glob("manifest*.json")):
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{path} is not readable JSON ({exc}); delete it or use another --out") from exc
        old_config = old.get("config", {})
        if path.name == names.manifest(out).name:
            mine = old
        for key in sorted(set(wanted) | set(_compared(old_config))):
            if wanted.get(key) != old_config.get(key):
                raise ConfigError(
                    f"{out} was written with {key}={old_config.get(key)!r} ({path.name}), this run has "
                    f"{key}={wanted.get(key)!r}: rerun with the same options or use another --out"
                )
        old_sha = old.get("input", {}).get("sha256")
        if old_sha and sha and old_sha != sha:
            raise ConfigError(
                f"input {config.input!r} changed since {path.name} was written (sha256 {old_sha[:12]}… ≠ "
                f"{sha[:12]}…): use another --out"
            )
    return mine


def _versions() -> dict[str, str]:
    from importlib import metadata

    import toolformer

    out = {"toolformer": toolformer.__version__}
    for dist in ("torch", "transformers", "ray"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` so two runs never write the same worker's files at once."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the user keeps runs apart
        yield
        return
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(
                f"another annotate run is writing {path.parent} (lock {path.name}); wait for it or use another --out"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------- run


def annotate(
    config: AnnotateConfig,
    model: Any = None,
    tokenizer: Any = None,
    tools: Any = None,
    proposers: Sequence[Proposer] | None = None,
    *,
    applies: Applies | None = None,
    execute_fn: ExecuteFn | None = None,
    filter_fn: FilterFn | None = None,
    progress: bool = False,
) -> AnnotateReport:
    """Annotate `config.input` into `config.out` (see the module docstring); resumes a killed or finished run.

    Whatever is not passed in is built from the config: the model is loaded only if some chunk is left to do.
    `progress` shows a rich progress bar (on stderr) over this worker's documents.
    """
    config.check()
    if config.backend == "ray":
        given = {"model": model, "tokenizer": tokenizer, "tools": tools, "proposers": proposers}
        given |= {"applies": applies, "execute_fn": execute_fn, "filter_fn": filter_fn}
        passed = [name for name, value in given.items() if value is not None]
        if passed:
            raise ConfigError(
                f"backend='ray' builds every stage from the config inside its actors; {', '.join(passed)} "
                "cannot be passed in (use backend='local')"
            )
        require("ray", "scale")
    started = time.time()
    out = Path(config.out).expanduser()
    names = OutputNames(config.shard_id, config.num_shards)
    # The input, the tools, an earlier run's options and the model are checked before anything is written: a bad
    # input leaves no folder, lock or manifest behind.
    source = open_source(config.input, config.format, config.text_unit, config.hf_split)
    plan = _plan(source, config)
    sha = source_sha256(source)
    _check_manifests(out, config, sha, names)
    load_started = time.time()
    if tools is None:
        from toolformer.tools import load_tools

        tools = load_tools(config.tool_names())  # cheap: indexes and models load on first use
    tool_names = list(tools) if isinstance(tools, Mapping) else config.tool_names()
    pipeline: Pipeline | None = None

    def load_pipeline() -> Pipeline:
        return build_pipeline(config, model, tokenizer, tools, proposers, applies, execute_fn, filter_fn)

    if config.backend == "local" and not all(
        _chunk_complete(out, names, i, ids) for i, ids in enumerate(plan)
    ):
        pipeline = load_pipeline()
    load_seconds = time.time() - load_started
    out.mkdir(parents=True, exist_ok=True)
    with _locked(names.lock(out)):
        previous = _check_manifests(out, config, sha, names)
        # After the check: only now is it sure no worker of another layout shares these file names.
        remove_stale_temps(out, names.prefixes)
        manifest: dict[str, Any] = {
            "manifest_version": MANIFEST_VERSION,
            "status": "running",
            "config": asdict(config),
            "worker": {"shard_id": config.shard_id, "num_shards": config.num_shards},
            "input": {
                "path": str(source.path.resolve()) if source.path else source.name,
                "kind": source.kind,
                "sha256": sha,
            },
            "layout": {
                "shards": f"shard-{names.tag}NNNNN.jsonl",
                "records": f"records-{names.tag}NNNNN.jsonl",
                "split": "field 'split' of every shard row: 'train' or 'dev' (hash of the document id)",
            },
            "runs": previous.get("runs", []),
        }
        write_json_atomic(names.manifest(out), manifest)

        # Under the lock: another run may have finished chunks since the check above.
        done = {i for i, ids in enumerate(plan) if _chunk_complete(out, names, i, ids)}
        report = AnnotateReport(out=out, manifest=names.manifest(out), chunks_done_before=len(done))
        total_docs = sum(len(ids) for ids in plan)
        todo = total_docs - sum(len(plan[i]) for i in done)
        if todo and config.backend == "local" and pipeline is None:
            load_started = time.time()
            pipeline = load_pipeline()
            load_seconds = time.time() - load_started
        report.load_seconds = load_seconds if pipeline is not None else 0.0

        def pending() -> Iterator[tuple[int, list[Document | BadRow]]]:
            for index, chunk in enumerate(_chunks(_worker_rows(source, config), config.shard_size)):
                if index not in done:
                    yield index, [_make_item(row, config) for row in chunk]

        with _progress(progress, total_docs, total_docs - todo) as advance:
            if todo and config.backend == "ray":
                report.chunks_written = _run_ray(config, out, names, pending(), advance)
            elif todo:
                assert pipeline is not None
                for index, items in pending():
                    results: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
                    for start in range(0, len(items), config.batch_docs):
                        part = items[start : start + config.batch_docs]
                        results.extend(pipeline.process(part))
                        advance(len(part))
                    _write_chunk(out, names, index, results)
                    report.chunks_written += 1
        report.documents_this_run = todo
        if pipeline is not None:
            report.stage_seconds = {k: round(v, 3) for k, v in pipeline.seconds.items()}
            pipeline.cache.close()
        _collect(report, out, names, len(plan), tool_names)
        report.seconds = time.time() - started
        extra = sorted(
            p.name
            for p in out.glob(f"records-{names.tag}*.jsonl")
            if p.name not in {r.name for r in report.records}
        )
        manifest.update(
            status="done",
            model=_model_info(config, pipeline),
            tools=_tools_info(tools, tool_names),
            versions=_versions(),
            counts={
                "documents": report.documents,
                "bad": report.bad,
                "texts_kept": report.texts_kept,
                "calls_kept": report.calls_kept,
                "dev_texts": report.dev_texts,
                "train_texts": report.texts_kept - report.dev_texts,
                "per_tool": {name: asdict(st) for name, st in report.per_tool.items()},
            },
            tau_f={name: config.filter_config().tau_for(name) for name in tool_names},
            bad_rows=[asdict(b) for b in report.bad_rows],
            split={"dev_fraction": config.dev_fraction, "seed": config.seed, "field": "split"},
            search_exclusion=(
                {"enabled": True, "rule": SELF_EXCLUSION_RULE}
                if config.exclude_self_from_search
                else {"enabled": False}
            ),
            chunks=[{"shard": s.name, "records": r.name} for s, r in zip(report.shards, report.records)],
            extra_records_not_in_this_plan=extra,
        )
        manifest["runs"] = [
            *manifest["runs"],
            {
                "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
                "seconds": round(report.seconds, 3),
                "load_seconds": round(report.load_seconds, 3),
                "stage_seconds": report.stage_seconds,
                "documents": report.documents_this_run,
                "chunks_skipped": report.chunks_done_before,
                "chunks_written": report.chunks_written,
                "backend": config.backend,
                "device": config.device,
                "texts_per_hour": report.texts_per_hour,
            },
        ]
        write_json_atomic(names.manifest(out), manifest)
    return report


def _model_info(config: AnnotateConfig, pipeline: Pipeline | None) -> dict[str, Any]:
    info: dict[str, Any] = {"name": config.model}
    model = pipeline.model if pipeline is not None else None
    if model is not None:
        info["name_or_path"] = getattr(model, "name_or_path", None)
        info["class"] = type(model).__name__
        with contextlib.suppress(Exception):
            info["parameters"] = sum(p.numel() for p in model.parameters())
    return info


def _tools_info(tools: Any, names: list[str]) -> list[dict[str, Any]]:
    out = []
    for name in names:
        found = tools[name] if name in tools else None  # noqa: SIM401 - ToolRegistry.get raises
        out.append(
            {
                "name": name,
                "version": getattr(found, "version", None),
                "description": getattr(found, "description", None),
            }
        )
    return out


@contextlib.contextmanager
def _progress(show: bool, total: int, completed: int) -> Iterator[Callable[[int], None]]:
    if not show:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from toolformer.progress import Progress  # plain lines on stderr when it is not a terminal

    with Progress(
        TextColumn("annotating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("documents"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        name="annotate",
    ) as bar:
        task = bar.add_task("annotate", total=total, completed=completed)
        yield lambda n: bar.advance(task, n)


# --------------------------------------------------------------------------------------------- ray

RAY_WINDOW_CHUNKS = 32  # chunks handed to Ray at a time: bounds the driver's memory on huge inputs


def _item_to_json(item: Document | BadRow) -> str:
    if isinstance(item, BadRow):
        return json.dumps({"bad": True, "id": item.id, "reason": item.reason}, ensure_ascii=False)
    return json.dumps({"id": item.id, "text": item.text, "meta": item.meta}, ensure_ascii=False)


def _item_from_json(text: str) -> Document | BadRow:
    data = json.loads(text)
    if data.get("bad"):
        return BadRow(data["id"], data["reason"])
    return Document(data["id"], data["text"], data.get("meta", {}))


class RayAnnotator:
    """A Ray Data actor: builds the pipeline once (loads the model) and processes batches of documents."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.pipeline = build_pipeline(AnnotateConfig(**config))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        items = [_item_from_json(str(s)) for s in batch["item"]]
        results = self.pipeline.process(items)
        return {
            "chunk": list(batch["chunk"]),
            "record": [json.dumps(rec, ensure_ascii=False) for rec, _ in results],
            "row": [json.dumps(row, ensure_ascii=False) if row is not None else "" for _, row in results],
        }


def _run_ray(
    config: AnnotateConfig,
    out: Path,
    names: OutputNames,
    pending: Iterator[tuple[int, list[Document | BadRow]]],
    advance: Callable[[int], None],
) -> int:
    """Process the pending chunks with Ray Data (`from_items(...).map_batches(RayAnnotator)`), in windows.

    Order is preserved, so the driver writes each chunk as soon as its last document comes back.
    """
    require("ray", "scale")
    import ray
    import ray.data

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=config.ray_address, ignore_reinit_error=True, log_to_driver=False)
    try:
        return _ray_windows(config, out, names, pending, advance)
    finally:
        if started_here:
            ray.shutdown()


def _ray_windows(
    config: AnnotateConfig,
    out: Path,
    names: OutputNames,
    pending: Iterator[tuple[int, list[Document | BadRow]]],
    advance: Callable[[int], None],
) -> int:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    written = 0
    window: list[tuple[int, list[Document | BadRow]]] = []

    def flush() -> None:
        nonlocal written
        if not window:
            return
        sizes = {index: len(items) for index, items in window}
        rows = [{"chunk": index, "item": _item_to_json(item)} for index, items in window for item in items]
        ds = ray.data.from_items(rows).map_batches(
            RayAnnotator,
            fn_constructor_kwargs={"config": asdict(config)},
            batch_size=config.batch_docs,
            concurrency=config.ray_actors,
            batch_format="numpy",
            # One GPU per actor when scoring on CUDA: Ray then points each actor's "cuda" at its own device.
            num_gpus=1 if config.device.startswith("cuda") else 0,
        )
        buffers: dict[int, list[tuple[dict[str, Any], dict[str, Any] | None]]] = {}
        for row in ds.iter_rows():
            index = int(row["chunk"])
            record = json.loads(str(row["record"]))
            shard_row = json.loads(str(row["row"])) if str(row["row"]) else None
            buffers.setdefault(index, []).append((record, shard_row))
            advance(1)
            if len(buffers[index]) == sizes[index]:
                _write_chunk(out, names, index, buffers.pop(index))
                written += 1
        window.clear()

    for index, items in pending:
        window.append((index, items))
        if len(window) >= RAY_WINDOW_CHUNKS:
            flush()
    flush()
    return written
