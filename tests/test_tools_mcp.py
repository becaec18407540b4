"""MCP: a real stdio server (tests/fixtures/mcp_server.py) listed, called, timed out, failed and closed."""

from __future__ import annotations

import sys
import time
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
    start = time.perf_counter()
    out = tools["slow"].run(Call("slow", "10"), timeout=0.5)
    assert time.perf_counter() - start < 2.0
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
