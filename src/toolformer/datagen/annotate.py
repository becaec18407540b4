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
`backend="ray"` runs the same `Pipeline.process` in Ray Data actors (`ray_backend`, `docs/scale.md`). With
`exclude_self_from_search` (the default) every call runs with its document's own passage left out of WikiSearch
and QA (`execute.execute(documents=...)`), so a corpus that is also the search corpus is not annotated with
calls that copy it.

This module is the run; its parts live apart: the options in `config`, the stages in `pipeline` (and the paper's
steps `heuristics`, `sample`, `execute`, `filter`, `merge`), the input plan in `plan`, the file names and chunk
files in `layout`, the manifest in `manifest`, the counts in `report`. Their public names used by callers
(`AnnotateConfig`, `parse_tau_f_tool`, `AnnotateReport`, `nothing_kept_advice`, …) are importable from here too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from toolformer.datagen.config import (
    BACKENDS,
    NOT_COMPARED,
    PROPOSERS,
    SAMPLE_BACKENDS,
    AnnotateConfig,
    parse_tau_f_tool,
)
from toolformer.datagen.io import BadRow, open_source, remove_stale_temps, source_sha256, write_json_atomic
from toolformer.datagen.layout import OutputNames, chunk_complete, locked, write_chunk
from toolformer.datagen.manifest import (
    MANIFEST_VERSION,
    SELF_EXCLUSION_RULE,
    check_manifests,
    finish_manifest,
    new_manifest,
)
from toolformer.datagen.pipeline import (
    DELAY_ENV,
    Applies,
    ExecuteFn,
    FilterFn,
    Pipeline,
    Stages,
    build_pipeline,
    default_applies,
    tool_names,
)
from toolformer.datagen.plan import chunks, input_documents, make_item, plan_chunks, worker_rows
from toolformer.datagen.proposers.base import Proposer
from toolformer.datagen.ray_backend import RAY_WINDOW_CHUNKS, RayAnnotator, run_ray
from toolformer.datagen.records import Document
from toolformer.datagen.report import (
    MAX_BAD_IN_MANIFEST,
    AnnotateReport,
    ToolStats,
    collect,
    nothing_kept_advice,
)
from toolformer.datagen.sample import default_proposers
from toolformer.errors import ConfigError, require

__all__ = [
    "BACKENDS",
    "DELAY_ENV",
    "MANIFEST_VERSION",
    "MAX_BAD_IN_MANIFEST",
    "NOT_COMPARED",
    "PROPOSERS",
    "RAY_WINDOW_CHUNKS",
    "SAMPLE_BACKENDS",
    "SELF_EXCLUSION_RULE",
    "AnnotateConfig",
    "AnnotateReport",
    "OutputNames",
    "Pipeline",
    "RayAnnotator",
    "Stages",
    "ToolStats",
    "annotate",
    "build_pipeline",
    "default_applies",
    "default_proposers",
    "input_documents",
    "nothing_kept_advice",
    "parse_tau_f_tool",
]


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
    stages = Stages(model, tokenizer, tools, proposers, applies, execute_fn, filter_fn)
    if config.backend == "ray":
        passed = stages.given()
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
    plan = plan_chunks(source, config)
    sha = source_sha256(source)
    check_manifests(out, config, sha, names)
    load_started = time.time()
    if stages.tools is None:
        from toolformer.tools import load_tools

        stages.tools = load_tools(config.tool_names())  # cheap: indexes and models load on first use
    names_of_tools = tool_names(config, stages.tools)
    pipeline: Pipeline | None = None
    if config.backend == "local" and not all(
        chunk_complete(out, names, i, ids) for i, ids in enumerate(plan)
    ):
        pipeline = build_pipeline(config, stages)
    load_seconds = time.time() - load_started
    out.mkdir(parents=True, exist_ok=True)
    with locked(names.lock(out)):
        previous = check_manifests(out, config, sha, names)
        # After the check: only now is it sure no worker of another layout shares these file names.
        remove_stale_temps(out, names.prefixes)
        manifest = new_manifest(config, source, sha, names, previous)
        write_json_atomic(names.manifest(out), manifest)

        # Under the lock: another run may have finished chunks since the check above.
        done = {i for i, ids in enumerate(plan) if chunk_complete(out, names, i, ids)}
        report = AnnotateReport(out=out, manifest=names.manifest(out), chunks_done_before=len(done))
        total_docs = sum(len(ids) for ids in plan)
        todo = total_docs - sum(len(plan[i]) for i in done)
        if todo and config.backend == "local" and pipeline is None:
            load_started = time.time()
            pipeline = build_pipeline(config, stages)
            load_seconds = time.time() - load_started
        report.load_seconds = load_seconds if pipeline is not None else 0.0

        def pending() -> Iterator[tuple[int, list[Document | BadRow]]]:
            for index, chunk in enumerate(chunks(worker_rows(source, config), config.shard_size)):
                if index not in done:
                    yield index, [make_item(row, config) for row in chunk]

        with _progress(progress, total_docs, total_docs - todo) as advance:
            if todo and config.backend == "ray":
                report.chunks_written = run_ray(config, out, names, pending(), advance)
            elif todo:
                assert pipeline is not None
                for index, items in pending():
                    results: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
                    for start in range(0, len(items), config.batch_docs):
                        part = items[start : start + config.batch_docs]
                        results.extend(pipeline.process(part))
                        advance(len(part))
                    write_chunk(out, names, index, results)
                    report.chunks_written += 1
        report.documents_this_run = todo
        if pipeline is not None:
            report.stage_seconds = {k: round(v, 3) for k, v in pipeline.seconds.items()}
            pipeline.cache.close()
        collect(report, out, names, len(plan), names_of_tools)
        report.seconds = time.time() - started
        model_used = pipeline.model if pipeline is not None else None
        finish_manifest(manifest, config, report, names, model_used, stages.tools, names_of_tools, started)
        write_json_atomic(names.manifest(out), manifest)
    return report


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
