"""The Ray backend of annotation (`--backend ray`): the same `Pipeline.process` in Ray Data actors (`docs/scale.md`).

`run_ray` hands the pending chunks to `ray.data.from_items(...).map_batches(RayAnnotator)` in windows of
RAY_WINDOW_CHUNKS chunks, order preserved, and writes each chunk as soon as its last document comes back. Each
actor builds the pipeline (loads the model) once from the run's config.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from toolformer.datagen.config import AnnotateConfig
from toolformer.datagen.io import BadRow
from toolformer.datagen.layout import OutputNames, write_chunk
from toolformer.datagen.pipeline import build_pipeline
from toolformer.datagen.records import Document
from toolformer.errors import require

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


@contextlib.contextmanager
def _ray_session(address: str | None) -> Iterator[None]:
    """Ray started on `address` (or the running one) for the block; shut down after it if started here."""
    require("ray", "scale")
    import ray
    import ray.data

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()


def run_ray(
    config: AnnotateConfig,
    out: Path,
    names: OutputNames,
    pending: Iterator[tuple[int, list[Document | BadRow]]],
    advance: Callable[[int], None],
) -> int:
    """Process the pending chunks with Ray Data (`from_items(...).map_batches(RayAnnotator)`), in windows.

    Order is preserved, so the driver writes each chunk as soon as its last document comes back.
    """
    with _ray_session(config.ray_address):
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
            rows = [
                {"chunk": index, "item": _item_to_json(item)} for index, items in window for item in items
            ]
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
                    write_chunk(out, names, index, buffers.pop(index))
                    written += 1
            window.clear()

        for index, items in pending:
            window.append((index, items))
            if len(window) >= RAY_WINDOW_CHUNKS:
                flush()
        flush()
        return written
