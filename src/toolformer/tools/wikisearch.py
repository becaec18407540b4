"""The WikiSearch tool: BM25 (bm25s) over a local JSONL corpus, with an on-disk index cache keyed by content hash.

The paper searched the KILT Wikipedia dump with BM25; the default here is the shipped corpus of 10,033 English
Wikipedia lead sections (`toolformer/data/vital_en.jsonl.gz`, CC BY-SA, see data/README.md). Any JSONL (or
JSONL.gz) file with a text field works, and so does a folder of Markdown/text files or one such file (one
passage per section or paragraph, see `documents.py`). Indexes live under `$TOOLFORMER_HOME/indexes/<name>-<hash>/`
(default `~/.cache/toolformer`) and are rebuilt when missing or damaged. An index remembers the fields it was
built with: a later `Searcher(corpus)` or `build_index(corpus)` that names no field uses those of the latest
index of that corpus, so `toolformer index build FILE --text-field content` makes every later `--corpus FILE`
read `content`. Nothing here prints: progress goes to an optional callback.

A search can leave passages out: `Searcher.search(..., exclude=pred)`, or for every search made inside
`with excluding(pred):` (a context variable, so the tools' signatures stay as the model sees them). Data
generation uses `document_exclusion(doc_id, text)` so a document is never annotated with its own passage.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from toolformer.errors import ConfigError, DataError, ToolError
from toolformer.paths import toolformer_home
from toolformer.tools.base import Tool
from toolformer.tools.documents import documents_hash, is_document_corpus, read_documents

DEFAULT_CORPUS_NAME = "vital_en.jsonl.gz"
INDEX_FORMAT = 1  # bump when the files written by build_index change
SNIPPET_CHARS = 200
TOP_K = 3
STOPWORDS = "en"
DEFAULT_FIELDS = (
    "text",
    "title",
    "id",
)  # text, title, id: the JSONL fields read when none is given or remembered
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # bm25s' default token pattern, reused for snippets
# Split after . ! ? unless the period ends an initial ("J. R. R.") or a common abbreviation.
_SENTENCE_END = re.compile(
    r"(?<!\b[A-Z]\.)(?<!\bMr\.)(?<!\bDr\.)(?<!\bSt\.)(?<!\bJr\.)(?<!\bvs\.)(?<=[.!?])\s+(?=[\"'“(A-Z0-9])"
)

Progress = Callable[[str], None]
Exclusion = Callable[[dict[str, Any]], bool]  # a hit (id, title, text, ...) -> leave it out
EXCLUDE_SLACK = 10  # extra hits retrieved when excluding, so k remain after the excluded ones are dropped
OVERLAP_CHARS = (
    100  # a passage whose first this-many normalised characters occur in a document is that document
)
MIN_OVERLAP_CHARS = 40  # shorter normalised texts only match by equality (a short text occurs everywhere)
_EXCLUDE: contextvars.ContextVar[Exclusion | None] = contextvars.ContextVar(
    "toolformer_search_exclude", default=None
)


@contextlib.contextmanager
def excluding(exclude: Exclusion | None) -> Iterator[None]:
    """Inside the block, every `Searcher.search` in this context leaves out the hits `exclude` accepts."""
    token = _EXCLUDE.set(exclude)
    try:
        yield
    finally:
        _EXCLUDE.reset(token)


def current_exclusion() -> Exclusion | None:
    """The exclusion set by the innermost `excluding` block of this context, or None."""
    return _EXCLUDE.get()


def normalize(text: str) -> str:
    """Lower-cased words (bm25s' token pattern) joined by single spaces: spacing and punctuation ignored."""
    return " ".join(_TOKEN.findall(text.lower()))


def document_exclusion(doc_id: str | None, text: str) -> Exclusion:
    """Leave out the document's own passage: a hit whose id is `doc_id`, whose normalised text equals the
    document's, whose first 100 normalised characters occur in the document, or that contains the document's
    first 100 (the document is a part of the passage). Overlaps of texts under 40 characters do not count."""
    doc = normalize(text)
    doc_head = doc[:OVERLAP_CHARS]

    def exclude(hit: dict[str, Any]) -> bool:
        if doc_id is not None and str(hit.get("id")) == str(doc_id):
            return True
        passage = normalize(str(hit.get("text", "")))
        if not passage or not doc:
            return False
        if passage == doc:
            return True
        head = passage[:OVERLAP_CHARS]
        if len(head) >= MIN_OVERLAP_CHARS and head in doc:
            return True
        return len(doc_head) >= MIN_OVERLAP_CHARS and doc_head in passage

    return exclude


def default_corpus_path() -> Path:
    """The corpus shipped in the package (English Wikipedia lead sections of the Vital Articles)."""
    path = Path(str(resources.files("toolformer") / "data" / DEFAULT_CORPUS_NAME))
    if not path.is_file():
        raise DataError(f"the shipped corpus {path} is missing: reinstall toolformer-kit")
    return path


def read_corpus(
    corpus_path: str | Path, text_field: str = "text", title_field: str = "title", id_field: str = "id"
) -> list[dict[str, str]]:
    """Read a JSONL or JSONL.gz corpus, or Markdown/text documents, into `{"id", "title", "text"}` dicts.

    JSONL: `text_field` is required on every line; a missing title is "", a missing id is the line number.
    A folder or a .md/.markdown/.txt file is read by `documents.read_documents` (the fields do not apply).
    Raises DataError naming the file and line of the first bad record.
    """
    path = Path(corpus_path)
    if is_document_corpus(path):
        return read_documents(path)
    if not path.is_file():
        raise DataError(f"corpus file {str(path)!r} does not exist")
    passages: list[dict[str, str]] = []
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                passages.append(_record(path, lineno, line, text_field, title_field, id_field))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if not passages:
        raise DataError(f"{path}: no passages (empty corpus)")
    return passages


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
    target = toolformer_home() / "indexes" / f"{_safe_name(name or _stem(path))}-{digest}"
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
            exclude = _EXCLUDE.get()

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


def content_terms(text: str) -> list[str]:
    """Content words of `text`: lower-cased, stopwords and question words removed, plural -s folded."""
    stop = _stopwords()
    return [_fold(w) for w in _TOKEN.findall(text.lower()) if w not in stop]


def split_sentences(text: str) -> list[str]:
    """Sentences of a passage (a regex splitter: good enough for encyclopedic text)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def snippet(text: str, query: str, limit: int = SNIPPET_CHARS) -> str:
    """The part of `text` (at most `limit` characters) that starts at the sentence best matching the query.

    Windows of whole sentences are scored by the query words they contain, then by those in their first
    sentence; ties keep the earliest, since a lead's first sentence defines its subject.
    """
    terms = set(content_terms(query))
    sentences = split_sentences(text)
    best, best_score = 0, (0, 0)
    if terms:
        for i in range(len(sentences)):
            window, j = "", i
            while j < len(sentences) and len(window) < limit:
                window += " " + sentences[j]
                j += 1
            score = (
                len(terms & set(content_terms(window[: limit + 1]))),
                len(terms & set(content_terms(sentences[i]))),
            )
            if score > best_score:
                best, best_score = i, score
    return shorten(" ".join(sentences[best:]) if sentences else text, limit)


def shorten(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters at a word boundary, marking the cut with "…"."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


def format_hits(hits: list[dict[str, Any]], query: str, snippet_chars: int = SNIPPET_CHARS) -> str:
    """'Title: snippet | Title: snippet | …', short enough for a small model's context."""
    return " | ".join(
        f"{h['title']}: {snippet(h['text'], query, snippet_chars)}"
        if h.get("title")
        else snippet(h["text"], query, snippet_chars)
        for h in hits
    )


def wikisearch_tool(
    searcher: Searcher | str | Path | None = None, k: int = TOP_K, snippet_chars: int = SNIPPET_CHARS
) -> Tool:
    """A WikiSearch Tool over `searcher` (a Searcher, a corpus file, or None for the shipped corpus)."""
    engine = searcher if isinstance(searcher, Searcher) else Searcher(searcher)

    def wikisearch(query: str) -> str:
        query = query.strip()
        if not query:
            raise ToolError("query is empty")
        hits = engine.search(query, k)
        if not hits:
            raise ToolError(f"no results for {query[:80]!r}")
        return format_hits(hits, query, snippet_chars)

    return Tool(
        name="WikiSearch",
        description="Search Wikipedia (BM25) and return short snippets of the top passages as 'Title: text | …'.",
        fn=wikisearch,
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "search terms, e.g. 'Eiffel Tower height'"}
            },
            "required": ["query"],
        },
        examples=('WikiSearch("Joe Biden")',),
        timeout=30.0,  # the first call may build the index (about 1 s for the shipped corpus on 2 cores)
    )


_QUESTION_WORDS = frozenset(
    {
        "what", "where", "when", "who", "whom", "whose", "which", "how", "why", "did", "does", "do", "many",
        "much", "has", "have", "had", "were", "been", "being", "he", "she", "his", "her", "its", "from", "about",
        "name", "called", "can", "could", "would", "should",
    }
)  # fmt: skip


@functools.cache
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN  # imported late: `import toolformer.tools` stays light

    return frozenset(STOPWORDS_EN) | _QUESTION_WORDS


def _fold(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _record(
    path: Path, lineno: int, line: str, text_field: str, title_field: str, id_field: str
) -> dict[str, str]:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise DataError(f"{path}:{lineno}: not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
    text = obj.get(text_field)
    if not isinstance(text, str) or not text.strip():
        hint = ""
        if text_field not in obj:
            fields = [k for k, v in obj.items() if isinstance(v, str) and v.strip()][:8]
            if (
                fields
            ):  # the likely fix: index the file once with its real text field, which is then remembered
                hint = (
                    f" (text fields on this line: {', '.join(map(repr, fields))}; run `toolformer index build "
                    f"{path} --text-field NAME` once)"
                )
        raise DataError(f"{path}:{lineno}: field {text_field!r} is missing or not non-empty text{hint}")
    title = obj.get(title_field)
    ident = obj.get(id_field)
    return {
        "id": str(ident) if ident is not None else str(lineno),
        "title": "" if title is None else str(title),
        "text": text,
    }


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
