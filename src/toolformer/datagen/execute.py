"""Run every candidate call with its tool (thread pool, each tool's time limit), caching results by (tool, args).

A failed call is data, not a crash: the candidate gets `ok=False` and the `error: …` text as its result. Equal
calls (same tool and argument text) run once per `execute` call; with a `ToolCache` they also run once across
documents (in memory) and, given a path, across runs (SQLite on disk; only successful results are stored there,
so a timeout or a transient failure is retried by the next run).

Given `documents` (doc id -> text), every call runs inside `wikisearch.excluding(document_exclusion(id, text))`
of its candidate's document, so WikiSearch and QA never return the document's own passage; equal calls then
run (and are cached) once per document: the key carries a fingerprint of the document, so a result computed
for another document is never reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from toolformer.calls import Call
from toolformer.datagen.records import Candidate
from toolformer.errors import ConfigError
from toolformer.tools.wikisearch.exclusion import document_exclusion, excluding

Key = tuple[str, str, str]  # (tool, tool version, args)
Group = tuple[str, str, str | None]  # (tool, args, id of the document whose search exclusion applies)


class ToolCache:
    """Tool results by (tool, version, args): in memory, and in a SQLite file when `path` is given.

    Thread-safe. Several processes may share one file (SQLite locks it); each keeps its own memory layer.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self._memory: dict[Key, tuple[str, bool]] = {}
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self.path = Path(path) if path is not None else None
        self.hits = 0
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS results "
                    "(tool TEXT, version TEXT, args TEXT, result TEXT, PRIMARY KEY (tool, version, args))"
                )
                self._db.commit()
            except sqlite3.Error as exc:
                raise ConfigError(f"tool cache {str(self.path)!r} cannot be used as SQLite ({exc})") from exc

    def get(self, key: Key) -> tuple[str, bool] | None:
        with self._lock:
            found = self._memory.get(key)
            if found is None and self._db is not None:
                row = self._db.execute(
                    "SELECT result FROM results WHERE tool=? AND version=? AND args=?", key
                ).fetchone()
                if row is not None:
                    found = (row[0], True)
                    self._memory[key] = found
            if found is not None:
                self.hits += 1
            return found

    def put(self, key: Key, result: str, ok: bool) -> None:
        with self._lock:
            self._memory[key] = (result, ok)
            if ok and self._db is not None:
                self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)", (*key, result))
                self._db.commit()

    def __len__(self) -> int:
        return len(self._memory)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _version(tools: Any, name: str) -> str | None:
    """The tool's version for the cache key, or None when the registry does not know the tool (never cached)."""
    if isinstance(tools, Mapping) and name not in tools:
        return None
    try:
        return str(getattr(tools[name], "version", "1"))
    except (KeyError, LookupError):
        return None


def document_scope(doc_id: str, text: str) -> str:
    """The cache-key suffix of calls run with `doc_id`'s search exclusion: a fingerprint of the id and text."""
    digest = hashlib.sha256(f"{doc_id}\0{text}".encode()).hexdigest()[:16]
    return f"\x1fexclude-self:{digest}"


def execute(
    candidates: Sequence[Candidate],
    tools: Any,
    cache: ToolCache | None = None,
    workers: int = 4,
    timeout: float | None = None,
    documents: Mapping[str, str] | None = None,
) -> list[Candidate]:
    """Set `result` and `ok` on every candidate (in place) and return them, in the same order.

    `tools` is a ToolRegistry (anything with `.run(call, timeout)` and tools by name); each call runs within its
    tool's time limit (or `timeout`). Never raises for a failing call. With `documents` (doc id -> text), a
    candidate of a listed document runs with that document's passages excluded from search (module docstring).
    """
    if workers < 1:
        raise ConfigError(f"workers={workers!r} must be at least 1")
    groups: dict[Group, list[Candidate]] = {}
    for cand in candidates:
        scoped = documents is not None and cand.doc_id in documents
        groups.setdefault((cand.tool, cand.args, cand.doc_id if scoped else None), []).append(cand)
    todo: list[tuple[Group, Key | None]] = []
    for group in groups:
        tool_name, args, doc_id = group
        version = _version(tools, tool_name)
        if version is None:
            key = None
        elif doc_id is None or documents is None:
            key = (tool_name, version, args)
        else:
            # Every tool, not only the search ones: which tools read the exclusion is not known here.
            key = (tool_name, version, args + document_scope(doc_id, documents[doc_id]))
        found = cache.get(key) if cache is not None and key is not None else None
        if found is not None:
            _assign(groups[group], *found)
        else:
            todo.append((group, key))

    def run_one(group: Group) -> tuple[str, bool]:
        tool_name, args, doc_id = group
        scope = (
            excluding(document_exclusion(doc_id, documents[doc_id]))
            if doc_id is not None and documents is not None
            else contextlib.nullcontext()
        )
        with scope:
            out = tools.run(Call(tool_name, args), timeout)
        return out.text, out.ok

    if len(todo) == 1 or workers == 1:
        results = [run_one(group) for group, _ in todo]
    else:
        with ThreadPoolExecutor(
            max_workers=min(workers, len(todo) or 1), thread_name_prefix="execute"
        ) as pool:
            results = list(pool.map(lambda item: run_one(item[0]), todo))
    for (group, key), (text, ok) in zip(todo, results):
        if cache is not None and key is not None:
            cache.put(key, text, ok)
        _assign(groups[group], text, ok)
    return list(candidates)


def _assign(cands: list[Candidate], text: str, ok: bool) -> None:
    for cand in cands:
        cand.result = text
        cand.ok = ok
