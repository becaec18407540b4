"""Running a request's jobs, on their own: SSE streams (`serve/sse.py`), blocking runs (`serve/workers.py`) and the
shared state (`serve/state.py`). Jobs are plain functions here, so only the plumbing is tested: order of events,
errors, timeouts, a client going away, slots released and work cancelled."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from toolformer.errors import ConfigError
from toolformer.serve.config import ServeConfig
from toolformer.serve.errors import ApiError
from toolformer.serve.schemas import Delta, Usage
from toolformer.serve.session import Reply
from toolformer.serve.sse import event_stream, sse
from toolformer.serve.state import ServerState
from toolformer.serve.workers import ClientGone, run_blocking
from toolformer.tools import load_tools


@pytest.fixture
def make_state() -> Any:
    states: list[ServerState] = []

    def make(**config: Any) -> ServerState:
        backend = SimpleNamespace(name="m", kind="fake", max_batch=1, tools=load_tools("Calculator"))
        states.append(ServerState.build(backend, ServeConfig(**config)))
        return states[-1]

    yield make
    for state in states:
        state.close()


class _Client:
    """A request whose client stays until `leave()`."""

    def __init__(self) -> None:
        self.left = asyncio.Event()
        scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
        self.request = Request(scope, self._receive)

    async def _receive(self) -> dict[str, Any]:
        await self.left.wait()
        return {"type": "http.disconnect"}

    def leave(self) -> None:
        self.left.set()


def _reply(n: int) -> Reply:
    return Reply(f"reply {n}", "stop", prompt_tokens=n, completion_tokens=10 * n)


def _until_cancelled(seen: list[bool]) -> Callable[..., Reply]:
    def job(sink: Any = None, cancelled: Callable[[], bool] = lambda: False) -> Reply:
        deadline = time.monotonic() + 5
        while not cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(cancelled())
        return _reply(0)

    return job


def _finished(seen: list[bool]) -> list[bool]:
    """What `_until_cancelled` jobs saw, once they have finished (they run on after a request ends)."""
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    return seen


class _Release:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def _stream(
    state: ServerState, jobs: list, client: _Client | None = None, on_line: Any = None
) -> tuple[list, int]:
    """Run `event_stream` to its end: (lines, times the slot was released)."""
    client = client or _Client()
    release = _Release()

    def render(index: int, kind: str, payload: Any) -> list[str]:
        return [f"{kind}:{index}:{payload.content if kind == 'done' else payload}\n"]

    async def collect() -> list[str]:
        lines = []
        async for line in event_stream(state, jobs, render, release, client.request):
            lines.append(line)
            if on_line is not None:
                on_line(line, client)
        return lines

    return asyncio.run(collect()), release.calls


def test_an_event_is_one_data_line_without_null_fields():
    assert sse(Delta(content="hi")) == 'data: {"content":"hi"}\n\n'
    assert sse(Usage.of(2, 3)) == 'data: {"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}\n\n'
    assert sse({"error": {"param": None}}) == f"data: {json.dumps({'error': {'param': None}})}\n\n"


def test_a_stream_renders_every_jobs_items_between_start_and_end_then_done(make_state):
    state = make_state()

    def job(n: int) -> Callable[..., Reply]:
        def run(sink: Callable[[str, Any], None], cancelled: Callable[[], bool]) -> Reply:
            sink("content", f"text {n}")
            return _reply(n)

        return run

    lines, released = _stream(state, [job(1), job(2)])
    assert lines[0] == "start:-1:None\n" and lines[-2:] == ["end:-1:None\n", "data: [DONE]\n\n"]
    for n in (1, 2):  # the two jobs interleave, but each one's items keep their order
        mine = [line for line in lines if line.split(":")[1] == str(n - 1)]
        assert mine == [f"content:{n - 1}:text {n}\n", f"done:{n - 1}:reply {n}\n"]
    assert released == 1
    tokens = state.metrics.registry.get_sample_value
    assert tokens("toolformer_tokens_total", {"kind": "prompt"}) == 3
    assert tokens("toolformer_tokens_total", {"kind": "completion"}) == 30


def test_a_failing_job_ends_the_stream_with_one_error_event_and_stops_the_others(make_state):
    state = make_state()
    seen: list[bool] = []

    def bad(sink: Any, cancelled: Any) -> Reply:
        raise ConfigError("temperature must be >= 0, got -1")

    lines, released = _stream(state, [bad, _until_cancelled(seen)])
    error = json.loads(lines[-1][len("data: ") :])["error"]
    assert (error["message"], error["type"]) == ("temperature must be >= 0, got -1", "invalid_request_error")
    assert "data: [DONE]\n\n" not in lines and released == 1
    assert _finished(seen) == [True]


def test_a_stream_past_the_timeout_ends_with_504_and_cancels_its_job(make_state):
    state = make_state(request_timeout=0.2)
    seen: list[bool] = []
    lines, released = _stream(state, [_until_cancelled(seen)])
    error = json.loads(lines[-1][len("data: ") :])["error"]
    assert error["code"] == "timeout" and error["message"] == "the request took longer than 0.2 s"
    assert released == 1
    assert _finished(seen) == [True]


def test_a_client_that_goes_away_ends_its_stream_at_once(make_state):
    state = make_state()
    seen: list[bool] = []

    hold = threading.Event()  # the job runs on until the test lets it go: the stream must not wait for it

    def talk(sink: Callable[[str, Any], None], cancelled: Callable[[], bool]) -> Reply:
        sink("content", "first")
        hold.wait(5)
        seen.append(cancelled())
        return _reply(0)

    def leave_after_content(line: str, client: _Client) -> None:
        if line.startswith("content"):
            client.leave()

    lines, released = _stream(state, [talk], on_line=leave_after_content)
    assert lines == ["start:-1:None\n", "content:0:first\n"]  # no error event: nobody is there to read it
    assert released == 1
    assert seen == []  # the stream ended while its job was still running
    hold.set()
    assert _finished(seen) == [True]  # and the job was told to stop


def test_run_blocking_returns_replies_in_job_order(make_state):
    state = make_state()

    def job(n: int, delay: float) -> Callable[..., Reply]:
        def run(sink: Any = None, cancelled: Any = None) -> Reply:
            time.sleep(delay)
            return _reply(n)

        return run

    replies = asyncio.run(run_blocking(state, [job(1, 0.1), job(2, 0)], _Client().request))
    assert [r.content for r in replies] == ["reply 1", "reply 2"]


def test_run_blocking_turns_a_failure_into_an_api_error_and_cancels_the_rest(make_state):
    state = make_state()
    seen: list[bool] = []

    def bad(sink: Any = None, cancelled: Any = None) -> Reply:
        raise ConfigError("max_new_tokens must be >= 1, got 0")

    with pytest.raises(ApiError) as failed:
        asyncio.run(run_blocking(state, [bad, _until_cancelled(seen)], _Client().request))
    assert failed.value.status == 400 and failed.value.message == "max_new_tokens must be >= 1, got 0"
    assert _finished(seen) == [True]


def test_run_blocking_times_out_with_504_and_sees_a_client_leave(make_state):
    state = make_state(request_timeout=0.2)
    with pytest.raises(ApiError) as timed_out:
        asyncio.run(run_blocking(state, [_until_cancelled([])], _Client().request))
    assert timed_out.value.status == 504

    async def leave_soon() -> None:
        client = _Client()
        asyncio.get_running_loop().call_later(0.05, client.leave)
        await run_blocking(state, [_until_cancelled([])], client.request)

    with pytest.raises(ClientGone):
        asyncio.run(leave_soon())


def test_the_state_serves_one_model_and_describes_its_tools(make_state):
    state = make_state()
    state.check_model("m")
    with pytest.raises(ApiError) as other:
        state.check_model("gpt-4")
    assert other.value.status == 404 and other.value.code == "model_not_found"
    card = state.model_card()
    assert (card.id, card.backend, [t.name for t in card.tools]) == ("m", "fake", ["Calculator"])
    cancel = threading.Event()
    state.abandon(cancel)
    assert cancel.is_set()
