"""The manifest of an annotation folder: what a run was (options, input, model, tools, versions, counts, timings).

`manifest.json` (`manifest-wNNNofMMM.json` per worker) is written when a run starts (status "running") and again
when it ends (status "done"), with every run of the folder in `runs`. `check_manifests` refuses a rerun whose
options differ from any worker's manifest in a field that changes what a chunk holds (all but
`config.NOT_COMPARED`), or whose input changed (its sha256).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from toolformer.datagen.config import NOT_COMPARED, AnnotateConfig
from toolformer.datagen.io import Source
from toolformer.datagen.layout import OutputNames
from toolformer.datagen.report import AnnotateReport
from toolformer.errors import ConfigError, DataError
from toolformer.versions import versions

MANIFEST_VERSION = 1
SELF_EXCLUSION_RULE = (
    "WikiSearch/QA hits left out: same id as the document, or normalised text equal to it, or whose first 100 "
    "normalised characters occur in it, or that contain its first 100 (tools.wikisearch.document_exclusion)"
)


def _compared(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in NOT_COMPARED}


def check_manifests(out: Path, config: AnnotateConfig, sha: str | None, names: OutputNames) -> dict[str, Any]:
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


def new_manifest(
    config: AnnotateConfig, source: Source, sha: str | None, names: OutputNames, previous: dict[str, Any]
) -> dict[str, Any]:
    """The manifest of a run that starts: its options, input and layout, and the earlier runs of `previous`."""
    return {
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


def finish_manifest(
    manifest: dict[str, Any],
    config: AnnotateConfig,
    report: AnnotateReport,
    names: OutputNames,
    model: Any,
    tools: Any,
    tool_names: list[str],
    started: float,
) -> None:
    """Mark `manifest` done with the run's model, tools, versions, counts and chunks, and add the run to `runs`."""
    out = report.out
    extra = sorted(
        p.name
        for p in out.glob(f"records-{names.tag}*.jsonl")
        if p.name not in {r.name for r in report.records}
    )
    manifest.update(
        status="done",
        model=model_info(config.model, model),
        tools=tools_info(tools, tool_names),
        versions=versions("torch", "transformers", "ray"),
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


def model_info(name: str, model: Any) -> dict[str, Any]:
    """The model's name as given and, when it was loaded, its path, class and parameter count."""
    info: dict[str, Any] = {"name": name}
    if model is not None:
        info["name_or_path"] = getattr(model, "name_or_path", None)
        info["class"] = type(model).__name__
        with contextlib.suppress(Exception):
            info["parameters"] = sum(p.numel() for p in model.parameters())
    return info


def tools_info(tools: Any, names: list[str]) -> list[dict[str, Any]]:
    """Name, version and description of each tool of the run."""
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
