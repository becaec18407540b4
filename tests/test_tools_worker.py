"""User tools (`module:attr`) run in worker processes: a call past its limit is killed at the limit, even one that
holds the GIL; timeouts leak no threads or processes; the next call gets a fresh worker; failures are error text."""

from __future__ import annotations

import concurrent.futures as cf
import os
import pickle
import threading
import time
import uuid

import pytest

from toolformer.calls import Call
from toolformer.tools import load_tools
from toolformer.tools.worker import SUPPORTED, ProcessFunction

pytestmark = pytest.mark.skipif(not SUPPORTED, reason="worker processes need POSIX")

MODULE = '''
import os, sys, time

def spin(seconds: float) -> str:
    """Busy-loop in Python for `seconds`; say which process ran it."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return str(os.getpid())

def hold(n: int) -> str:
    """One C call that keeps the GIL: sum(range(n))."""
    return str(sum(range(n)))

def echo(text: str) -> str:
    """Print noise on stdout, return the text."""
    print("noise from the tool")
    return text

def boom(text: str) -> str:
    """Always fail."""
    raise ValueError(f"bad {text}")

def crash(code: int) -> str:
    """Kill its own process."""
    os._exit(code)

def pid() -> int:
    """The process the tool runs in."""
    return os.getpid()
'''


@pytest.fixture
def registry(tmp_path, monkeypatch):
    name = f"busy_tools_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = load_tools([f"{name}:{fn}" for fn in ("spin", "hold", "echo", "boom", "crash", "pid")])
    yield reg
    for tool in reg.values():
        getattr(tool.fn, "close", lambda: None)()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _gil_holding_n(seconds: float) -> int:
    """An n for which sum(range(n)) takes about `seconds` here."""
    start = time.perf_counter()
    sum(range(10**7))
    per = max(time.perf_counter() - start, 1e-4) / 10**7
    return min(int(seconds / per), 10**12)


def test_a_tool_that_holds_the_gil_times_out_at_its_limit(registry):
    assert registry.run(Call("hold", "10")).text == "45"  # the worker is up: its start is not in the limit
    out = registry.run(Call("hold", str(_gil_holding_n(6.0))), timeout=1.0)
    # In a thread it would run to its end (6 s) and count as a success: the worker process is killed instead.
    assert (out.ok, out.text) == (False, "error: hold timed out after 1 s")


def test_repeated_timeouts_leak_no_threads_or_processes_and_the_next_call_works(registry):
    worker = int(registry.run(Call("spin", "0")).text)
    other = registry.run(Call("pid")).text
    threads = threading.active_count()
    for _ in range(3):
        out = registry.run(Call("spin", "60"), timeout=0.3)
        assert not out.ok and out.text == "error: spin timed out after 0.3 s"
        assert threading.active_count() == threads  # nothing left spinning in this process
        assert worker != os.getpid() and not _alive(worker)  # the worker was killed and reaped
        worker = int(registry.run(Call("spin", "0")).text)  # the next call gets a fresh worker
    assert registry.run(Call("pid")).text == other  # other tools' workers are untouched


def test_failures_are_error_text_and_a_crashed_worker_is_replaced(registry):
    first = registry.run(Call("pid")).text
    out = registry.run(Call("boom", '"x"'))
    assert (out.ok, out.text) == (False, "error: bad x")
    out = registry.run(Call("crash", "3"))
    assert (
        not out.ok
        and out.text.startswith("error: crash: its worker process died")
        and "exit code 3" in out.text
    )
    assert registry.run(Call("crash", "x")).text.startswith("error: ")  # a bad argument is the tool's error
    assert registry.run(Call("pid")).text == first and first != str(os.getpid())


def test_tool_output_on_stdout_does_not_disturb_the_calls(registry, capfd):
    assert registry.run(Call("echo", '"hi"')).text == "hi"
    assert registry["echo"]("direct") == "direct"  # a direct call has no limit, and runs in the worker too


def test_concurrent_calls_each_get_a_worker(registry):
    with cf.ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(lambda _: registry.run(Call("spin", "0.3"), timeout=20), range(3)))
    assert all(o.ok for o in outs) and len({o.text for o in outs}) == 3  # three workers, side by side
    assert len(registry["spin"].fn._idle) == 3


def test_a_busy_tool_makes_extra_calls_wait_within_their_limit(tmp_path, monkeypatch, registry):
    fn = ProcessFunction(registry["spin"].fn.item, "spin", max_workers=1)
    try:
        with cf.ThreadPoolExecutor(1) as pool:
            long = pool.submit(fn.call_within, {"seconds": 1.5}, 10)
            time.sleep(0.5)  # the one worker is busy (started and spinning)
            with pytest.raises(Exception, match="all 1 of its workers busy"):
                fn.call_within({"seconds": 0}, 0.2)
            assert long.result().isdigit()
        assert fn.call_within({"seconds": 0}, 5).isdigit()
    finally:
        fn.close()


def test_a_user_tool_pickles_and_the_copy_starts_its_own_worker(registry):
    copy = pickle.loads(pickle.dumps(registry["echo"]))
    assert copy.run(Call("echo", '"again"')).text == "again"
    copy.fn.close()
