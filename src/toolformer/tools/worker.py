"""`ProcessFunction`: a user tool (`module:attr`) run in worker processes, killed when a call overruns its time limit.

A thread cannot be stopped: a tool that holds the GIL (a C loop such as `sum(range(10**10))`) overruns any limit a
thread enforces, and one that spins forever keeps a thread (and a core) for the life of the process. So tools from
a `module:attr` spec run in a child process that imports the same item; a call past its limit kills the child (and
anything it started: it leads its own process group) and the next call starts a fresh one.

The child is a plain `python -c` (a subprocess, not `multiprocessing`): spawn and forkserver re-run the parent's
`__main__` in the child, so a user's script without an `if __name__ == "__main__":` guard would start itself again.
Calls go over two pipes as pickles (the parent pickles only the call's literal arguments); results come back as text.
Up to `MAX_WORKERS` calls of one tool run at once, each in its own child; starting a child (importing the tool's
module) is not counted against a call's limit, waiting for a busy one is. A tool sees its module as imported: state
the caller changed in its own process (a module global set at run time) does not reach the child.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from toolformer.errors import ToolError, ToolTimeoutError

SUPPORTED = os.name == "posix"  # pass_fds and process groups; elsewhere user tools stay in-process
START_TIMEOUT_S = 60.0  # importing the tool's module in the child (torch, a model...) may take a while
MAX_WORKERS = 4
_ROOT = str(Path(__file__).resolve().parents[2])  # the directory `toolformer` is imported from
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from toolformer.tools.worker import _serve; _serve(int(sys.argv[2]), int(sys.argv[3]))"
)


class _Worker:
    """One child process serving one tool, and the parent's ends of its two pipes."""

    def __init__(self, item: str, name: str) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, _ROOT, str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: a kill also stops what the tool started
            )
        except BaseException:
            for fd in (to_child_w, from_child_r):
                os.close(fd)
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.outbox = Connection(to_child_w, readable=False)
        self.inbox = Connection(from_child_r, writable=False)
        try:
            self.outbox.send((list(sys.path), item, name))
            if not self.inbox.poll(START_TIMEOUT_S):
                raise ToolError(f"{name}: its worker process did not start within {START_TIMEOUT_S:g} s")
            status, value = self.inbox.recv()
            if status != "ready":
                raise ToolError(f"{name}: {value}")
        except (EOFError, OSError) as exc:
            self.kill()
            raise ToolError(f"{name}: its worker process exited while starting{self._exit_code()}") from exc
        except BaseException:
            self.kill()
            raise

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None) -> tuple[bool, str]:
        """(ok, text) of one call; `TimeoutError` when no answer came within `timeout` (the caller kills)."""
        self.outbox.send((args, kwargs))
        if not self.inbox.poll(timeout):
            raise TimeoutError
        status, value = self.inbox.recv()
        return status == "ok", value

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # an unkillable (traced) child must not hang us
            self.proc.wait(5)
        for conn in (self.outbox, self.inbox):
            conn.close()

    def _exit_code(self) -> str:
        try:
            code = self.proc.wait(1)
        except subprocess.TimeoutExpired:
            return ""
        return f" (exit code {code})"


def _kill_all(workers: list[_Worker], owner: int) -> None:
    if os.getpid() != owner:  # a forked copy at its exit: the workers are its parent's
        return
    while workers:
        workers.pop().kill()


class ProcessFunction:
    """Stands in for a user tool's function: calls run in worker processes that import `item` and call the tool
    `name` from it. `call_within(kwargs, timeout)` enforces a limit (Tool.run uses it); calling it has none."""

    def __init__(self, item: str, name: str, max_workers: int = MAX_WORKERS) -> None:
        self.item = item
        self.name = name
        self.max_workers = max(1, max_workers)
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._idle: list[_Worker] = []
        self._busy = 0
        self._cond = threading.Condition()
        self._finalizer = weakref.finalize(
            self, _kill_all, self._idle, self._pid
        )  # at collection and at exit

    def __repr__(self) -> str:
        return f"ProcessFunction({self.item!r}, {self.name!r})"

    def __reduce__(self) -> tuple[Callable[..., ProcessFunction], tuple[str, str, int]]:
        return ProcessFunction, (self.item, self.name, self.max_workers)  # a copy starts its own workers

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        return self._call(args, kwargs, None)

    def call_within(self, kwargs: dict[str, Any], timeout: float) -> str:
        """The tool's text for `kwargs`; ToolTimeoutError after `timeout` s (the worker is killed), ToolError when
        the tool raised (its message) or its worker died."""
        return self._call((), kwargs, timeout)

    def close(self) -> None:
        """Stop the idle workers (busy ones stop when their call returns)."""
        with self._cond:
            _kill_all(self._idle, self._pid)

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None) -> str:
        if os.getpid() != self._pid:  # a forked copy must not share its parent's pipes
            self._finalizer.detach()
            self._reset()
        worker, waited = self._checkout(timeout)
        keep = False
        try:
            left = None if timeout is None else max(0.0, timeout - waited)
            try:
                ok, text = worker.call(args, kwargs, left)
            except TimeoutError:
                raise ToolTimeoutError(f"{self.name} timed out after {timeout:g} s") from None
            except (EOFError, OSError) as exc:
                raise ToolError(f"{self.name}: its worker process died{worker._exit_code()}") from exc
            keep = True
            if not ok:
                raise ToolError(text)
            return text
        finally:
            self._checkin(worker, keep)

    def _checkout(self, timeout: float | None) -> tuple[_Worker, float]:
        """An idle worker, or a new one if fewer than `max_workers` are busy; else wait (counted in the limit)."""
        start = time.monotonic()
        with self._cond:
            while not self._idle and self._busy >= self.max_workers:
                left = None if timeout is None else timeout - (time.monotonic() - start)
                if left is not None and left <= 0:
                    raise ToolTimeoutError(
                        f"{self.name} timed out after {timeout:g} s (all {self.max_workers} of its workers busy)"
                    )
                self._cond.wait(left)
            self._busy += 1
            worker = self._idle.pop() if self._idle else None
        waited = time.monotonic() - start
        if worker is None:
            try:
                worker = _Worker(self.item, self.name)
            except BaseException:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify()
                raise
        return worker, waited

    def _checkin(self, worker: _Worker, keep: bool) -> None:
        if not keep:  # timed out or died: a fresh worker serves the next call
            worker.kill()
        with self._cond:
            self._busy -= 1
            if keep:
                self._idle.append(worker)
            self._cond.notify()


# ---------------------------------------------------------------------------------------------------------------
# The child's side


def _watch_parent(parent: int) -> None:
    """Exit when the parent is gone (killed with SIGKILL, no chance to stop us), even mid-call."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def _one_line(exc: BaseException) -> str:
    if not isinstance(exc, Exception):  # SystemExit, KeyboardInterrupt: the tool's failure, reported as such
        return f"raised {type(exc).__name__}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _serve(read_fd: int, write_fd: int) -> None:
    """The child's loop: import the tool, then answer calls until the parent closes the pipe."""
    inbox = Connection(read_fd, writable=False)
    outbox = Connection(write_fd, readable=False)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    path, item, name = inbox.recv()
    sys.path[:] = path
    try:
        from toolformer.tools.base import _to_text
        from toolformer.tools.registry import resolve_item

        [found] = [t for t in resolve_item(item) if t.name == name] or [None]
        if found is None:
            raise ToolError(f"tool spec item {item!r} has no tool {name!r} in the worker process")
        fn = found.fn
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as the start's failure
        outbox.send(("error", _one_line(exc)))
        return
    outbox.send(("ready", None))
    while True:
        try:
            args, kwargs = inbox.recv()
        except (EOFError, OSError):
            return
        try:
            reply = ("ok", _to_text(fn(*args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001 - a tool's failure is text for the parent
            reply = ("error", _one_line(exc))
        outbox.send(reply)
