"""MCP tools: start a stdio MCP server, list its tools and wrap each one as a Tool whose calls go to the server.

One client session per server lives in a background thread with its own event loop, so synchronous callers
(the generation loop, Tool.run's worker threads) can call into it; every call has a time limit. Sessions are
closed at interpreter exit (or by `close_all()`), which also stops the server process.

A server that writes something other than JSON-RPC on stdout is named in one line with what it wrote (the MCP
library's traceback for it is silenced); if it still starts, the line is a warning. A server that exits (mid-call
or idle) is started again, once, by the next call.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import json
import logging
import re
import shlex
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from toolformer.errors import ConfigError, ToolError, ToolTimeoutError
from toolformer.tools.base import Tool

DEFAULT_TIMEOUT_S = 10.0
NOISE_GRACE_S = 2.0  # after non-JSON on stdout, how long a server still has to finish its handshake
_CLOSE_WAIT_S = 5.0

_OPEN: list[MCPConnection] = []
_OPEN_LOCK = threading.Lock()

logger = logging.getLogger(__name__)

# Set inside our sessions' tasks, so the filter below silences the library only for connections that report it.
_OURS: contextvars.ContextVar[bool] = contextvars.ContextVar("toolformer_mcp_session", default=False)


class _QuietParseErrors(logging.Filter):
    """Drops the MCP library's traceback for a stdout line that is not JSON-RPC, in our sessions: the
    connection reports that line itself, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_OURS.get() and record.getMessage().startswith("Failed to parse JSONRPC message"))


logging.getLogger("mcp.client.stdio").addFilter(_QuietParseErrors())


class _StartFailed(ConfigError):
    """The server did not start; `reason` is the message without the server's name."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class MCPConnection:
    """A live client session with one stdio MCP server, driven by a private event loop in a daemon thread."""

    def __init__(
        self,
        command: str | Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        if not argv:
            raise ConfigError(f"MCP server command {command!r} is empty")
        self.argv = argv
        self.label = shlex.join(argv)
        self.timeout = timeout
        self.env = env
        self.cwd = cwd
        self.tools: list[Any] = []  # mcp_types.Tool entries as the server listed them
        self._closed = False
        self._restart_error: str | None = None  # why the one restart after an exit failed
        self._lock = threading.Lock()  # one restart at a time
        self._generation = 0  # which session: callbacks of an old one must not touch a new one
        # The server's stderr goes to a temp file (not our terminal); its tail explains a failed start.
        self._errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by close()
        self._fresh()

    def _fresh(self) -> None:
        """State of one session (a restart gets a new one)."""
        self._generation += 1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._stop: asyncio.Event | None = None
        self._main: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._exited = False  # the server's stdout closed: it is gone
        self._noise: str | None = None  # the first non-JSON line it wrote on stdout
        self._noise_seen = threading.Event()
        self._noise_seen_at = 0.0
        self._warned = False

    def __repr__(self) -> str:
        return f"MCPConnection({self.label!r}, alive={self.alive})"

    @property
    def alive(self) -> bool:
        return (
            self._ready.is_set()
            and self._error is None
            and not self._closed
            and not self._exited
            and self._client is not None
        )

    def start(self) -> list[Any]:
        """Start the server and list its tools, within `timeout` seconds; raise ConfigError on failure."""
        try:
            return self._launch()
        except ConfigError:
            self.close()
            raise

    def _launch(self) -> list[Any]:
        self._thread = threading.Thread(target=self._run, name=f"mcp-{self.argv[0]}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.timeout
        while not self._ready.wait(0.05):
            # A server that talks out of turn gets a short grace, not the whole wait.
            if self._noise_seen.is_set():
                deadline = min(deadline, self._noise_seen_at + NOISE_GRACE_S)
            if time.monotonic() >= deadline:
                break
        if self._ready.is_set() and self._error is None:
            if self._noise is not None:
                self._warn_noise()
            return self.tools
        tail = self._stderr_tail()
        self._stop_session()
        if self._noise is not None:
            reason = (
                f"wrote to stdout what is not JSON-RPC: {self._noise!r} (a stdio MCP server may write only "
                f"JSON-RPC messages there){tail}"
            )
        elif self._error is None:
            reason = f"did not start within {self.timeout:g} s{tail}"
        else:
            reason = f"failed to start: {_leaf_message(self._error)}{tail}"
        raise _StartFailed(f"MCP server {self.label!r} {reason}", reason)

    def call(self, name: str, arguments: dict[str, Any], timeout: float | None = None) -> str:
        """Call one tool on the server and return its text content; raise ToolError/ToolTimeoutError on failure.

        A server that has exited is started again first, once per exit.
        """
        if self._exited and not self._closed:
            self._restart()
        if not self.alive or self._loop is None:
            raise ToolError(f"MCP server {self.label!r} is not running")
        limit = self.timeout if timeout is None else timeout
        coroutine = self._call(name, arguments, limit)
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        except RuntimeError as exc:  # the loop closed under us
            coroutine.close()
            raise ToolError(f"MCP server {self.label!r} is not running") from exc
        try:
            result = future.result(limit + 1.0)  # the session's own read timeout normally fires first
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise ToolTimeoutError(f"{name} timed out after {limit:g} s") from exc
        except Exception as exc:
            if self._exited:
                raise ToolError(
                    f"{name} failed: MCP server {self.label!r} exited during the call (the next call starts it "
                    f"again){self._stderr_tail()}"
                ) from exc
            message = _leaf_message(exc)
            if "timed out" in message.lower():
                raise ToolTimeoutError(f"{name} timed out after {limit:g} s") from exc
            raise ToolError(f"{name} failed: {message}") from exc
        text = _result_text(result)
        if getattr(result, "is_error", False):
            raise ToolError(text or f"{name} failed")
        return text

    def _restart(self) -> None:
        with self._lock:
            if not self._exited or self._closed:
                return  # another caller restarted it meanwhile
            if self._restart_error is not None:
                raise ToolError(self._restart_error)
            self._stop_session()
            self._fresh()
            with contextlib.suppress(OSError, ValueError):
                self._errlog.seek(0)
                self._errlog.truncate()
            try:
                self._launch()
            except _StartFailed as exc:
                self._exited = True  # later calls get this error at once: one restart per exit
                self._restart_error = (
                    f"MCP server {self.label!r} exited and did not start again: {exc.reason}"
                )
                raise ToolError(self._restart_error) from exc
            logger.info("MCP server %r exited and was started again", self.label)

    def close(self) -> None:
        """End the session and stop the server (idempotent; waits a few seconds at most)."""
        if self._closed:
            return
        self._closed = True
        self._stop_session()
        with _OPEN_LOCK:
            if self in _OPEN:
                _OPEN.remove(self)
        self._errlog.close()

    def _stop_session(self) -> None:
        """End this session's thread (and with it the server process), waiting a few seconds at most."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                if self._stop is not None and self._ready.is_set():
                    loop.call_soon_threadsafe(self._stop.set)
                elif self._main is not None:
                    loop.call_soon_threadsafe(self._main.cancel)
            except RuntimeError:  # the loop closed between the check and the call
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(_CLOSE_WAIT_S)

    def _run(self) -> None:
        try:
            asyncio.run(self._session())
        except BaseException as exc:  # noqa: BLE001 - reported through start()
            self._error = self._error or exc
        finally:
            self._ready.set()

    async def _session(self) -> None:
        from mcp import Client, StdioServerParameters

        _OURS.set(True)
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._main = asyncio.current_task()
        if self._closed:  # start() gave up before this thread got going
            return
        params = StdioServerParameters(
            command=self.argv[0],
            args=self.argv[1:],
            env=self.env,
            cwd=self.cwd,
            encoding_error_handler="replace",  # bytes that are not UTF-8 are reported as non-JSON, not a crash
        )
        try:
            async with Client(self._transport(params)) as client:
                self._client = client
                self.tools = await _list_tools(client)
                self._ready.set()
                if not self._closed:  # close() may have run while we were listing: then leave at once
                    await self._stop.wait()
        except BaseException as exc:
            if not self._ready.is_set():
                self._error = exc
            if not isinstance(exc, (Exception, asyncio.CancelledError)):
                raise
        finally:
            self._client = None

    @contextlib.asynccontextmanager
    async def _transport(self, params: Any) -> AsyncIterator[tuple[Any, Any]]:
        """The stdio transport, with the server's messages relayed: a line that is not JSON-RPC is kept (to name
        it) instead of reaching the session, and the end of the server's stdout marks the server as exited."""
        import anyio
        from mcp.client.stdio import stdio_client

        generation = self._generation
        async with stdio_client(params, errlog=self._errlog) as (read, write):
            send, receive = anyio.create_memory_object_stream[Any](0)

            async def relay() -> None:
                try:
                    async with send:
                        async for item in read:
                            if isinstance(item, Exception):
                                self._non_json(generation, item)
                            else:
                                await send.send(item)
                        self._gone(generation)  # before `send` closes, so a call failing on the close sees it
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    pass  # our own shutdown

            async with anyio.create_task_group() as group:
                group.start_soon(relay)
                try:
                    yield receive, write
                finally:
                    group.cancel_scope.cancel()

    def _gone(self, generation: int) -> None:
        if generation != self._generation or self._closed or not self._ready.is_set():
            return  # an old session, or a failed start (which reports itself)
        self._exited = True
        logger.info("MCP server %r exited", self.label)
        if self._stop is not None:
            self._stop.set()  # end this session: the next call starts a new one

    def _non_json(self, generation: int, exc: Exception) -> None:
        if generation != self._generation:
            return
        line = _printed(exc)
        if self._noise is None:
            self._noise = line
            self._noise_seen_at = time.monotonic()
            self._noise_seen.set()
        if self._ready.is_set():
            self._warn_noise(line)

    def _warn_noise(self, line: str | None = None) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "MCP server %r wrote to stdout what is not JSON-RPC (ignored): %r",
                self.label,
                line or self._noise,
            )

    async def _call(self, name: str, arguments: dict[str, Any], timeout: float) -> Any:
        if self._client is None:
            raise ToolError(f"MCP server {self.label!r} is not running")
        return await self._client.call_tool(name, arguments, read_timeout_seconds=timeout)

    def _stderr_tail(self) -> str:
        try:
            self._errlog.seek(0)
            lines = [ln.strip() for ln in self._errlog.read().splitlines() if ln.strip()]
        except (OSError, ValueError):
            return ""
        return f" (server stderr: {lines[-1][:200]})" if lines else ""


def mcp_tools(
    command: str | Sequence[str],
    timeout: float = DEFAULT_TIMEOUT_S,
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> list[Tool]:
    """Start the stdio MCP server `command` and return its tools as Tools (closed at exit or by close_all()).

    Tool names that are not identifiers are rewritten (`get-weather` → `get_weather`); calls use the server's
    name. `timeout` bounds the start and each call.
    """
    connection = MCPConnection(command, timeout=timeout, env=env, cwd=cwd)
    with _OPEN_LOCK:
        _OPEN.append(connection)
    try:
        listed = connection.start()
    except BaseException:
        connection.close()
        raise
    return [_wrap(connection, entry, timeout) for entry in listed]


def close_all() -> None:
    """Close every MCP session opened by `mcp_tools` (registered to run at interpreter exit)."""
    with _OPEN_LOCK:
        connections = list(_OPEN)
    for connection in connections:
        connection.close()


atexit.register(close_all)


def _wrap(connection: MCPConnection, entry: Any, timeout: float) -> Tool:
    server_name = entry.name
    schema = dict(entry.input_schema or {})
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    schema.pop("title", None)  # pydantic's "addArguments" title is noise in an OpenAI schema

    def call(**arguments: Any) -> str:
        return connection.call(server_name, _coerce(arguments, schema), timeout)

    call.connection = connection  # type: ignore[attr-defined]  # lets callers close or inspect the session
    return Tool(
        name=_identifier(server_name),
        description=(entry.description or server_name).strip(),
        fn=call,
        parameters=schema,
        timeout=timeout,
    )


def _identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    return ident if ident and not ident[0].isdigit() else f"t_{ident}"


def _coerce(arguments: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Inline calls pass text: turn "5" into 5 where the schema wants a number, integer or boolean."""
    props = schema.get("properties", {})
    out = dict(arguments)
    for key, value in arguments.items():
        wanted = props.get(key, {}).get("type")
        if isinstance(value, str) and wanted in ("integer", "number", "boolean"):
            try:
                parsed = json.loads(value.strip().lower() if wanted == "boolean" else value)
            except ValueError:
                continue
            is_bool = isinstance(parsed, bool)
            if is_bool == (wanted == "boolean") and isinstance(parsed, (bool, int, float)):
                out[key] = parsed
    return out


async def _list_tools(client: Any) -> list[Any]:
    tools: list[Any] = []
    cursor = None
    for _ in range(100):  # a paginator that never ends cannot hang the start
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _result_text(result: Any) -> str:
    parts = []
    for block in getattr(result, "content", None) or []:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"<{getattr(block, 'type', 'content')}>")
    if not parts and getattr(result, "structured_content", None) is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "\n".join(parts)


def _printed(exc: Exception) -> str:
    """The stdout line behind the library's parse error (pydantic keeps it as the error's input), shortened."""
    try:
        value = exc.errors()[0].get("input")  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - not a pydantic error: its message is all there is
        value = None
    text = value if isinstance(value, str) else json.dumps(value) if value is not None else _leaf_message(exc)
    text = text.strip()
    return text if len(text) <= 200 else text[:199] + "…"


def _leaf_message(exc: BaseException) -> str:
    # anyio wraps failures in exception groups; the first leaf says what actually went wrong.
    while getattr(exc, "exceptions", None):  # BaseExceptionGroup (a backport on Python 3.10)
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
