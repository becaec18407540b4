"""The BM25 index of a corpus (bm25s), cached on disk under a content hash and rebuilt when missing or damaged.

Indexes live under `$TOOLFORMER_HOME/indexes/<name>-<hash>/` (default `~/.cache/toolformer`). An index remembers
the fields it was built with: a later build that names no field uses those of the latest index of that corpus.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolformer.errors import ConfigError, DataError
from toolformer.paths import toolformer_home
from toolformer.tools.documents import documents_hash, is_document_corpus
from toolformer.tools.wikisearch.corpus import DEFAULT_FIELDS, default_corpus_path, read_corpus

INDEX_FORMAT = 1  # bump when the files written by build_index change
STOPWORDS = "en"
Progress = Callable[[str], None]


def build_index(
    corpus_path: str | Path | None = None,
    name: str | None = None,
    text_field: str | None = None,
    title_field: str | None = None,
    id_field: str | None = None,
    *,
    progress: Progress | None = None,
    force: bool = False,
) -> Path:
    """Build (or find cached) the BM25 index of a corpus and return its directory.

    The directory is `$TOOLFORMER_HOME/indexes/<name>-<hash>/`, where the hash covers the corpus bytes, the field
    names and the index format, so an edited corpus gets a new index. A directory that is incomplete or damaged
    is rebuilt. `corpus_path=None` means the shipped corpus. A field left None is the one the latest index of
    this corpus was built with (`remembered_fields`), else text/title/id. Statistics are in `index_info(path)`.
    """
    import bm25s

    path = Path(corpus_path) if corpus_path is not None else default_corpus_path()
    fields = resolve_fields(path, text_field, title_field, id_field)
    digest = _content_hash(path, fields)
    target = _index_dir(path, name, digest)
    if not force and _index_ok(target):
        _mark_used(target)
        return target
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    say(f"reading {path}")
    passages = read_corpus(path, *fields)
    say(f"tokenizing {len(passages)} passages")
    tokens = bm25s.tokenize(
        [_index_text(p) for p in passages], stopwords=STOPWORDS, return_ids=False, show_progress=False
    )
    say("indexing")
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp dir and rename: a crash or a concurrent build never leaves a half index in place.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        retriever.save(str(tmp / "bm25"), show_progress=False)
        with open(tmp / "passages.jsonl", "w", encoding="utf-8") as out:
            for passage in passages:
                out.write(json.dumps(passage, ensure_ascii=False) + "\n")
        meta = {
            "format": INDEX_FORMAT,
            "corpus": str(path.resolve()),
            "hash": digest,
            "fields": dict(zip(("text", "title", "id"), fields, strict=True)),
            "kind": "documents" if is_document_corpus(path) else "jsonl",
            "passages": len(passages),
            "vocabulary": len(retriever.vocab_dict),
            "seconds": round(time.perf_counter() - start, 3),
            "bm25s": getattr(bm25s, "__version__", "?"),
        }
        (tmp / "meta.json").write_text(
            json.dumps(meta, indent=1), encoding="utf-8"
        )  # written last: the marker
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _index_ok(target):  # another process won the race with a good index: use theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _mark_used(target)
    say(f"index ready: {target}")
    return target


def index_path(
    corpus_path: str | Path | None = None,
    name: str | None = None,
    text_field: str | None = None,
    title_field: str | None = None,
    id_field: str | None = None,
) -> tuple[Path, bool]:
    """Where `build_index` with these arguments keeps the index, and whether a complete one is there now.

    Builds nothing; the corpus is read once to hash it (a second for the shipped corpus).
    """
    path = Path(corpus_path) if corpus_path is not None else default_corpus_path()
    target = _index_dir(
        path, name, _content_hash(path, resolve_fields(path, text_field, title_field, id_field))
    )
    return target, _index_ok(target)


def _index_dir(path: Path, name: str | None, digest: str) -> Path:
    return toolformer_home() / "indexes" / f"{_safe_name(name or _stem(path))}-{digest}"


def resolve_fields(
    corpus_path: str | Path, text_field: str | None, title_field: str | None, id_field: str | None
) -> tuple[str, str, str]:
    """The (text, title, id) fields to read `corpus_path` with: those given, else remembered, else the defaults.

    Raises DataError when the corpus does not exist, and ConfigError when fields are given for Markdown/text
    documents (they have none).
    """
    path = Path(corpus_path)
    given = (text_field, title_field, id_field)
    if is_document_corpus(path):
        if not path.exists():
            raise DataError(f"corpus {str(path)!r} does not exist")
        named = [
            f"{kind}_field={value!r}" for kind, value in zip(("text", "title", "id"), given, strict=True)
        ]
        extra = [n for n, v, d in zip(named, given, DEFAULT_FIELDS, strict=True) if v is not None and v != d]
        if extra:
            raise ConfigError(
                f"{', '.join(extra)} applies to JSONL corpora only; {path} is Markdown/text (one passage per "
                "section or paragraph)"
            )
        return DEFAULT_FIELDS
    if not path.is_file():
        raise DataError(f"corpus file {str(path)!r} does not exist")
    remembered = remembered_fields(path) if None in given else None
    fallback = remembered or DEFAULT_FIELDS
    text, title, ident = (v if v is not None else d for v, d in zip(given, fallback, strict=True))
    return text, title, ident


def remembered_fields(corpus_path: str | Path) -> tuple[str, str, str] | None:
    """The (text, title, id) fields of the index of this corpus file built or used last, or None."""
    root = toolformer_home() / "indexes"
    resolved = str(Path(corpus_path).resolve())
    best: tuple[int, tuple[str, str, str]] | None = None
    for meta_path in root.glob("*/meta.json") if root.is_dir() else ():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            mtime = meta_path.stat().st_mtime_ns
        except (OSError, ValueError):
            continue
        fields = meta.get("fields") if isinstance(meta, dict) else None
        if meta.get("corpus") != resolved or not isinstance(fields, dict):
            continue
        names = tuple(fields.get(kind) for kind in ("text", "title", "id"))
        if all(isinstance(n, str) and n for n in names) and (best is None or mtime > best[0]):
            best = (mtime, names)  # type: ignore[assignment]
    return best[1] if best else None


def index_info(index_dir: str | Path) -> dict[str, Any]:
    """The statistics `build_index` recorded (passages, vocabulary, seconds, corpus, fields)."""
    try:
        return json.loads((Path(index_dir) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{index_dir} is not a toolformer index (no readable meta.json)") from exc


def _index_text(passage: dict[str, str]) -> str:
    return f"{passage['title']}\n{passage['text']}" if passage["title"] else passage["text"]


def _content_hash(path: Path, fields: tuple[str, str, str]) -> str:
    if is_document_corpus(path):
        return documents_hash(path, f"format={INDEX_FORMAT};stopwords={STOPWORDS}")
    digest = hashlib.sha256(f"format={INDEX_FORMAT};stopwords={STOPWORDS};fields={fields}\n".encode())
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl", ".json", ".txt", ".md", ".markdown"):
        name = name.removesuffix(suffix)
    return name or "corpus"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "corpus"


def _mark_used(index: Path) -> None:
    # The index used last is the one whose fields a later field-less load of its corpus remembers. The time is
    # set explicitly: a file's own mtime has the kernel tick's granularity, too coarse to order two quick builds.
    now = time.time_ns()
    with contextlib.suppress(OSError):
        os.utime(index / "meta.json", ns=(now, now))


def _index_ok(index: Path) -> bool:
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads((index / "meta.json").read_text(encoding="utf-8"))
        needed = [
            "passages.jsonl",
            "bm25/params.index.json",
            "bm25/vocab.index.json",
            "bm25/data.csc.index.npy",
        ]
        return meta.get("format") == INDEX_FORMAT and all((index / f).is_file() for f in needed)
    return False
