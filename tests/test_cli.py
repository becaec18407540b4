"""The `toolformer` command line, as a user types it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from toolformer.cli import app

runner = CliRunner()


def real_home_env() -> dict[str, str]:
    """The environment with TOOLFORMER_HOME as pytest found it, so the model cache is reused, not rebuilt."""
    from conftest import _REAL_HOME

    env = dict(os.environ)
    env.pop("TOOLFORMER_HOME", None)
    if _REAL_HOME is not None:
        env["TOOLFORMER_HOME"] = _REAL_HOME
    return env


def test_tools_call_calculator_prints_the_result():
    result = runner.invoke(app, ["tools", "call", "Calculator", "23*47"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "1081"


def test_tools_call_json_and_error_exit_code():
    ok = runner.invoke(app, ["tools", "call", "Calculator", "400 / 1400", "--json"])
    assert json.loads(ok.stdout) == {
        "tool": "Calculator",
        "input": "400 / 1400",
        "output": "0.29",
        "ok": True,
        "seconds": json.loads(ok.stdout)["seconds"],
    }
    bad = runner.invoke(app, ["tools", "call", "Calculator", "2 / 0"])
    assert bad.exit_code == 2  # the README: errors are one line and exit with code 2
    assert bad.stdout == "" and bad.stderr.startswith("error: Calculator(2 / 0): division by zero")
    bad_json = runner.invoke(app, ["tools", "call", "Calculator", "2 / 0", "--json"])
    assert bad_json.exit_code == 2 and json.loads(bad_json.stdout)["ok"] is False


def test_unknown_tool_is_one_clean_line():
    result = runner.invoke(app, ["tools", "call", "Nope", "1"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Nope" in lines[0] and "Calculator" in lines[0]


def test_tools_list_names_every_builtin():
    result = runner.invoke(app, ["tools", "list"])
    assert result.exit_code == 0
    for name in ("Calculator", "Calendar", "WikiSearch", "QA", "MT"):
        assert name in result.stdout


def test_calendar_uses_the_fixed_date(monkeypatch):
    monkeypatch.setenv("TOOLFORMER_TODAY", "2023-01-30")
    result = runner.invoke(app, ["tools", "call", "Calendar"])
    assert result.stdout.strip() == "Today is Monday, January 30, 2023."


def test_index_build_then_search_with_that_corpus(tmp_path):
    corpus = tmp_path / "c.jsonl"
    rows = [
        {"id": "1", "title": "Zanzibar", "text": "Zanzibar is an archipelago off the coast of Tanzania."},
        {"id": "2", "title": "Oslo", "text": "Oslo is the capital of Norway."},
    ]
    corpus.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    built = runner.invoke(app, ["index", "build", str(corpus)])
    assert built.exit_code == 0, built.output
    found = runner.invoke(app, ["tools", "call", "WikiSearch", "capital of Norway", "--corpus", str(corpus)])
    assert found.exit_code == 0
    assert found.stdout.startswith("Oslo")


def test_bad_corpus_is_a_clean_error(tmp_path):
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"id": 1, "text": "fine"}\nnot json\n')
    result = runner.invoke(app, ["index", "build", str(corpus)])
    assert result.exit_code == 2
    assert "bad.jsonl" in result.stderr and "Traceback" not in result.output


def test_importing_the_cli_loads_no_torch():
    code = "import sys, toolformer.cli, toolformer.tools; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_ask_runs_the_calculator_with_the_embedded_model(smol):
    # `smol` makes sure the converted cache exists; the command loads it like a user would.
    result = subprocess.run(
        [sys.executable, "-m", "toolformer.cli", "ask", "What is 23 times 47?", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=real_home_env(),
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["calls"][0]["tool"] == "Calculator"
    assert data["calls"][0]["output"] == "1081"
    assert "[Calculator(23 * 47) → 1081]" in data["text"]


def test_ask_json_with_a_local_model_directory(tiny_dir):
    result = runner.invoke(app, ["ask", "Hello", "--model", str(tiny_dir), "--max-new-tokens", "5", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["new_tokens"] == 5 and data["finish_reason"] == "length"
    assert data["prompt"].endswith("Question: Hello\nAnswer:")


def test_chat_reads_lines_until_eof(tiny_dir):
    result = runner.invoke(
        app,
        ["chat", "--model", str(tiny_dir), "--tools", "Calculator", "--max-new-tokens", "4"],
        input="hi\n",
    )
    assert result.exit_code == 0, result.output
    assert "model>" in result.stdout


def test_missing_model_directory_is_one_line(tmp_path):
    result = runner.invoke(app, ["ask", "hi", "--model", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "nope" in result.stderr and "Traceback" not in result.output
