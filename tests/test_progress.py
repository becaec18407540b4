"""`toolformer.progress.Progress`: off a terminal it writes plain lines, one per tenth, description change and stop."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.progress import Progress as RichProgress

from toolformer.progress import Progress, duration, format_line, plain_lines

NEVER = 1e9  # seconds: no line is due on time alone


def log_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=200), out


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_a_log_file_gets_lines_not_a_bar() -> None:
    console, _ = log_console()
    assert plain_lines(console)
    assert not plain_lines(Console(file=io.StringIO(), force_terminal=True))
    assert Progress(console=console).lines


def test_lines_at_start_each_tenth_a_new_description_and_the_end() -> None:
    console, out = log_console()
    bar = Progress(console=console, name="eval", every=NEVER, min_interval=0.0)
    task = bar.add_task("gsm8k", total=100)
    assert [line.split(",")[0] for line in lines(out)] == ["eval: gsm8k 0/100 (0%)"]
    for _ in range(4):
        bar.advance(task)  # 1-4 %: the same tenth, no line
    assert len(lines(out)) == 1
    bar.advance(task, 8)  # 12 %: a new tenth
    bar.update(task, description="svamp")
    bar.update(task, completed=100)
    bar.stop()
    heads = [line.split(",")[0] for line in lines(out)]
    assert heads == [
        "eval: gsm8k 0/100 (0%)",
        "eval: gsm8k 12/100 (12%)",
        "eval: svamp 12/100 (12%)",
        "eval: svamp 100/100 (100%)",
    ]
    assert lines(out)[-1].endswith("done")  # written once: stop() does not repeat the last line


def test_stop_writes_the_final_state_it_has_not_written_yet() -> None:
    console, out = log_console()
    bar = Progress(console=console, name="train", every=NEVER, min_interval=NEVER)
    task = bar.add_task("train", total=10)
    bar.update(task, completed=3)  # a new tenth, but too soon after the last line
    assert len(lines(out)) == 1
    bar.stop()
    assert lines(out)[-1].startswith("train 3/10 (30%)")  # the description equal to the name is not repeated


def test_a_disabled_progress_writes_nothing() -> None:
    console, out = log_console()
    bar = Progress(console=console, disable=True, min_interval=0.0)
    task = bar.add_task("x", total=2)
    bar.advance(task, 2)
    bar.stop()
    assert out.getvalue() == ""


def test_format_line_shows_counts_fields_and_time_left() -> None:
    rich = RichProgress(console=Console(file=io.StringIO()), disable=True)
    task_id = rich.add_task("qa", start=False, total=None, loss="1.23", ppl="-")
    task = rich.tasks[0]
    assert format_line(task, "eval") == "eval: qa 0, loss 1.23"  # "-" fields are left out
    rich.update(task_id, total=2000, completed=1500.5)
    assert format_line(rich.tasks[0]).startswith("qa 1,500.5/2,000 (75%)")
    rich.start_task(task_id)
    assert " elapsed" in format_line(rich.tasks[0])


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (42.4, "42s"),
        (59.6, "1m00s"),
        (192, "3m12s"),
        (7500, "2h05m"),
        (-3, "0s"),
        (float("inf"), "?"),
    ],
)
def test_durations_read_like_a_person_writes_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text
