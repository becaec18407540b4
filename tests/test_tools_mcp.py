"""MCP: a real stdio server (tests/fixtures/mcp_server.py) listed, called, timed out, failed and closed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from toolformer.calls import Call
from toolformer.errors import ConfigError
from toolformer.tools import load_tools
from toolformer.tools.mcp import close_all, mcp_tools

SERVER = Path(__file__).parent / "fixtures" / "mcp_server.py"
COMMAND = [sys.executable, str(SERVER)]


@pytest.fixture(scope="module")
def tools():
    found = {t.name: t for t in mcp_tools(COMMAND, timeout=10.0)}
    yield found
    found["add"].fn.connection.close()


def test_lists_server_tools_with_their_schemas(tools) -> None:
    assert set(tools) == {"add", "shout_text", "slow", "fail"}
    add = tools["add"]
    assert add.description == "Add two integers."
    assert add.parameters["required"] == ["a", "b"]
    assert add.parameters["properties"]["a"]["type"] == "integer"
    assert add.openai_schema()["function"]["name"] == "add"


def test_inline_and_json_calls(tools) -> None:
    assert tools["add"].run(Call("add", "2, 3")).text == "5"
    assert tools["add"].run(Call("add", arguments={"a": 40, "b": 2})).text == "42"
    assert tools["shout_text"].run(Call("shout_text", '"hello"')).text == "HELLO"


def test_server_errors_become_error_text(tools) -> None:
    out = tools["fail"].run(Call("fail", '"boom"'))
    assert not out.ok and out.text.startswith("error: ")


def test_slow_call_times_out_and_session_lives_on(tools) -> None:
    out = tools["slow"].run(Call("slow", "10"), timeout=0.5)  # the server answers only after 10 s
    assert not out.ok and "timed out" in out.text
    assert tools["add"].run(Call("add", "1, 1")).text == "2"


def test_bad_commands_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="no-such-mcp-binary"):
        mcp_tools("no-such-mcp-binary --flag", timeout=5)
    with pytest.raises(ConfigError, match="failed to start.*server stderr: no tools here"):
        mcp_tools(
            [sys.executable, "-c", "import sys; sys.stderr.write('no tools here' + chr(10))"], timeout=5
        )
    with pytest.raises(ConfigError, match="empty"):
        mcp_tools("   ")


def test_load_tools_mcp_item_and_close_all() -> None:
    command = " ".join(f'"{part}"' for part in COMMAND)
    registry = load_tools(["Calculator", f"mcp:{command}"])
    assert registry.names() == ["Calculator", "add", "shout_text", "slow", "fail"]
    assert registry.run(Call("add", "20, 22")).text == "42"
    connection = registry["add"].fn.connection
    close_all()
    assert not connection.alive and not connection._thread.is_alive()
    out = registry.run(Call("add", "1, 2"))
    assert not out.ok and "not running" in out.text


# ---------------------------------------------------------------------------------------------------------------
# Servers that misbehave: non-JSON on stdout, exits mid-call

SERVER_HEAD = """
import os, sys
from mcp.server import MCPServer
server = MCPServer("tiny")

@server.tool()
def add(a: int, b: int) -> int:
    '''Add two integers.'''
    return a + b

@server.tool()
def die() -> str:
    '''Exit at once, mid-call.'''
    os._exit(3)
"""


def _server(tmp_path: Path, name: str, before: str = "", after: str = "server.run()\n") -> list[str]:
    path = tmp_path / f"{name}.py"
    path.write_text(before + SERVER_HEAD + after, encoding="utf-8")
    return [sys.executable, str(path)]


def _no_library_traceback(caplog, capfd) -> None:
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Failed to parse JSONRPC" not in err
    assert not [r for r in caplog.records if r.name.startswith("mcp") and r.levelname == "ERROR"]


@pytest.mark.timeout(120)  # far below the start timeout: the error comes from what it printed, not the wait
def test_a_program_that_prints_text_is_named_with_what_it_printed(tmp_path, caplog, capfd) -> None:
    command = [
        sys.executable,
        "-c",
        "print('Listening on http://localhost:8000', flush=True); import time; time.sleep(3600)",
    ]
    with pytest.raises(ConfigError) as info:
        mcp_tools(command, timeout=3600)
    message = str(info.value)
    assert "\n" not in message and "did not start" not in message
    assert (
        "Listening on http://localhost:8000" in message
        and "not JSON-RPC" in message
        and "time.sleep" in message
    )
    _no_library_traceback(caplog, capfd)


def test_a_program_that_prints_and_exits_is_named_with_what_it_printed(tmp_path, caplog, capfd) -> None:
    command = _server(tmp_path, "usage", before="print('usage: tool [--stdio]'); raise SystemExit(2)\n")
    with pytest.raises(ConfigError, match=r"usage\.py.*not JSON-RPC: 'usage: tool \[--stdio\]'"):
        mcp_tools(command, timeout=10)
    _no_library_traceback(caplog, capfd)


def test_a_banner_before_the_handshake_is_one_warning_and_the_server_works(tmp_path, caplog, capfd) -> None:
    command = _server(tmp_path, "banner", before="print('Weather server v1 starting', flush=True)\n")
    tools = {t.name: t for t in mcp_tools(command, timeout=20)}
    try:
        assert tools["add"].run(Call("add", "2, 3")).text == "5"
        [warning] = [
            r for r in caplog.records if r.name == "toolformer.tools.mcp" and r.levelname == "WARNING"
        ]
        assert "Weather server v1 starting" in warning.getMessage()
        _no_library_traceback(caplog, capfd)
    finally:
        tools["add"].fn.connection.close()


def test_a_server_that_dies_mid_call_is_started_again_by_the_next_call(tmp_path) -> None:
    tools = {t.name: t for t in mcp_tools(_server(tmp_path, "dying"), timeout=20)}
    connection = tools["add"].fn.connection
    try:
        for _ in range(2):  # every exit gets its restart
            out = tools["die"].run(Call("die"))
            assert not out.ok and "exited during the call" in out.text
            assert tools["add"].run(Call("add", "20, 22"), timeout=20).text == "42"
            assert connection.alive
    finally:
        connection.close()


def test_a_server_that_cannot_start_again_is_tried_once(tmp_path) -> None:
    marker = tmp_path / "started-once"
    starts = tmp_path / "starts"  # one line per start of the server program
    before = (
        f"import pathlib, sys\nm = pathlib.Path({str(marker)!r})\n"
        f"with open({str(starts)!r}, 'a') as f:\n    f.write('start\\n')\n"
        "if m.exists():\n    sys.stderr.write('port already taken\\n'); sys.exit(1)\nm.touch()\n"
    )
    tools = {t.name: t for t in mcp_tools(_server(tmp_path, "once", before=before), timeout=20)}
    try:
        assert not tools["die"].run(Call("die")).ok
        out = tools["add"].run(Call("add", "1, 2"), timeout=20)
        assert not out.ok and "did not start again" in out.text and "port already taken" in out.text
        tried = starts.read_text().count("start")
        assert tried == 2  # the first start, then the one restart that failed
        again = tools["add"].run(Call("add", "1, 2"), timeout=20)
        assert again.text == out.text and starts.read_text().count("start") == tried  # no second attempt
    finally:
        tools["add"].fn.connection.close()
