"""`Progress`: rich's progress bar on a terminal, plain progress lines when the output is a log file or a pipe.

Rich draws nothing while its console is not a terminal, so `toolformer eval > log 2>&1` showed no sign of life
for minutes. This subclass keeps rich's bar on a terminal and otherwise writes one line per task when it starts,
whenever another tenth of it is done (at most every `min_interval` seconds), at least every `every` seconds while
it moves, when its description changes, and when the display stops:

    eval: gsm8k tools 120/500 (24%), 3m12s elapsed, about 10m left

It is a drop-in replacement: same constructor and methods, plus `name` (the line's prefix) and the intervals.
"""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from rich.progress import Progress as RichProgress
from rich.progress import Task, TaskID

EVERY_SECONDS = 30.0  # a moving task writes a line at least this often
MIN_INTERVAL_SECONDS = 2.0  # and at most this often for its tenths (a fast task must not flood the log)
_QUIET_FIELDS = {None, "", "-"}


def plain_lines(console: Console | None) -> bool:
    """Whether progress on `console` (default: stderr) should be plain lines: it is not a terminal."""
    console = console or Console(stderr=True)
    return not console.is_terminal or console.is_dumb_terminal


class Progress(RichProgress):
    """A rich Progress that writes plain lines instead of a bar when its console is not a terminal."""

    def __init__(
        self,
        *columns: Any,
        console: Console | None = None,
        name: str = "",
        every: float = EVERY_SECONDS,
        min_interval: float = MIN_INTERVAL_SECONDS,
        disable: bool = False,
        **kwargs: Any,
    ) -> None:
        console = console or Console(stderr=True)
        self.lines = plain_lines(console)
        self.quiet = disable
        # In line mode the live bar stays off: off a terminal it would only print its last frame at the end.
        super().__init__(*columns, console=console, disable=disable or self.lines, **kwargs)
        self.name = name
        self.every = every
        self.min_interval = min_interval
        self._logged: dict[TaskID, tuple[float, int, str, float]] = {}  # time, tenth, description, completed
        self._last_line: dict[TaskID, str] = {}

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> TaskID:
        task_id = super().add_task(description, *args, **kwargs)
        self._maybe_log(task_id, force=True)
        return task_id

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._maybe_log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_log(task_id)

    def stop(self) -> None:
        if self.lines and not self.quiet:
            with self._lock:
                for task_id, task in list(self._tasks.items()):  # the final state, unless just written
                    if self._last_line.get(task_id) != _without_times(format_line(task, self.name)):
                        self._write(task)
        super().stop()

    def _maybe_log(self, task_id: TaskID, force: bool = False) -> None:
        if not self.lines or self.quiet:
            return
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return
            now = time.monotonic()
            tenth = int(task.percentage // 10) if task.total else -1
            last = self._logged.get(task_id)
            if not force and last is not None:
                since, last_tenth, last_description, last_completed = last
                moved = task.completed != last_completed
                due = (
                    task.description != last_description
                    or (moved and now - since >= self.every)
                    or (tenth != last_tenth and now - since >= self.min_interval)
                    or (task.finished and moved)
                )
                if not due:
                    return
            self._logged[task_id] = (now, tenth, task.description, task.completed)
            self._write(task)

    def _write(self, task: Task) -> None:
        line = format_line(task, self.name)
        self._last_line[task.id] = _without_times(line)
        self.console.print(line, markup=False, highlight=False, soft_wrap=True, emoji=False)


def format_line(task: Task, name: str = "") -> str:
    """`name: description 120/500 (24%), 3m12s elapsed, about 10m left, loss 1.23`."""
    description = task.description if task.description != name else ""
    head = ": ".join(part for part in (name, description) if part) or "progress"
    done = _count(task.completed)
    parts = [
        f"{head} {done}/{_count(task.total)} ({task.percentage:.0f}%)" if task.total else f"{head} {done}"
    ]
    if task.elapsed is not None:
        parts.append(f"{duration(task.elapsed)} elapsed")
    if task.finished:
        parts.append("done")
    elif task.time_remaining is not None and task.completed:
        parts.append(f"about {duration(task.time_remaining)} left")
    parts += [f"{key} {value}" for key, value in task.fields.items() if value not in _QUIET_FIELDS]
    return ", ".join(parts)


def duration(seconds: float) -> str:
    """`42s`, `3m12s`, `2h05m`."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _without_times(line: str) -> str:
    return ", ".join(p for p in line.split(", ") if not p.endswith((" elapsed", " left")))


def _count(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
