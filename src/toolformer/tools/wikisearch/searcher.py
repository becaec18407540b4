"""`Searcher`: BM25 search over one corpus, its index built or loaded on the first search."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from toolformer.errors import DataError, ToolError
from toolformer.tools.wikisearch.exclusion import EXCLUDE_SLACK, Exclusion, current_exclusion
from toolformer.tools.wikisearch.index import STOPWORDS, Progress, _index_ok, build_index

TOP_K = 3


class Searcher:
    """BM25 search over one corpus. Cheap to create: the index is built or loaded on the first search.

    Give a corpus (a JSONL file, or Markdown/text documents; indexed and cached by `build_index`), or
    `index_dir` for an index built before (a corpus path that is an index directory counts as one). Fields left
    None are the ones the corpus's index was built with, else text/title/id.
    """

    def __init__(
        self,
        corpus_path: str | Path | None = None,
        *,
        index_dir: str | Path | None = None,
        name: str | None = None,
        text_field: str | None = None,
        title_field: str | None = None,
        id_field: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.corpus_path = Path(corpus_path) if corpus_path is not None else None
        if index_dir is None and self.corpus_path is not None and _index_ok(self.corpus_path):
            index_dir, self.corpus_path = self.corpus_path, None
        self.index_dir = Path(index_dir) if index_dir is not None else None
        self.name = name
        self.fields = (text_field, title_field, id_field)
        self.progress = progress
        self._lock = threading.Lock()
        self._retriever: Any = None
        self._passages: list[dict[str, str]] = []

    def __repr__(self) -> str:
        source = self.index_dir or self.corpus_path or "default corpus"
        return f"Searcher({str(source)!r})"

    def __len__(self) -> int:
        self._ensure()
        return len(self._passages)

    def search(self, query: str, k: int = TOP_K, exclude: Exclusion | None = None) -> list[dict[str, Any]]:
        """The top `k` passages for `query`, best first: dicts with rank, id, title, text, score (> 0 only).

        Hits that `exclude` (default: the one set by `excluding`) accepts are left out before ranking.
        """
        import bm25s

        if exclude is None:
            exclude = current_exclusion()

        self._ensure()
        if k < 1:
            raise ToolError(f"k must be at least 1, got {k}")
        tokens = bm25s.tokenize([query], stopwords=STOPWORDS, return_ids=False, show_progress=False)
        if not tokens or not tokens[0]:
            return []
        with self._lock:  # bm25s does not promise thread safety; a search takes about a millisecond
            docs, scores = self._retriever.retrieve(
                tokens,
                k=min(k + (EXCLUDE_SLACK if exclude else 0), len(self._passages)),
                show_progress=False,
                n_threads=0,
            )
        hits: list[dict[str, Any]] = []
        for doc, score in zip(docs[0], scores[0], strict=True):
            if float(score) <= 0.0 or len(hits) == k:
                continue
            passage = self._passages[int(doc)]
            if exclude is not None and exclude(passage):
                continue
            hits.append({"rank": len(hits) + 1, **passage, "score": float(score)})
        return hits

    def _ensure(self) -> None:
        if self._retriever is not None:
            return
        with self._lock:
            if self._retriever is not None:
                return
            if self.index_dir is not None:
                if not _index_ok(self.index_dir):
                    raise DataError(f"{self.index_dir} is not a complete toolformer index: rebuild it")
                self._load(self.index_dir)
                return
            index = build_index(self.corpus_path, self.name, *self.fields, progress=self.progress)
            try:
                self._load(index)
            except Exception:  # noqa: BLE001 - a damaged cache is rebuilt once, then errors propagate
                self._load(
                    build_index(self.corpus_path, self.name, *self.fields, progress=self.progress, force=True)
                )

    def _load(self, index: Path) -> None:
        import bm25s

        try:
            retriever = bm25s.BM25.load(str(index / "bm25"), show_progress=False, verbosity=0)
            with open(index / "passages.jsonl", encoding="utf-8") as handle:
                passages = [json.loads(line) for line in handle]
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"cannot load index {index}: {exc}") from exc
        if len(passages) != retriever.scores["num_docs"]:
            raise DataError(
                f"index {index} is damaged: {len(passages)} passages for {retriever.scores['num_docs']}"
            )
        self._retriever, self._passages = retriever, passages
