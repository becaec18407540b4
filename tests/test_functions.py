"""JSON function-calling training rows (`datagen.functions`): valid calls, varied names, the configured kinds, values
taken from the request, the runtime's exact prompt and answer format, and no overlap with BFCL."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from toolformer.datagen.functions import generate_rows
from toolformer.datagen.mixture import ngrams
from toolformer.errors import ConfigError
from toolformer.evals.bfcl_data import CATEGORIES, load_cases, openai_name
from toolformer.runtime.jsoncalls import parse_json_calls

ROWS = list(generate_rows(600, seed=7))


def _tool(row: dict[str, Any], name: str) -> dict[str, Any]:
    [tool] = [t["function"] for t in row["tools"] if t["function"]["name"] == name]
    return tool


def test_every_call_validates_against_its_offered_schema_and_reads_back_from_the_answer() -> None:
    for row in ROWS:
        names = [t["function"]["name"] for t in row["tools"]]
        assert len(names) == len(set(names)), row["id"]
        for call in row["calls"]:
            schema = _tool(row, call["name"])["parameters"]
            jsonschema.validate(call["arguments"], schema)
            assert set(call["arguments"]) <= set(schema["properties"])
        content, calls = parse_json_calls(row["answer"])
        assert [{"name": c.name, "arguments": c.arguments} for c in calls] == row["calls"]
        assert content == ("" if row["calls"] else row["answer"])


def test_argument_values_are_written_in_the_request() -> None:
    for row in ROWS:
        request = row["messages"][-1]["content"]
        for call in row["calls"]:
            for value in call["arguments"].values():
                if not isinstance(value, bool):
                    assert str(value) in request, (row["id"], value, request)


def test_names_vary_and_rows_have_the_configured_kinds() -> None:
    names = Counter(t["function"]["name"] for row in ROWS for t in row["tools"])
    assert len(names) > 150 and names.most_common(1)[0][1] < 0.05 * sum(names.values())
    params = {p for row in ROWS for t in row["tools"] for p in t["function"]["parameters"]["properties"]}
    assert len(params) > 40
    kinds = Counter(row["kind"] for row in ROWS)
    assert abs(kinds["no_call"] / len(ROWS) - 0.2) < 0.06 and abs(kinds["parallel"] / len(ROWS) - 0.2) < 0.06
    for row in ROWS:
        wanted = {"call": 1, "parallel": 2, "no_call": 0}[row["kind"]]
        assert len(row["calls"]) == wanted and len(row["tools"]) >= 1
        if row["kind"] == "no_call":
            assert "<tool_call>" not in row["answer"] and row["answer"].strip()
    more = Counter(r["kind"] for r in generate_rows(400, seed=1, no_call_share=0.5, parallel_share=0.0))
    assert more["parallel"] == 0 and abs(more["no_call"] / 400 - 0.5) < 0.08
    assert not any(r["kind"] == "no_call" for r in generate_rows(100, seed=2, no_call_share=0.0))


def test_rows_are_reproducible_from_the_seed() -> None:
    assert list(generate_rows(20, seed=7)) == ROWS[:20]
    assert list(generate_rows(20, seed=8)) != ROWS[:20]
    with pytest.raises(ConfigError, match="no_call_share"):
        list(generate_rows(5, no_call_share=1.5))
    with pytest.raises(ConfigError, match="<= 1"):
        list(generate_rows(5, no_call_share=0.6, parallel_share=0.6))


def test_no_overlap_with_bfcl_questions_or_function_names() -> None:
    bfcl_grams: set[tuple[str, ...]] = set()
    bfcl_names: set[str] = set()
    for dataset in CATEGORIES:
        for case in load_cases(dataset):
            bfcl_grams |= ngrams(" ".join(str(m.get("content")) for m in case.messages), 8)
            bfcl_names |= {openai_name(f["name"]) for f in case.functions}
    ours = set().union(*(ngrams(row["messages"][-1]["content"], 8) for row in ROWS))
    assert ours and not ours & bfcl_grams
    names = {t["function"]["name"] for row in ROWS for t in row["tools"]}
    shared = names & bfcl_names  # plain verb_noun pairs (book_hotel, calculate_tip) may coincide
    assert len(shared) < 0.1 * len(names), shared


def test_the_text_is_the_servers_prompt_for_the_row_followed_by_the_answer(smol_tokenizer: Any) -> None:
    """A scripted model that writes each row's answer, behind the server's own request path: it is shown the row's
    text up to the answer, and the reply's tool calls are the row's calls (the call grammar let them through)."""
    from serve_helpers import scripted_backend
    from toolformer.serve.config import ServeConfig
    from toolformer.serve.inprocess import InProcessChat

    rows = list(generate_rows(3, seed=2, tokenizer=smol_tokenizer))
    assert {r["kind"] for r in rows} == {"call", "parallel", "no_call"}
    seen: list[str] = []

    def choose(prompt: str) -> str:
        seen.append(prompt)
        return next(r["answer"] for r in rows if r["text"] == prompt + r["answer"])

    backend = scripted_backend(smol_tokenizer, choose, tools="")
    with InProcessChat(backend, ServeConfig(examples="off")) as chat:
        for row in rows:
            reply = chat({"messages": row["messages"], "tools": row["tools"], "max_tokens": 200})
            assert seen[-1] + row["answer"] == row["text"]
            assert [{"name": c.name, "arguments": c.arguments} for c in reply.tool_calls] == row["calls"]
            if not row["calls"]:
                assert reply.content == row["answer"]


def test_the_cli_writes_the_rows(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from toolformer.cli import app

    out = tmp_path / "functions.jsonl"
    args = ["mixture", "functions", "--out", str(out), "--n", "30", "--seed", "4", "--tokenizer", ""]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == list(generate_rows(30, seed=4)) and json.loads(result.stdout)["rows"] == 30
