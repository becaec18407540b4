"""Live output: answers printed as they are written (AnswerPrinter) and progress lines off a terminal (Progress)."""

from __future__ import annotations

import io

from rich.console import Console

from toolformer.live import AnswerPrinter
from toolformer.progress import Progress, duration, format_line
from toolformer.runtime.decode import CallTrace, Event
from toolformer.runtime.prompts import STOP


def _console(terminal: bool = False) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    colors = "standard" if terminal else None
    return Console(file=buffer, force_terminal=terminal, width=40, color_system=colors), buffer


def _feed(printer: AnswerPrinter, buffer: io.StringIO, chunks: list[str]) -> list[str]:
    seen = []
    for chunk in chunks:
        printer.on_event(Event("text", 0, chunk))
        seen.append(buffer.getvalue())
    return seen


def test_the_answer_appears_chunk_by_chunk_and_never_shows_a_stop_string() -> None:
    console, buffer = _console()
    printer = AnswerPrinter(console, STOP)
    chunks = [" 23 * 47 is", " [Calculator(23 * 47) →", " 1081] 1081.", "\n", "Question"]
    seen = _feed(printer, buffer, chunks)
    assert seen[0] == "23 * 47 is"  # leading blank dropped, shown before the rest exists
    assert seen[1] == "23 * 47 is [Calculator(23 * 47) →"  # the call shows while its tool runs
    assert seen[2] == seen[3] == seen[4] == "23 * 47 is [Calculator(23 * 47) → 1081] 1081."  # '\n…' held back
    printer.on_event(Event("done", 0, finish_reason="stop"))
    printer.finish(" 23 * 47 is [Calculator(23 * 47) → 1081] 1081.")  # the decoder cut '\nQuestion:'
    assert buffer.getvalue() == "23 * 47 is [Calculator(23 * 47) → 1081] 1081.\n"


def test_held_back_text_that_was_no_stop_string_comes_out_at_the_end() -> None:
    console, buffer = _console()
    printer = AnswerPrinter(console, STOP)
    _feed(printer, buffer, [" Line one.", "\n", "Line two"])
    assert buffer.getvalue() == "Line one.\nLine two"  # '\nL' cannot start a stop string any more
    _feed(printer, buffer, ["\n"])
    printer.finish(" Line one.\nLine two\n")
    assert buffer.getvalue() == "Line one.\nLine two\n"


def test_calls_are_highlighted_on_a_terminal_even_across_chunks() -> None:
    console, buffer = _console(terminal=True)
    printer = AnswerPrinter(console, STOP)
    _feed(printer, buffer, [" It is [Calcu", "lator(2 * 3) → 6] six."])
    printer.finish(" It is [Calculator(2 * 3) → 6] six.")
    out = buffer.getvalue()
    assert "[Calcu" in out and "lator(2 * 3) → 6]" in out
    assert out.startswith("It is \x1b[1;36m[Calcu")  # the call's first part is styled as soon as it shows
    assert "\x1b[1;36mlator(2 * 3) → 6]\x1b[0m six." in out  # and its rest, in the next chunk


def test_a_chat_reply_hides_json_calls_and_shows_each_call_when_it_returns() -> None:
    console, buffer = _console()
    printer = AnswerPrinter(console, (), json_calls=True)
    printer.begin("model> ")
    first = ['<tool_call>{"name": "Calculator", ', '"arguments": {"expression": "2*3"}}</tool_call>']
    seen = _feed(printer, buffer, first)
    assert seen == ["model> ", "model> "]  # a JSON call is never shown as text
    printer.on_event(Event("done", 0, finish_reason="stop"))
    trace = CallTrace("Calculator", "2*3", "6", True, 0.01, -1, -1)
    printer.on_event(Event("call", 0, trace=trace))
    assert buffer.getvalue() == "model> \n[Calculator(2*3) → 6]\n"
    _feed(printer, buffer, ["The answer ", "is 6."])
    printer.on_event(Event("done", 0, finish_reason="stop"))
    printer.finish("The answer is 6.")
    assert buffer.getvalue() == "model> \n[Calculator(2*3) → 6]\nThe answer is 6.\n"


def test_inline_call_events_and_other_rows_are_not_printed_twice() -> None:
    console, buffer = _console()
    printer = AnswerPrinter(console, STOP)
    _feed(printer, buffer, [" [Calculator(1+1) → 2]"])
    printer.on_event(Event("call", 0, trace=CallTrace("Calculator", "1+1", "2", True, 0.0, 0, 21)))
    printer.on_event(Event("text", 1, "another row"))
    printer.finish(" [Calculator(1+1) → 2]")
    assert buffer.getvalue() == "[Calculator(1+1) → 2]\n"


# --------------------------------------------------------------------------------------------- progress lines


def test_progress_writes_plain_lines_when_not_a_terminal() -> None:
    console, buffer = _console()
    with Progress(console=console, name="eval", every=3600, min_interval=0) as bar:
        task = bar.add_task("loading model", total=200)
        for _ in range(200):
            bar.update(task, advance=1, description="gsm8k tools")
    lines = buffer.getvalue().splitlines()
    assert lines[0].startswith("eval: loading model 0/200 (0%)")
    assert lines[1].startswith("eval: gsm8k tools 1/200 (0%)")  # a new description is worth a line
    assert [line.split()[3] for line in lines[2:]] == [f"{n}/200" for n in range(20, 201, 20)]  # every tenth
    assert lines[-1].endswith("done") and "\x1b" not in buffer.getvalue()
    assert all(line.startswith("eval: ") for line in lines)  # none wrapped at the console's 40 columns
    assert max(len(line) for line in lines) > 40


def test_progress_lines_come_at_least_every_interval_but_not_for_a_stalled_task() -> None:
    console, buffer = _console()
    bar = Progress(console=console, name="train", every=0, min_interval=3600)
    bar.start()
    task = bar.add_task("train", total=10**6, loss="-")
    bar.update(task, advance=1, loss="2.50")
    bar.update(task, advance=1)
    bar.update(task, advance=0)  # no movement: no line
    bar.stop()
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 3 and "loss" not in lines[0] and lines[1].endswith("loss 2.50")
    assert lines[2].startswith("train 2/1,000,000")


def test_progress_draws_no_lines_on_a_terminal_or_when_quiet() -> None:
    console, buffer = _console(terminal=True)
    with Progress(console=console, name="eval", transient=True) as bar:
        bar.update(bar.add_task("x", total=2), advance=2)
    assert "eval: x" not in buffer.getvalue()
    quiet, quiet_buffer = _console()
    with Progress(console=quiet, disable=True) as bar:
        bar.update(bar.add_task("x", total=2), advance=2)
    assert quiet_buffer.getvalue() == ""


def test_line_format_and_durations() -> None:
    console, _ = _console()
    bar = Progress(console=console)
    task_id = bar.add_task("annotate", total=None)
    assert format_line(bar.tasks[0], "annotate").startswith("annotate 0,")
    assert format_line(bar.tasks[0], "").startswith("annotate 0")
    assert task_id == 0
    assert [duration(s) for s in (5, 192, 7500, float("inf"))] == ["5s", "3m12s", "2h05m", "?"]
