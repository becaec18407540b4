"""Read a search corpus (JSONL, JSONL.gz, or Markdown/text documents) into `{"id", "title", "text"}` passages."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from toolformer.errors import DataError
from toolformer.inputs import open_text
from toolformer.tools.documents import is_document_corpus, read_documents

DEFAULT_CORPUS_NAME = "vital_en.jsonl.gz"
DEFAULT_FIELDS = (
    "text",
    "title",
    "id",
)  # text, title, id: the JSONL fields read when none is given or remembered


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
    try:
        with open_text(path) as handle:
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
