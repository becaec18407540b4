"""The per-document stages of annotation, wired together: heuristics → sample → execute → filter → merge.

`Pipeline.process(items)` turns a batch of documents (and bad rows) into (record, shard row or None) pairs, the
rows of `records-*.jsonl` and `shard-*.jsonl` (see `annotate`). `build_pipeline(config, stages)` builds every
stage not given in `stages` from the config: the model, the tools, the proposers `--proposer` names, the
heuristics (`heuristics.applies`, none for the data proposer alone), `execute.execute` and
`filter.filter_documents`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from toolformer.datagen.config import AnnotateConfig
from toolformer.datagen.execute import ToolCache, execute
from toolformer.datagen.filter import FilterConfig
from toolformer.datagen.io import BadRow
from toolformer.datagen.merge import best_per_position, merge_spans, split_of
from toolformer.datagen.proposers.base import Proposer
from toolformer.datagen.records import Candidate, Document
from toolformer.datagen.sample import default_proposers, propose
from toolformer.errors import ToolformerError

# A debugging and testing hook: sleep this many seconds per document (e.g. to kill a run mid-way on purpose).
DELAY_ENV = "TOOLFORMER_ANNOTATE_DELAY_S"

Applies = Callable[[str, str], bool]
ExecuteFn = Callable[..., list[Candidate]]
FilterFn = Callable[[Any, Any, Sequence[tuple[str, list[Candidate]]], FilterConfig], list[list[Candidate]]]


def tool_names(config: AnnotateConfig, tools: Any) -> list[str]:
    """The registry's names, not the spec's: `calculator` or `mytools:add` load as `Calculator` and `add`."""
    return list(tools) if isinstance(tools, Mapping) else config.tool_names()


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
        self.tool_names = tool_names(config, tools)
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
                cands[doc.id] = propose(doc, applied[doc.id], self.proposers)
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


@dataclass
class Stages:
    """The collaborators a run may be given instead of building them from its config (None: build it)."""

    model: Any = None
    tokenizer: Any = None
    tools: Any = None
    proposers: Sequence[Proposer] | None = None
    applies: Applies | None = None
    execute_fn: ExecuteFn | None = None
    filter_fn: FilterFn | None = None

    def given(self) -> list[str]:
        """The names of the collaborators given, in field order."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


def default_applies(proposers: Sequence[str] = ()) -> Applies:
    """The paper's per-tool text heuristics; none when only the `data` proposer runs.

    The heuristics exist to spare LM sampling on texts unlikely to need a tool; calls the data already holds
    cost no sampling, and the loss filter still decides each of them.
    """
    if proposers and set(proposers) == {"data"}:
        return lambda tool_name, text: True
    from toolformer.datagen.heuristics import applies

    return applies


def build_pipeline(config: AnnotateConfig, stages: Stages | None = None) -> Pipeline:
    """A Pipeline from `stages`, loading what is not given: the model (`config.model` on `config.device`), the
    tools, the proposers, the heuristics, the execute and filter steps."""
    given = stages or Stages()
    model, tokenizer, tools, proposers = given.model, given.tokenizer, given.tools, given.proposers
    if model is None or tokenizer is None:
        from toolformer.models.load import load_model

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
        given.applies or default_applies(config.proposer_names()),
        given.execute_fn or execute,
        given.filter_fn,
    )
