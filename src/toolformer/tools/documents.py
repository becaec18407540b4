"""Markdown and plain-text files as search passages: one per Markdown section, one per text paragraph.

Users keep their docs as a folder of `.md`/`.txt` files; `read_documents` turns such a folder (or one file) into
the `{"id", "title", "text"}` passages that `wikisearch.build_index` indexes. Markdown is parsed with
markdown-it-py (headings inside code blocks are not headings, setext headings are), YAML front matter is
dropped, and a passage's title is the file's path inside the folder plus its heading path:
`guide/install.md > Setup > Linux`. A long section is split at block boundaries into passages of about
`MAX_PASSAGE_CHARS`; a text file's paragraphs shorter than `MIN_PARAGRAPH_CHARS` join the next one, so a lone
caption line is not a passage of its own.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from toolformer.errors import DataError

DOCUMENTS_FORMAT = 1  # part of the index hash: bump when the passages made from the same files change
SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "text"}
MAX_PASSAGE_CHARS = 1500
MIN_PARAGRAPH_CHARS = 60
TITLE_SEPARATOR = " > "
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n.*?\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")


def is_document_corpus(path: str | Path) -> bool:
    """True for a folder or a `.md`/`.markdown`/`.txt` file (anything else is read as JSONL)."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in SUFFIXES


def document_files(path: str | Path) -> list[Path]:
    """The Markdown and text files of a folder (recursive, sorted, hidden folders skipped), or `[path]`."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.suffix.lower() in SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
        and p.is_file()
    )


def documents_hash(path: str | Path, salt: str) -> str:
    """A hash over the names and bytes of the corpus's files (16 hex digits), salted with `salt`."""
    path = Path(path)
    digest = hashlib.sha256(f"documents={DOCUMENTS_FORMAT};{salt}\n".encode())
    for file in document_files(path):
        name = file.name if file == path else file.relative_to(path).as_posix()
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise DataError(f"{file}: cannot read ({exc})") from exc
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


def read_documents(path: str | Path) -> list[dict[str, str]]:
    """Passages of a folder of Markdown/text files, or of one such file.

    Ids are `<file>#<n>`; titles `<file>` or `<file> > <heading> > <subheading>`. Raises DataError naming the
    folder when it holds no such file, the file that is not UTF-8, or the corpus when no file holds text.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"corpus {str(path)!r} does not exist")
    files = document_files(path)
    if not files:
        raise DataError(f"folder {str(path)!r} holds no .md, .markdown or .txt file")
    passages: list[dict[str, str]] = []
    for file in files:
        name = file.name if file == path else file.relative_to(path).as_posix()
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        except OSError as exc:
            raise DataError(f"{file}: cannot read ({exc})") from exc
        if SUFFIXES.get(file.suffix.lower()) == "markdown":
            sections = markdown_sections(text)
        else:
            sections = [("", p) for p in text_paragraphs(text)]
        for n, (heading, body) in enumerate(sections, 1):
            title = f"{name}{TITLE_SEPARATOR}{heading}" if heading else name
            passages.append({"id": f"{name}#{n}", "title": title, "text": body})
    if not passages:
        raise DataError(f"{path}: no passages (its files hold no text)")
    return passages


def markdown_sections(text: str, max_chars: int = MAX_PASSAGE_CHARS) -> list[tuple[str, str]]:
    """(heading path, plain text) per section with text; a long section gives several, same heading."""
    from markdown_it import MarkdownIt  # rich's own dependency: always installed with the CLI

    tokens = MarkdownIt("commonmark").enable("table").parse(_FRONT_MATTER.sub("", text, count=1))
    sections: list[tuple[str, str]] = []
    headings: dict[int, str] = {}
    heading, blocks = "", []
    row: list[str] | None = None
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.type == "heading_open":
            sections += [(heading, chunk) for chunk in _chunks(blocks, max_chars)]
            level = int(token.tag[1:])
            headings = {lv: h for lv, h in headings.items() if lv < level}
            headings[level] = _inline_text(tokens[i + 1]).strip()
            heading = TITLE_SEPARATOR.join(h for _, h in sorted(headings.items()) if h)
            blocks = []
            i += 3  # heading_open, inline, heading_close
            continue
        if token.type == "tr_open":
            row = []
        elif token.type == "tr_close" and row is not None:
            blocks.append(" | ".join(row))
            row = None
        elif token.type == "inline":
            content = _inline_text(token).strip()
            if row is not None:
                row.append(content)
            elif content:
                blocks.append(content)
        elif token.type in ("fence", "code_block") and token.content.strip():
            blocks.append(token.content.rstrip())
        i += 1
    sections += [(heading, chunk) for chunk in _chunks(blocks, max_chars)]
    return sections


def text_paragraphs(text: str, min_chars: int = MIN_PARAGRAPH_CHARS) -> list[str]:
    """Blank-line separated paragraphs; one shorter than `min_chars` joins the next (the last, the previous)."""
    paragraphs: list[str] = []
    pending = ""
    for part in _PARAGRAPH_BREAK.split(text.replace("\r\n", "\n")):
        part = part.strip()
        if not part:
            continue
        pending = f"{pending}\n\n{part}" if pending else part
        if len(pending) >= min_chars:
            paragraphs.append(pending)
            pending = ""
    if pending:
        if paragraphs:
            paragraphs[-1] += "\n\n" + pending
        else:
            paragraphs.append(pending)
    return paragraphs


def _inline_text(token: Any) -> str:
    # Plain text of an inline token: markup, link targets and inline HTML dropped, image alt text kept.
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline", "image"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
    return "".join(parts)


def _chunks(blocks: list[str], max_chars: int) -> list[str]:
    chunks: list[str] = []
    current = ""
    for block in blocks:
        if current and len(current) + 2 + len(block) > max_chars:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{block}" if current else block
    if current:
        chunks.append(current)
    return chunks
