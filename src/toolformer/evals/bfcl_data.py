"""Read Berkeley Function-Calling Leaderboard (BFCL v4) test cases: questions, functions and possible answers.

Five single-turn BFCL categories make the `bfcl` suite: `bfcl_simple` (BFCL's simple_python), `bfcl_multiple`,
`bfcl_parallel`, `bfcl_parallel_multiple` and `bfcl_irrelevance`. Their files ship gzipped under
`toolformer/data/evals/bfcl/` (Apache-2.0, see the README there), laid out as BFCL's own `bfcl_eval/data/`:
`BFCL_v4_<category>.json` (one JSON object per line: id, question, function) and
`possible_answer/BFCL_v4_<category>.json` (id, ground_truth; irrelevance has none).

`source` may instead name another copy: a `bfcl-eval` wheel (`pip download bfcl-eval --no-deps`), read as a zip
without installing it, or a folder holding those files (`bfcl_eval/data/` or a folder above it), plain or `.gz`.

`openai_tools` turns a BFCL function list into OpenAI `tools` entries as BFCL does for function-calling models
(`convert_to_tool`): "." in names becomes "_", BFCL's types become JSON-schema types ("dict" → "object", "float" →
"number", "tuple" → "array", unknown → "string").
"""

from __future__ import annotations

import copy
import gzip
import json
import re
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from toolformer.errors import DataError

# Our dataset name -> BFCL's category (its file stem after "BFCL_v4_").
CATEGORIES = {
    "bfcl_simple": "simple_python",
    "bfcl_multiple": "multiple",
    "bfcl_parallel": "parallel",
    "bfcl_parallel_multiple": "parallel_multiple",
    "bfcl_irrelevance": "irrelevance",
}
VERSION = "v4"
WHEEL_DATA = "bfcl_eval/data"

# BFCL's GORILLA_TO_OPENAPI (constants/type_mappings.py), the Python-relevant part.
_OPENAPI_TYPES = {
    "integer": "integer",
    "number": "number",
    "float": "number",
    "string": "string",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "dict": "object",
    "object": "object",
    "tuple": "array",
    "any": "string",
}


@dataclass
class BfclCase:
    """One BFCL test case: the conversation, the functions offered (BFCL's form) and the possible answers."""

    id: str
    dataset: str
    category: str
    messages: list[dict[str, Any]]
    functions: list[dict[str, Any]]
    ground_truth: list[dict[str, dict[str, list[Any]]]] = field(default_factory=list)  # [] for irrelevance

    @property
    def question(self) -> str:
        """The last user message's text."""
        users = [m for m in self.messages if m.get("role") == "user"]
        return str(users[-1].get("content") or "") if users else ""


def shipped_root() -> Path:
    """The folder of the shipped BFCL files."""
    return Path(str(resources.files("toolformer").joinpath("data", "evals", "bfcl")))


def file_name(dataset: str, answers: bool = False) -> str:
    """The path of a dataset's question (or possible-answer) file relative to BFCL's data folder."""
    if dataset not in CATEGORIES:
        raise DataError(f"dataset={dataset!r} is not a BFCL dataset ({', '.join(CATEGORIES)})")
    name = f"BFCL_{VERSION}_{CATEGORIES[dataset]}.json"
    return f"possible_answer/{name}" if answers else name


def describe(source: str | Path | None) -> str:
    """Where the data comes from, for reports."""
    return "toolformer/data/evals/bfcl (shipped)" if source is None else str(source)


def read_lines(source: str | Path | None, relative: str) -> list[str] | None:
    """The lines of BFCL data file `relative` in `source` (None: the shipped copy); None if it is not there."""
    if source is None:
        return _read_folder(shipped_root(), relative)
    path = Path(source).expanduser()
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            for name in (f"{WHEEL_DATA}/{relative}", f"{WHEEL_DATA}/{relative}.gz"):
                if name in names:
                    data = zf.read(name)
                    return _decode(gzip.decompress(data) if name.endswith(".gz") else data, f"{path}!{name}")
        return None
    if path.is_dir():
        for folder in (path, path / "data", path / WHEEL_DATA):
            lines = _read_folder(folder, relative)
            if lines is not None:
                return lines
        return None
    raise DataError(f"data={str(source)!r}: not a bfcl-eval wheel or a folder of BFCL files")


def _read_folder(folder: Path, relative: str) -> list[str] | None:
    for candidate in (folder / relative, folder / f"{relative}.gz"):
        if candidate.is_file():
            raw = candidate.read_bytes()
            return _decode(gzip.decompress(raw) if candidate.suffix == ".gz" else raw, str(candidate))
    return None


def _decode(data: bytes, where: str) -> list[str]:
    try:
        return [line for line in data.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc.reason})") from None


def _records(lines: list[str], where: str) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise DataError(f"{where}:{n}: expected a JSON object with a string 'id'")
        out.append(record)
    return out


def load_cases(dataset: str, source: str | Path | None = None, limit: int | None = None) -> list[BfclCase]:
    """The first `limit` cases (all if None) of `dataset` (a name of CATEGORIES) from `source` (None: shipped)."""
    relative = file_name(dataset)
    where = f"{describe(source)}:{relative}"
    lines = read_lines(source, relative)
    if lines is None:
        raise DataError(f"{where}: no such BFCL file")
    questions = _records(lines[:limit] if limit is not None else lines, where)
    answers: dict[str, Any] = {}
    if dataset != "bfcl_irrelevance":
        answer_file = file_name(dataset, answers=True)
        answer_lines = read_lines(source, answer_file)
        if answer_lines is None:
            raise DataError(f"{describe(source)}:{answer_file}: no such BFCL file")
        answers = {r["id"]: r.get("ground_truth") for r in _records(answer_lines, answer_file)}
    cases = []
    for record in questions:
        cases.append(_case(record, dataset, answers, where))
    if not cases:
        raise DataError(f"{where}: no test cases")
    return cases


def _case(record: dict[str, Any], dataset: str, answers: dict[str, Any], where: str) -> BfclCase:
    rid = record["id"]
    turns = record.get("question")
    if not isinstance(turns, list) or not turns or not isinstance(turns[0], list) or not turns[0]:
        raise DataError(f"{where}: {rid}: field 'question' must be a non-empty list of turns")
    messages = [dict(m) for m in turns[0] if isinstance(m, dict)]
    functions = record.get("function")
    if not isinstance(functions, list) or not all(isinstance(f, dict) and "name" in f for f in functions):
        raise DataError(f"{where}: {rid}: field 'function' must be a list of function schemas")
    truth: list[Any] = []
    if dataset != "bfcl_irrelevance":
        truth = answers.get(rid)  # type: ignore[assignment]
        if not isinstance(truth, list) or not truth:
            raise DataError(f"{where}: {rid}: no possible answer in possible_answer/")
    return BfclCase(rid, dataset, CATEGORIES[dataset], messages, functions, truth)


# ---------------------------------------------------------------------------------------------------------------
# OpenAI tools


def openai_name(name: str) -> str:
    """A BFCL function name as OpenAI accepts it ("." → "_"), as BFCL sends it to function-calling models."""
    return re.sub(r"\.", "_", name)


def openai_tools(functions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI `tools` entries for BFCL `functions` (BFCL's `convert_to_tool` for OpenAI-style models)."""
    tools = []
    for fn in copy.deepcopy(functions):
        fn["name"] = openai_name(fn["name"])
        params = fn.get("parameters") or {}
        params["type"] = "object"
        params["properties"] = _cast_types(params.get("properties") or {})
        fn["parameters"] = params
        tools.append({"type": "function", "function": fn})
    return tools


def _cast_types(properties: dict[str, Any]) -> dict[str, Any]:
    """BFCL's `_cast_to_openai_type`: every property's type in JSON-schema terms, nested ones too."""
    for value in properties.values():
        if not isinstance(value, dict):
            continue
        kind = value.get("type")
        if kind == "float":
            value["format"] = "float"
            value["description"] = str(value.get("description", "")) + " This is a float type value."
        value["type"] = _OPENAPI_TYPES.get(kind, "string") if isinstance(kind, str) else "string"
        if value["type"] in ("array", "object"):
            if isinstance(value.get("properties"), dict):
                value["properties"] = _cast_types(value["properties"])
            elif isinstance(value.get("items"), dict):
                items = value["items"]
                items["type"] = _OPENAPI_TYPES.get(items.get("type"), "string")
                if items["type"] == "array" and isinstance(items.get("items"), dict):
                    items["items"]["type"] = _OPENAPI_TYPES.get(items["items"].get("type"), "string")
                elif items["type"] == "object" and isinstance(items.get("properties"), dict):
                    items["properties"] = _cast_types(items["properties"])
    return properties
