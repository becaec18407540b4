"""The run log: numbered migrations, writes and reads, `toolformer logs` and its filters, logging from `ask`, `chat`
and the server, the switches that turn it off, and failed writes that cost no answer."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from serve_helpers import MODEL, choose, scripted_backend
from toolformer.cli import app
from toolformer.errors import DataError
from toolformer.runlog import (
    MIGRATIONS,
    NO_LOG_ENV,
    RunLog,
    applied,
    connect,
    log_path,
    migrate,
    open_run_log,
    read_responses,
)
from toolformer.runtime.engine import ChatResult, Toolformer
from toolformer.runtime.results import CallTrace, DecodeConfig, Generation

runner = CliRunner()

CALC = CallTrace("Calculator", "23 * 47", "1081", True, 0.0021, 8, 40)
FAILED = CallTrace("Calendar", "tomorrow", "error: no such date", False, 0.0005, 3, 30)


def _record(
    log: RunLog, prompt: str, model: str = "m1", calls: list[CallTrace] | None = None, **kw: Any
) -> int:
    rid = log.record(
        source="ask", model=model, prompt=prompt, answer=f"answer to {prompt}", calls=calls or [], **kw
    )
    assert rid is not None
    return rid


# ---------------------------------------------------------------------------------------------------------------
# Migrations


def test_a_new_database_gets_every_migration_once(tmp_path: Path) -> None:
    conn = connect(tmp_path / "logs.db")
    assert migrate(conn) == MIGRATIONS[-1].number
    assert migrate(conn) == MIGRATIONS[-1].number  # again: nothing to do
    rows = conn.execute("SELECT number, name FROM _migrations ORDER BY number").fetchall()
    assert rows == [(m.number, m.name) for m in MIGRATIONS]
    columns = {r[1] for r in conn.execute("PRAGMA table_info(responses)")}
    assert {"prompt", "answer", "model", "source", "conversation_id", "options", "finish_reason"} <= columns


def test_a_database_at_migration_1_is_upgraded_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    conn = connect(path)
    assert migrate(conn, upto=1) == 1
    assert "options" not in {r[1] for r in conn.execute("PRAGMA table_info(responses)")}
    conn.execute(
        "INSERT INTO responses (time, model, prompt, answer, source) VALUES ('2026-01-01T00:00:00', 'old', 'q', 'a', 'ask')"
    )
    conn.execute("INSERT INTO calls VALUES (1, 0, 'Calculator', '1 + 1', '2', 1, 0.5)")
    conn.close()

    log = RunLog(path)  # the writer upgrades on its first write
    _record(log, "new", options=DecodeConfig(max_new_tokens=7))
    log.close()
    assert applied(connect(path)) == {m.number for m in MIGRATIONS}
    old, new = read_responses(path, n=0)
    assert (old["model"], old["options"], old["calls"][0]["tool"]) == ("old", None, "Calculator")
    assert new["options"]["max_new_tokens"] == 7


def test_reading_an_old_database_upgrades_it(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    migrate(connect(path), upto=1)
    assert read_responses(path) == []
    assert applied(connect(path)) == {m.number for m in MIGRATIONS}


# ---------------------------------------------------------------------------------------------------------------
# Writing and reading


def test_records_read_back_oldest_first_with_their_calls(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "logs.db")
    first = _record(log, "one", calls=[CALC, FAILED], prompt_tokens=12, completion_tokens=5, duration_ms=41.6)
    second = _record(log, "two", finish_reason="stop")
    rows = read_responses(log.path, n=0)
    assert [r["id"] for r in rows] == [first, second]
    one = rows[0]
    assert (one["prompt"], one["answer"], one["source"]) == ("one", "answer to one", "ask")
    assert (one["prompt_tokens"], one["completion_tokens"], one["duration_ms"]) == (12, 5, 42)
    assert [(c["position"], c["tool"], c["input"], c["output"], c["ok"]) for c in one["calls"]] == [
        (0, "Calculator", "23 * 47", "1081", True),
        (1, "Calendar", "tomorrow", "error: no such date", False),
    ]
    assert one["calls"][0]["ms"] == pytest.approx(2.1)
    assert one["time"].endswith("+00:00")  # UTC
    assert rows[1]["calls"] == [] and rows[1]["finish_reason"] == "stop"
    assert [r["prompt"] for r in read_responses(log.path, n=1)] == ["two"]  # the latest


def test_filters_by_model_and_by_tool(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "logs.db")
    _record(log, "a", model="m1", calls=[CALC])
    _record(log, "b", model="m2", calls=[FAILED])
    _record(log, "c", model="m2", calls=[CALC, FAILED])
    _record(log, "d", model="m1")

    def prompts(**kw: Any) -> list[str]:
        return [r["prompt"] for r in read_responses(log.path, n=0, **kw)]

    assert prompts(model="m2") == ["b", "c"]
    assert prompts(tool="calculator") == ["a", "c"]  # any case
    assert prompts(tool="Calculator", model="m1") == ["a"]
    assert prompts(tool="WikiSearch") == []
    assert [r["prompt"] for r in read_responses(log.path, n=1, tool="Calendar")] == ["c"]


def test_one_log_is_safe_to_share_between_threads(tmp_path: Path) -> None:
    log = RunLog(tmp_path / "logs.db")
    threads = [
        threading.Thread(target=lambda i=i: [_record(log, f"{i}-{j}", calls=[CALC]) for j in range(5)])
        for i in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = read_responses(log.path, n=0)
    assert sorted(r["prompt"] for r in rows) == sorted(f"{i}-{j}" for i in range(6) for j in range(5))
    assert all(len(r["calls"]) == 1 for r in rows)


def test_a_failed_write_warns_once_and_returns_none(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    warnings: list[str] = []
    log = RunLog(blocker / "logs.db", warn=warnings.append)
    assert log.record(source="ask", model="m", prompt="q", answer="a") is None
    assert log.record(source="ask", model="m", prompt="q", answer="a") is None
    assert len(warnings) == 1 and str(blocker / "logs.db") in warnings[0] and "\n" not in warnings[0]


def test_a_broken_database_file_fails_writes_quietly_and_reads_loudly(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    path.write_bytes(b"this is not a database, just some bytes " * 20)
    warnings: list[str] = []
    assert RunLog(path, warn=warnings.append).record(source="ask", model="m", prompt="q", answer="a") is None
    assert len(warnings) == 1
    with pytest.raises(DataError, match="cannot read the run log"):
        read_responses(path)


def test_a_locked_database_fails_the_write_not_the_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import toolformer.runlog as runlog

    monkeypatch.setattr(runlog, "BUSY_TIMEOUT", 0.05)
    path = tmp_path / "logs.db"
    log = RunLog(path, warn=lambda m: None)
    _record(log, "before")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        assert log.record(source="ask", model="m", prompt="locked", answer="a") is None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _record(log, "after")  # the next write tries again
    assert [r["prompt"] for r in read_responses(path, n=0)] == ["before", "after"]


def test_logging_is_off_with_the_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_run_log(), RunLog)
    assert open_run_log(enabled=False) is None
    for value, off in [("1", True), ("yes", True), ("0", False), ("", False), ("false", False)]:
        monkeypatch.setenv(NO_LOG_ENV, value)
        assert (open_run_log() is None) is off, value


# ---------------------------------------------------------------------------------------------------------------
# `toolformer logs`


@pytest.fixture
def logged(toolformer_home: Path) -> RunLog:
    log = RunLog()  # $TOOLFORMER_HOME/logs.db, as the commands write it
    _record(log, "first", model="m1")
    _record(log, "second", model="m2", calls=[CALC], prompt_tokens=9, completion_tokens=4, duration_ms=30)
    _record(log, "third", model="m1", calls=[FAILED])
    _record(log, "fourth", model="m2")
    return log


def test_logs_shows_the_last_three_newest_last(logged: RunLog) -> None:
    result = runner.invoke(app, ["logs"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "first" not in out
    assert out.index("## Prompt\n\nsecond") < out.index("third") < out.index("fourth")
    assert "Calculator(23 * 47) → 1081" in out and "9 prompt + 4 completion tokens" in out and "30 ms" in out
    assert "Calendar(tomorrow) → error: no such date  (failed" in out


def test_logs_count_model_tool_and_json(logged: RunLog) -> None:
    def prompts(*args: str) -> list[str]:
        result = runner.invoke(app, ["logs", "--json", *args])
        assert result.exit_code == 0, result.output
        return [r["prompt"] for r in json.loads(result.stdout)]

    assert prompts("-n", "0") == ["first", "second", "third", "fourth"]
    assert prompts("-n", "1") == ["fourth"]
    assert prompts("--model", "m1") == ["first", "third"]
    assert prompts("--tool", "Calculator") == ["second"]
    assert prompts("--tool", "Calculator", "--model", "m1") == []
    rows = json.loads(runner.invoke(app, ["logs", "--json", "-n", "0"]).stdout)
    assert rows == read_responses(n=0)  # the JSON is what the log holds


def test_logs_path_and_an_empty_log(toolformer_home: Path) -> None:
    result = runner.invoke(app, ["logs", "--path"])
    assert result.exit_code == 0 and result.stdout.strip() == str(toolformer_home / "logs.db")
    empty = runner.invoke(app, ["logs"])
    assert empty.exit_code == 0 and empty.stdout == "" and "no logged answers" in empty.stderr
    assert runner.invoke(app, ["logs", "--json"]).stdout.strip() == "[]"
    assert not log_path().exists()  # reading creates nothing


def test_logs_on_a_bad_file_is_one_line_and_exit_2(toolformer_home: Path) -> None:
    log_path().write_text("garbage " * 100)
    result = runner.invoke(app, ["logs"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert str(log_path()) in result.stderr


# ---------------------------------------------------------------------------------------------------------------
# `ask` and `chat` write to it


class FakeToolformer:
    """Stands in for a loaded model: answers every question with one Calculator call."""

    name = "fake-model"
    backend = "transformers"
    tools = SimpleNamespace(names=lambda: ["Calculator"])

    def ask(self, question: str, config: Any = None, on_event: Any = None) -> Generation:
        return Generation(
            "prompt", f" {question} is [Calculator(23 * 47) → 1081] 1081.", [CALC], "stop", 6, 2, 11, 0.1
        )

    def chat(
        self, messages: list, config: Any = None, client_tools: Any = None, on_event: Any = None
    ) -> ChatResult:
        content = f"You said {messages[-1]['content']}."
        convo = [*messages, {"role": "assistant", "content": content}]
        return ChatResult(content, [CALC], [], convo, "stop", 20, 3)


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> FakeToolformer:
    fake = FakeToolformer()
    monkeypatch.setattr(Toolformer, "load", classmethod(lambda cls, *a, **k: fake))
    return fake


def test_ask_logs_its_answer_and_calls(fake_model: FakeToolformer) -> None:
    result = runner.invoke(app, ["ask", "What is 23 times 47?", "--max-new-tokens", "9"])
    assert result.exit_code == 0, result.output
    [row] = read_responses()
    assert (row["source"], row["model"], row["prompt"]) == ("ask", "fake-model", "What is 23 times 47?")
    assert row["answer"] == " What is 23 times 47? is [Calculator(23 * 47) → 1081] 1081."
    assert (row["prompt_tokens"], row["completion_tokens"], row["finish_reason"]) == (11, 6, "stop")
    assert row["options"]["max_new_tokens"] == 9 and row["conversation_id"] is None
    assert [(c["tool"], c["output"]) for c in row["calls"]] == [("Calculator", "1081")]
    assert runner.invoke(app, ["ask", "again", "--json"]).exit_code == 0
    assert [r["prompt"] for r in read_responses(n=0)] == ["What is 23 times 47?", "again"]


def test_chat_logs_each_turn_under_one_conversation(fake_model: FakeToolformer) -> None:
    result = runner.invoke(app, ["chat"], input="hello\n\nthere\n")
    assert result.exit_code == 0, result.output
    rows = read_responses(n=0)
    assert [(r["source"], r["prompt"], r["answer"]) for r in rows] == [
        ("chat", "hello", "You said hello."),
        ("chat", "there", "You said there."),
    ]
    assert rows[0]["conversation_id"] and rows[0]["conversation_id"] == rows[1]["conversation_id"]
    assert (rows[0]["prompt_tokens"], rows[0]["completion_tokens"]) == (20, 3)
    runner.invoke(app, ["chat"], input="again\n")
    assert read_responses(n=1)[0]["conversation_id"] != rows[0]["conversation_id"]  # a new session


def test_no_log_flag_and_environment_switch_keep_the_log_empty(
    fake_model: FakeToolformer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert runner.invoke(app, ["ask", "q", "--no-log"]).exit_code == 0
    assert runner.invoke(app, ["chat", "--no-log"], input="hi\n").exit_code == 0
    monkeypatch.setenv(NO_LOG_ENV, "1")
    assert runner.invoke(app, ["ask", "q"]).exit_code == 0
    assert runner.invoke(app, ["chat"], input="hi\n").exit_code == 0
    assert not log_path().exists()
    monkeypatch.setenv(NO_LOG_ENV, "0")
    assert runner.invoke(app, ["ask", "q"]).exit_code == 0
    assert len(read_responses(n=0)) == 1


def test_a_failing_write_does_not_break_ask(
    fake_model: FakeToolformer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("TOOLFORMER_HOME", str(blocker))  # the log's folder cannot be made
    result = runner.invoke(app, ["ask", "What is 23 times 47?"])
    assert result.exit_code == 0, result.output
    assert "1081" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: run log")]
    assert len(warnings) == 1 and str(blocker) in warnings[0]
    result = runner.invoke(app, ["chat"], input="one\ntwo\n")  # a session warns once, not every turn
    assert result.exit_code == 0 and "You said two." in result.stdout
    assert result.stderr.count("warning: run log") == 1


# ---------------------------------------------------------------------------------------------------------------
# The server writes to it


@pytest.fixture
def served(smol_tokenizer: Any, tmp_path: Path) -> Any:
    from toolformer.serve.app import create_app

    log = RunLog(tmp_path / "serve.db")
    with TestClient(create_app(scripted_backend(smol_tokenizer, choose, name=MODEL), runlog=log)) as client:
        yield client, log


def test_one_served_request_is_one_row(served: Any) -> None:
    client, log = served
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 23 times 47?"},
    ]
    response = client.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": messages, "max_tokens": 40}
    )
    assert response.status_code == 200, response.text
    [row] = read_responses(log.path, n=0)
    body = response.json()
    assert (row["source"], row["model"], row["prompt"]) == ("serve", MODEL, "What is 23 times 47?")
    assert row["answer"] == body["choices"][0]["message"]["content"]
    assert [(c["tool"], c["input"], c["output"]) for c in row["calls"]] == [("Calculator", "23 * 47", "1081")]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        body["usage"]["prompt_tokens"],
        body["usage"]["completion_tokens"],
    )
    assert row["options"]["max_new_tokens"] == 40


def test_a_streamed_request_is_logged_once_at_the_end(served: Any) -> None:
    client, log = served
    body = {"model": MODEL, "messages": [{"role": "user", "content": "What is 23 times 47?"}], "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        text = "".join(response.iter_text())
    assert text.rstrip().endswith("data: [DONE]")
    [row] = read_responses(log.path, n=0)
    assert "1081" in row["answer"] and row["calls"][0]["tool"] == "Calculator"


def test_completions_log_one_row_per_prompt(served: Any) -> None:
    client, log = served
    prompts = ["Q: 23 times 47?\nA:", "Q: again?\nA:"]
    response = client.post("/v1/completions", json={"model": MODEL, "prompt": prompts, "max_tokens": 12})
    assert response.status_code == 200, response.text
    rows = read_responses(log.path, n=0)
    assert sorted(r["prompt"] for r in rows) == sorted(prompts)
    assert sorted(r["answer"] for r in rows) == sorted(c["text"] for c in response.json()["choices"])


def test_the_serve_command_logs_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch, smol_tokenizer: Any
) -> None:
    import uvicorn

    from toolformer.serve import backend as backend_module

    backend = scripted_backend(smol_tokenizer, choose, name=MODEL)
    monkeypatch.setattr(backend_module, "load_backend", lambda *a, **k: backend)
    apps: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **k: apps.append(app))
    for args in (["serve"], ["serve", "--no-log"]):
        assert runner.invoke(app, args).exit_code == 0
    monkeypatch.setenv(NO_LOG_ENV, "1")
    assert runner.invoke(app, ["serve"]).exit_code == 0
    logs = [a.state.server.runlog for a in apps]
    for a in apps:
        a.state.server.close()
    assert isinstance(logs[0], RunLog) and logs[0].path == log_path()
    assert logs[1:] == [None, None]
